#!/usr/bin/env bash
# What CI can prove about the Kubernetes side without a cluster: the chart lints, renders
# (default values, every value set, uninstall mode) into manifests that kubeconform -strict
# accepts against the Kubernetes $KUBE_VERSION schemas, and so do the examples' k8s.yaml; every
# script in test-cluster/ and bench/ passes shellcheck. Installs its tools: helm and kubeconform with
# `go install`, the schemas generated from the OpenAPI spec in the k8s.io/kubernetes Go
# module (kube-schemas.py), shellcheck from apt; all cached under $TOOLS.
#
# Usage: chart-check.sh. Prints one line per case and ends with `N passed, N failed`.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fabricks-harness}
# shellcheck source=lib/suite.sh
source "$HERE/lib/suite.sh"

readonly HELM_VERSION=v3.22.0 KUBECONFORM_VERSION=v0.8.0 KUBE_VERSION=v1.34.2
TOOLS=${FABRICKS_TOOLS:-$HOME/.cache/fabricks/tools}
HELM=$TOOLS/helm-$HELM_VERSION/helm
KUBECONFORM=$TOOLS/kubeconform-$KUBECONFORM_VERSION/kubeconform
SCHEMAS=$TOOLS/kube-schemas-$KUBE_VERSION
CHART=$REPO/charts/fabricks

suite_begin chart-check fh-chart-check

