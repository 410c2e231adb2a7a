# shellcheck shell=bash
# The steps a user takes to run Fabricks on a Kubernetes cluster, shared by kind/run.sh (kind on
# a docker host) and e2e-k8s.sh (the node VM): build the product, push the installer image and
# the examples to a registry the nodes pull from, helm install the chart, wait for every node's
# label, apply examples/*/k8s.yaml, curl the Service, and the uninstall path. Sourced after
# lib/suite.sh; each step is a case body for `check`.
#
# Set by the flow before its first step:
#   REG_PORT         the registry's port on the host's loopback; images are pushed to and named
#                    localhost:$REG_PORT/..., which the nodes map to that registry (kind:
#                    certs.d to the registry container; the VM: certs.d to qemu's forward)
#   KUBECTL          array: the kubectl command line to use
#   HELM             the helm binary (default: chart-check.sh's; flow_helm installs it there)
#   node_names       function: the names of the cluster's nodes
#   node_exec        function NODE CMD...: runs CMD on that node
# Sets VERSION (the chart's appVersion) and INSTALLER_IMAGE.

VERSION=$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' "$REPO/charts/fabricks/Chart.yaml")
# shellcheck disable=SC2034 # used by the flows
readonly HELM_VERSION=v3.22.0 # as chart-check.sh installs it
: "${HELM:=${FABRICKS_TOOLS:-$HOME/.cache/fabricks/tools}/helm-$HELM_VERSION/helm}"
PF_PID=''

flow_installer_image() { echo "localhost:$REG_PORT/fabricks/node-installer"; }

# run ARGS...: run_cmd, then the exit status must be 0.
run() {
	run_cmd "$@"
	expect_rc 0
}

k() { run "${KUBECTL[@]}" "$@"; }

# helm as chart-check.sh installs it (`go install` into the tools cache), unless $HELM exists.
flow_helm() {
	local dir=${HELM%/*}
	[[ -x $HELM ]] && return 0
	command -v go >/dev/null || why "go is needed to install helm" || return
	rm -rf "$dir.partial"
	run env GOBIN="$dir.partial" GOFLAGS=-buildvcs=false go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" || return
	mkdir -p "$dir" && mv "$dir.partial"/* "$dir/" && rmdir "$dir.partial"
}

# The product as a user builds it: the workspace (shim, CLI, installer), then the installer image.
flow_build() {
	run cargo build --release --locked --manifest-path "$REPO/Cargo.toml" --workspace || return
	run "$REPO/target/release/fabricks-installer-image" -o "$TMP/installer.tar" -t "$(flow_installer_image):$VERSION"
}

# The installer image pushed with `fabricks push`, go-http and go-hello with `fabricks build --push`
# (plain HTTP to a loopback registry: no credentials, no TLS).
flow_push() {
	local ex
	run "$FABRICKS" push "$TMP/installer.tar" "$(flow_installer_image):$VERSION" || return
	for ex in go-http go-hello; do
		run "$FABRICKS" build "$REPO/examples/$ex" --push "localhost:$REG_PORT/examples/$ex:dev" || return
	done
}

# The examples as they are, but for the registry port in use: their image references name
# localhost:5001 (kustomize's image transformer, built into kubectl, changes nothing else).
flow_examples() {
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

flow_install_chart() {
	flow_helm || return
	run "$HELM" upgrade --install fabricks "$REPO/charts/fabricks" --namespace kube-system \
		--set image.repository="$(flow_installer_image)" --set image.tag="$VERSION" --wait --timeout 5m || return
	k wait node --all --for=jsonpath='{.metadata.labels.fabricks\.io/runtime}'=installed --timeout=300s
}

flow_apply_examples() {
	flow_examples
	k apply -k "$TMP/examples" || return
	k rollout status deployment/go-http --timeout=300s || return
	k wait job/go-hello --for=condition=complete --timeout=300s || return
	k logs job/go-hello || return
	expect_out "Hello"
}

# flow_port_forward TARGET PORT PATH TEXT: `kubectl port-forward TARGET LOCAL:PORT` (CRI's port
# forwarding into the pod's netns), then GET PATH through it must answer with TEXT.
flow_port_forward() {
	local i local_port
	local_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	"${KUBECTL[@]}" port-forward "$1" "$local_port:$2" >"$TMP/pf.log" 2>&1 &
	PF_PID=$!
	for ((i = 0; i < 150; i++)); do
		OUT=$(curl -sS -m 2 "http://127.0.0.1:$local_port$3" 2>&1) && break
		sleep 0.2
	done
	# shellcheck disable=SC2034 # shown by details()
	CMD="curl http://127.0.0.1:$local_port$3 (kubectl port-forward $1 $local_port:$2)"
	kill "$PF_PID" 2>/dev/null
	wait "$PF_PID" 2>/dev/null
	PF_PID=''
	[[ $OUT == *"$4"* ]] || why "it answered: $OUT"
}

flow_curl_service() { flow_port_forward service/go-http 80 / "Hello from Fabricks"; }

# uninstall=true: every node's config back from its backup, shim and label gone; then helm
# uninstall.
flow_uninstall() {
	local node
	k delete -k "$TMP/examples" --wait || return
	flow_helm || return
	run "$HELM" upgrade fabricks "$REPO/charts/fabricks" --namespace kube-system --reuse-values --set uninstall=true --wait --timeout 5m || return
	k wait node --all --for=jsonpath='{.metadata.labels.fabricks\.io/runtime}'= --timeout=300s || return
	for node in $(node_names); do
		! node_exec "$node" grep -q fabricks /etc/containerd/config.toml || why "$node's config still names fabricks" || return
		! node_exec "$node" test -e /usr/local/bin/containerd-shim-fabricks-v1 || why "$node still has the shim" || return
	done
	run "$HELM" uninstall fabricks --namespace kube-system --wait
}

# For suite_stop: a port-forward a failed step left running.
flow_stop() {
	if [[ -n $PF_PID ]]; then kill "$PF_PID" 2>/dev/null; fi
	PF_PID=''
}
