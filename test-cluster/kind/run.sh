#!/usr/bin/env bash
# The Kubernetes flow end to end, on a host with docker, kind, helm and kubectl (plus cargo and
# go for the builds): a kind cluster with a local registry; the shim, CLI and installer image
# built from this tree; the installer image and the wasm images pushed with `fabricks`, which
# kubelet then pulls like any image; the chart installed; go-http (Deployment + Service)
# and go-hello (Job) applied with runtimeClassName fabricks; the Service curled; the uninstall
# path run; everything torn down.
#
# usage: test-cluster/kind/run.sh [--keep]     (--keep: leave the cluster and registry up)
# env:   FABRICKS_KIND_CLUSTER (fabricks), FABRICKS_KIND_REGISTRY_PORT (5001),
#        FABRICKS_KIND_NODE_IMAGE (kind's default node image)
# Prints one line per step and ends with `N passed, N failed`.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fabricks-kind}
# shellcheck source=SCRIPTDIR/../lib/suite.sh
source "$HERE/lib/suite.sh"

CLUSTER=${FABRICKS_KIND_CLUSTER:-fabricks}
REG_NAME=$CLUSTER-registry
REG_PORT=${FABRICKS_KIND_REGISTRY_PORT:-5001}
VERSION=$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' "$REPO/charts/fabricks/Chart.yaml")
INSTALLER_IMAGE=localhost:$REG_PORT/fabricks/node-installer
KEEP_UP=0
[[ ${1:-} != --keep ]] || KEEP_UP=1
NOFLAVOUR=kind
PF_PID=''

suite_begin kind fh-kind
suite_stop() {
	if [[ -n $PF_PID ]]; then kill "$PF_PID" 2>/dev/null; fi
	if ((!KEEP_UP)); then
		kind delete cluster --name "$CLUSTER" >/dev/null 2>&1
		docker rm -f "$REG_NAME" >/dev/null 2>&1
	fi
}

# run ARGS...: run_cmd, then the exit status must be 0.
run() {
	run_cmd "$@"
	expect_rc 0
}