# go_tool PACKAGE VERSION BIN: `go install PACKAGE@VERSION` into BIN's directory, once.
go_tool() {
	local dir=${3%/*}
	[[ -x $3 ]] && return 0
	command -v go >/dev/null || why "go is needed to install ${1##*/}" || return
	rm -rf "$dir.partial"
	run_cmd env GOBIN="$dir.partial" GOFLAGS=-buildvcs=false go install "$1@$2"
	expect_rc 0 || return
	mkdir -p "$dir" && mv "$dir.partial"/* "$dir/" && rmdir "$dir.partial"
}

schemas() {
	local dir
	[[ -e $SCHEMAS/.complete ]] && return 0
	run_cmd go mod download -json "k8s.io/kubernetes@$KUBE_VERSION"
	expect_rc 0 || return
	dir=$(jq -r .Dir <<<"$OUT")
	rm -rf "$SCHEMAS"
	run_cmd python3 "$HERE/kube-schemas.py" "$dir/api/openapi-spec/swagger.json" "$SCHEMAS"
	expect_rc 0 && : >"$SCHEMAS/.complete"
}

tools() {
	local p missing=()
	for p in shellcheck jq; do command -v "$p" >/dev/null || missing+=("$p"); done
	if ((${#missing[@]})); then
		run_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
		if ((RC != 0)); then
			apt-get update -qq >/dev/null 2>&1
			run_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
		fi
		expect_rc 0 || return
	fi
	go_tool helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$HELM" &&
		go_tool github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" "$KUBECONFORM" &&
		schemas
}

# kubeconform FILE...: strict validation against the generated schemas; every resource valid.
validate() {
	run_cmd "$KUBECONFORM" -strict -summary -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@"
	expect_rc 0 || return
	[[ $OUT =~ Valid:\ ([0-9]+),\ Invalid:\ 0,\ Errors:\ 0,\ Skipped:\ 0 ]] && ((BASH_REMATCH[1] > 0)) ||
		why "kubeconform: ${OUT##*$'\n'}" || return
	note "kubeconform: ${OUT##*$'\n'}"
}

lint() {
	run_cmd "$HELM" lint --strict "$CHART"
	expect_rc 0
}

# render NAME [HELM ARGS...]: helm template into $TMP/NAME.yaml.
render() {
	local name=$1
	shift
	run_cmd "$HELM" template fabricks "$CHART" --namespace kube-system "$@"
	expect_rc 0 || return
	printf '%s\n' "$OUT" >"$TMP/$name.yaml"
}

# kind_in FILE KIND: how many documents of KIND FILE has.
kind_in() { grep -c "^kind: $2\$" "$1"; }

default_values() {
	render default || return
	validate "$TMP/default.yaml" || return
	for k in RuntimeClass DaemonSet ServiceAccount ClusterRole ClusterRoleBinding; do
		(($(kind_in "$TMP/default.yaml" "$k") == 1)) || why "the chart renders no $k" || return
	done
	grep -qx 'handler: fabricks' "$TMP/default.yaml" || why "the RuntimeClass's handler is not fabricks" || return
	grep -qx '    fabricks.io/runtime: installed' "$TMP/default.yaml" || why "the RuntimeClass selects no node label" || return
	grep -qx '            - install' "$TMP/default.yaml" || why "the DaemonSet does not install"
}

all_values() {
	render all --set uninstall=true --set containerd.configPath=/var/lib/rancher/k3s/agent/etc/containerd/config.toml \
		--set containerd.version=2 --set containerd.restart=false --set image.tag=dev --set nodeLabel=example.com/wasm \
		--set 'runtimeClass.tolerations[0].key=wasm' --set 'runtimeClass.tolerations[0].operator=Exists' \
		--set 'nodeSelector.pool=wasm' --set resources.limits.memory=32Mi || return
	validate "$TMP/all.yaml" || return
	local want
	for want in '            - uninstall' '            - --config=/var/lib/rancher/k3s/agent/etc/containerd/config.toml' \
		'            - --containerd-version=2' '            - --no-restart' '            - --label=example.com/wasm' \
		'    example.com/wasm: installed' '        pool: wasm'; do
		grep -qxF -- "$want" "$TMP/all.yaml" || why "the render lacks '$want'" || return
	done
}

no_runtime_class() {
	render norc --set runtimeClass.create=false || return
	validate "$TMP/norc.yaml" || return
	(($(kind_in "$TMP/norc.yaml" RuntimeClass) == 0)) || why "runtimeClass.create=false still renders one"
}

# The control: a field Kubernetes does not know fails -strict (the schemas are in force).
unknown_field_fails() {
	sed 's/^  hostPID: true$/&\n      hostPIDs: true/; s/^      hostPID: true$/&\n      hostPIDs: true/' "$TMP/default.yaml" >"$TMP/bad.yaml"
	grep -q hostPIDs "$TMP/bad.yaml" || why "could not plant the unknown field" || return
	run_cmd "$KUBECONFORM" -strict -summary -schema-location "$SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$TMP/bad.yaml"
	[[ $RC != 0 && $OUT == *"additional properties 'hostPIDs' not allowed"* ]] || why "kubeconform accepted an unknown field"
}

examples() {
	local f
	for f in "$REPO"/examples/*/k8s.yaml; do
		grep -q '^      runtimeClassName: fabricks$' "$f" || why "$f does not ask for runtimeClassName: fabricks" || return
		grep -q '^            limits:$' "$f" || why "$f sets no resource limits" || return
	done
	grep -q 'fabricks.io/listen: "http=8080"' "$REPO/examples/go-http/k8s.yaml" || why "go-http has no listen annotation" || return
	validate "$REPO"/examples/*/k8s.yaml
}

# From DIR, so that -x follows the scripts' `source` lines: shellcheck_in DIR FILE...
shellcheck_in() { cd "$1" && shellcheck -x "${@:2}"; }

# The suites and the benchmarks (which source the suites' library).
shell_scripts() {
	local files benches
	mapfile -t files < <(cd "$HERE" && find . -name '*.sh' | sort)
	run_cmd shellcheck_in "$HERE" "${files[@]}"
	expect_rc 0 || return
	mapfile -t benches < <(cd "$REPO/bench" && find . -name '*.sh' | sort)
	run_cmd shellcheck_in "$REPO/bench" "${benches[@]}"
	expect_rc 0 || return
	note "shellcheck: ${#files[@]} scripts in test-cluster, ${#benches[@]} in bench, clean"
}

started=$SECONDS
if check "tools: helm $HELM_VERSION, kubeconform $KUBECONFORM_VERSION, Kubernetes $KUBE_VERSION schemas, shellcheck" tools; then
	check "helm lint --strict charts/fabricks" lint
	check "helm template (defaults) | kubeconform -strict: RuntimeClass, DaemonSet, RBAC" default_values
	check "helm template (uninstall, k3s path, every value set) | kubeconform -strict" all_values
	check "helm template runtimeClass.create=false | kubeconform -strict" no_runtime_class
	check "kubeconform -strict rejects an unknown field (control)" unknown_field_fails
	check "examples/*/k8s.yaml: runtimeClassName fabricks, limits, listen annotation; kubeconform -strict" examples
	check "shellcheck -x on every test-cluster and bench script" shell_scripts
fi
echo "# chart-check: $((SECONDS - started)) s"
suite_end
