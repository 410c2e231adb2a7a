#!/usr/bin/env bash
# The Kubernetes flow end to end, on a host with docker, kind, helm and kubectl (plus cargo and
# go for the builds): a kind cluster with a local registry; the shim, CLI and installer image
# built from this tree; the installer image and the wasm images pushed with `fabricks`, which
# kubelet then pulls like any image; the chart installed; go-http (Deployment + Service)
# and go-hello (Job) applied with runtimeClassName fabricks; the Service curled; the uninstall
# path run; everything torn down. The steps are lib/k8s-flow.sh's, which e2e-k8s.sh runs on
# the node VM.
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
# shellcheck source=SCRIPTDIR/../lib/k8s-flow.sh
source "$HERE/lib/k8s-flow.sh"

CLUSTER=${FABRICKS_KIND_CLUSTER:-fabricks}
REG_NAME=$CLUSTER-registry
REG_PORT=${FABRICKS_KIND_REGISTRY_PORT:-5001}
KUBECTL=(kubectl)
HELM=$(command -v helm || echo "$HELM")
KEEP_UP=0
[[ ${1:-} != --keep ]] || KEEP_UP=1
NOFLAVOUR=kind

suite_begin kind fh-kind
suite_stop() {
	flow_stop
	if ((!KEEP_UP)); then
		kind delete cluster --name "$CLUSTER" >/dev/null 2>&1
		docker rm -f "$REG_NAME" >/dev/null 2>&1
	fi
}

node_names() { kind get nodes --name "$CLUSTER"; }
node_exec() { docker exec "$@"; }

prerequisites() {
	local t missing=()
	for t in docker kind kubectl cargo go curl; do command -v "$t" >/dev/null || missing+=("$t"); done
	((${#missing[@]} == 0)) || why "missing: ${missing[*]}" || return
	run docker info
}

registry() {
	if [[ $(docker inspect -f '{{.State.Running}}' "$REG_NAME" 2>/dev/null) != true ]]; then
		run docker run -d --restart=always -p "127.0.0.1:$REG_PORT:5000" --name "$REG_NAME" registry:2 || return
	fi
	flow_push
}

cluster() {
	local args=(--name "$CLUSTER" --config "$HERE/kind/cluster.yaml" --wait 120s) node
	[[ -z ${FABRICKS_KIND_NODE_IMAGE:-} ]] || args+=(--image "$FABRICKS_KIND_NODE_IMAGE")
	if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
		run kind create cluster "${args[@]}" || return
	fi
	docker network connect kind "$REG_NAME" 2>/dev/null
	# Every node resolves localhost:<port> to the registry container on the kind network.
	for node in $(node_names); do
		run docker exec "$node" mkdir -p "/etc/containerd/certs.d/localhost:$REG_PORT" || return
		printf '[host."http://%s:5000"]\n' "$REG_NAME" |
			docker exec -i "$node" tee "/etc/containerd/certs.d/localhost:$REG_PORT/hosts.toml" >/dev/null ||
			why "cannot write hosts.toml on $node" || return
	done
	run kubectl config use-context "kind-$CLUSTER"
}

started=$SECONDS
if check "docker, kind, kubectl, cargo, go, curl" prerequisites &&
	check "build shim, CLI and installer image" flow_build &&
	check "local registry; fabricks pushes the installer image, go-http and go-hello" registry &&
	check "kind cluster (control plane + worker) using the registry" cluster &&
	check "helm install: installer ready, every node labelled fabricks.io/runtime=installed" flow_install_chart; then
	check "go-http Deployment rolls out, go-hello Job completes and says Hello" flow_apply_examples &&
		check "curl the go-http Service" flow_curl_service
	check "uninstall=true restores every node, then helm uninstall" flow_uninstall
fi
echo "# kind: $((SECONDS - started)) s"
summary
((failed == 0))