prerequisites() {
	local t missing=()
	for t in docker kind helm kubectl cargo go curl; do command -v "$t" >/dev/null || missing+=("$t"); done
	((${#missing[@]} == 0)) || why "missing: ${missing[*]}" || return
	run docker info
}

build() {
	run cargo build --release --locked --manifest-path "$REPO/Cargo.toml" --workspace || return
	run "$REPO/target/release/fabricks-installer-image" -o "$TMP/installer.tar" -t "$INSTALLER_IMAGE:$VERSION"
}

registry() {
	if [[ $(docker inspect -f '{{.State.Running}}' "$REG_NAME" 2>/dev/null) != true ]]; then
		run docker run -d --restart=always -p "127.0.0.1:$REG_PORT:5000" --name "$REG_NAME" registry:2 || return
	fi
	# Plain HTTP to a loopback registry: no credentials, no TLS.
	run "$FABRICKS" push "$TMP/installer.tar" "$INSTALLER_IMAGE:$VERSION" || return
	local ex
	for ex in go-http go-hello; do
		run "$FABRICKS" build "$REPO/examples/$ex" --push "localhost:$REG_PORT/examples/$ex:dev" || return
	done
}

cluster() {
	local args=(--name "$CLUSTER" --config "$HERE/kind/cluster.yaml" --wait 120s) node
	[[ -z ${FABRICKS_KIND_NODE_IMAGE:-} ]] || args+=(--image "$FABRICKS_KIND_NODE_IMAGE")
	if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
		run kind create cluster "${args[@]}" || return
	fi
	docker network connect kind "$REG_NAME" 2>/dev/null
	# Every node resolves localhost:<port> to the registry container on the kind network.
	for node in $(kind get nodes --name "$CLUSTER"); do
		run docker exec "$node" mkdir -p "/etc/containerd/certs.d/localhost:$REG_PORT" || return
		printf '[host."http://%s:5000"]\n' "$REG_NAME" |
			docker exec -i "$node" tee "/etc/containerd/certs.d/localhost:$REG_PORT/hosts.toml" >/dev/null ||
			why "cannot write hosts.toml on $node" || return
	done
	run kubectl config use-context "kind-$CLUSTER"
}

# The examples as they are, but for the registry port in use: their image references name
# localhost:5001 (kustomize's image transformer, built into kubectl, changes nothing else).
examples() {
	mkdir -p "$TMP/examples"
	cp "$REPO/examples/go-http/k8s.yaml" "$TMP/examples/go-http.yaml"
	cp "$REPO/examples/go-hello/k8s.yaml" "$TMP/examples/go-hello.yaml"
	cat >"$TMP/examples/kustomization.yaml" <<EOF
resources: [go-http.yaml, go-hello.yaml]
images:
  - { name: localhost:5001/examples/go-http, newName: localhost:$REG_PORT/examples/go-http }
  - { name: localhost:5001/examples/go-hello, newName: localhost:$REG_PORT/examples/go-hello }
EOF
}

install_chart() {
	run helm upgrade --install fabricks "$REPO/charts/fabricks" --namespace kube-system \
		--set image.repository="$INSTALLER_IMAGE" --set image.tag="$VERSION" --wait --timeout 5m || return
	run kubectl wait node --all --for=jsonpath='{.metadata.labels.fabricks\.io/runtime}'=installed --timeout=300s
}

apply_examples() {
	examples
	run kubectl apply -k "$TMP/examples" || return
	run kubectl rollout status deployment/go-http --timeout=300s || return
	run kubectl wait job/go-hello --for=condition=complete --timeout=300s || return
	run kubectl logs job/go-hello || return
	expect_out "Hello"
}

# The Service, through kubectl port-forward (CRI's port forwarding into the pod's netns).
curl_service() {
	local i
	kubectl port-forward service/go-http 18080:80 >"$TMP/pf.log" 2>&1 &
	PF_PID=$!
	for ((i = 0; i < 150; i++)); do
		OUT=$(curl -sS -m 2 http://127.0.0.1:18080/ 2>&1) && break
		sleep 0.2
	done
	CMD="curl http://127.0.0.1:18080/ (kubectl port-forward service/go-http)"
	kill "$PF_PID" 2>/dev/null
	PF_PID=''
	[[ $OUT == *"Hello from Fabricks"* ]] || why "the Service answered: $OUT"
}

# uninstall=true: every node's config back from its backup, shim and label gone.
uninstall_path() {
	local node
	run kubectl delete -k "$TMP/examples" --wait || return
	run helm upgrade fabricks "$REPO/charts/fabricks" --namespace kube-system --reuse-values --set uninstall=true --wait --timeout 5m || return
	run kubectl wait node --all --for=jsonpath='{.metadata.labels.fabricks\.io/runtime}'= --timeout=300s || return
	for node in $(kind get nodes --name "$CLUSTER"); do
		! docker exec "$node" grep -q fabricks /etc/containerd/config.toml || why "$node's config still names fabricks" || return
		! docker exec "$node" test -e /usr/local/bin/containerd-shim-fabricks-v1 || why "$node still has the shim" || return
	done
	run helm uninstall fabricks --namespace kube-system --wait
}

started=$SECONDS
if check "docker, kind, helm, kubectl, cargo, go, curl" prerequisites &&
	check "build shim, CLI and installer image" build &&
	check "local registry; fabricks pushes the installer image, go-http and go-hello" registry &&
	check "kind cluster (control plane + worker) using the registry" cluster &&
	check "helm install: installer ready, every node labelled fabricks.io/runtime=installed" install_chart; then
	check "go-http Deployment rolls out, go-hello Job completes and says Hello" apply_examples &&
		check "curl the go-http Service" curl_service
	check "uninstall=true restores every node, then helm uninstall" uninstall_path
fi
echo "# kind: $((SECONDS - started)) s"
summary
((failed == 0))
