#!/usr/bin/env bash
# Pods through CRI, as kubelet runs them, on the harness's containerd with its CRI plugin and
# CNI (`harness.sh up --cri`), both flavours. The cases are the Go tests beside the CRI client
# (test-cluster/cri/e2e, a real Go HTTP client included):
#   TestPausePods  the pause image with handlers runc and fabricks: address, netns, veth, ping,
#                  log file; with fabricks our shim runs the sandbox natively and serves the
#                  whole pod, and only fabricks.io/* annotations reach the specs
#   TestGoHTTP     go-http built as a command module and as a reactor (2 instances), with the
#                  listen annotation: serves /, /json, /stream on the pod IP, the request lines
#                  in the CRI log, StopContainer exits 0
#   TestComponentHTTP  the wasi:http test components (componentize-py, componentize-js) with
#                  no listen spec: serve on 8080 of the pod IP, a 10 MiB echo, StopContainer
#                  exits 0 (skipped without FABRICKS_TEST_COMPONENTS)
#   TestUsualFiles test-cluster/programs/fsprobe: /dev/null, /dev/zero, /dev/full, /dev/urandom,
#                  os.TempDir(); a 16 MiB tmpfs volume (emptyDir medium Memory) takes 15 MiB and
#                  refuses 17 with "no space left on device"
#   TestPull       go-hello and go-http pushed to a private registry, pulled by CRI: go-http
#                  serves (listen spec from the image), go-hello's output and exit codes (0, 7)
# and every pod's removal leaves nothing: shim, netns, mount, address, veth, cgroup, state.
# This script provisions: the images (`fabricks build`), the registry and the pushes, per
# flavour `up --cri` and the imports into k8s.io; then `go test`, down and leftovers.
#
# usage: e2e-cri.sh [1.6|2]...      (default: both flavours; needs root, go, cargo, jq)
#
# Knobs (see lib/suite.sh for the common ones): FABRICKS_HARNESS_DIR (default /tmp/fh-cri; the
# suite takes down whatever harness and registry run there), FABRICKS_REGISTRY_PORT (5000).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fh-cri}
# shellcheck source-path=SCRIPTDIR source=lib/suite.sh
. "$HERE/lib/suite.sh"
readonly IMG=localhost/go-http:latest IMG_REACTOR=localhost/go-http:reactor
readonly REG=127.0.0.1:${FABRICKS_REGISTRY_PORT:-5000}
readonly PULL_HELLO=$REG/e2e-cri/go-hello:dev PULL_HTTP=$REG/e2e-cri/go-http:dev
readonly IMG_PYHTTP=localhost/e2e-cri/py-http:latest IMG_JSHTTP=localhost/e2e-cri/js-http:latest
readonly IMG_PROBE=localhost/e2e-cri/fsprobe:latest
# The wasi:http test components (components/build.sh); without them TestComponentHTTP skips.
COMPONENTS=${FABRICKS_TEST_COMPONENTS:-}
COMPONENT_ENV=()

suite_begin e2e-cri fh-cri-e2e
NOFLAVOUR=local
suite_stop() { "$HERE/registry.sh" down >/dev/null 2>&1; }

# The Go sources are formatted and vetted (this also compiles the tests once).
go_clean() {
	run_cmd gofmt -l "$HERE/cri"
	[[ $RC == 0 && -z $OUT ]] || why "gofmt -l lists files" || return
	CMD="go vet ./..." OUT=$(cd "$HERE/cri" && go vet ./... 2>&1)
	RC=$?
	expect_rc 0
}

registry_up() {
	rm -rf "$FABRICKS_HARNESS_DIR/registry"
	run_cmd "$HERE/registry.sh" up
	expect_rc 0
}

push() {
	run_cmd "$FABRICKS" push "$1" "$2"
	expect_rc 0
}

flavour_cases() {
	use_flavour
	check "containerd up --cri" harness_up_cri || return
	check "import go-http into k8s.io" import_image "$TMP/go-http.tar" "$IMG" wasi/wasm k8s.io
	check "import go-http:reactor into k8s.io" import_image "$TMP/go-http-reactor.tar" "$IMG_REACTOR" wasi/wasm k8s.io
	check "import fsprobe into k8s.io" import_image "$TMP/fsprobe.tar" "$IMG_PROBE" wasi/wasm k8s.io
	if ((${#COMPONENT_ENV[@]})); then
		check "import py-http into k8s.io" import_image "$TMP/py-http.tar" "$IMG_PYHTTP" wasi/wasm k8s.io
		check "import js-http into k8s.io" import_image "$TMP/js-http.tar" "$IMG_JSHTTP" wasi/wasm k8s.io
	fi
	go_cases FABRICKS_CRI_HTTP_IMAGE="$IMG" FABRICKS_CRI_REACTOR_IMAGE="$IMG_REACTOR" \
		FABRICKS_CRI_PULL_HELLO="$PULL_HELLO" FABRICKS_CRI_PULL_HTTP="$PULL_HTTP" "${COMPONENT_ENV[@]}" \
		FABRICKS_CRI_FSPROBE_IMAGE="$IMG_PROBE" -- -run '^(TestPausePods|TestGoHTTP|TestPull|TestComponentHTTP|TestUsualFiles)$' ./e2e/
	check "down" harness_down
	check "leftovers after down: no shim, mount, netns, veth, bridge or state" nothing_left
}

set_flavours "$@"
started=$SECONDS
prepared=1
check "install prerequisites" install_prerequisites || prepared=0
if building; then check "cargo build shim and CLI" build_binaries || prepared=0; fi
check "gofmt and go vet: test-cluster/cri is clean" go_clean || prepared=0
check "copy examples and SDK" copy_sources || prepared=0
check "fabricks build go-http" build_image "$TMP/src/examples/go-http" "$IMG" "$TMP/go-http.tar" || prepared=0
check "fabricks build --mode reactor go-http" build_image "$TMP/src/examples/go-http" "$IMG_REACTOR" "$TMP/go-http-reactor.tar" --mode reactor || prepared=0
check "fabricks build go-hello" build_image "$TMP/src/examples/go-hello" localhost/go-hello:latest "$TMP/go-hello.tar" || prepared=0
cp -r "$HERE/programs/fsprobe" "$TMP/src/" && rm -rf "$TMP/src/fsprobe/.fabricks"
check "fabricks build test-cluster/programs/fsprobe" build_image "$TMP/src/fsprobe" "$IMG_PROBE" "$TMP/fsprobe.tar" || prepared=0
if [[ -n $COMPONENTS && -s $COMPONENTS/py-http.wasm && -s $COMPONENTS/js-http.wasm ]]; then
	cp "$COMPONENTS/py-http.wasm" "$COMPONENTS/js-http.wasm" "$TMP/"
	check "fabricks build py-http.wasm" build_image "$TMP/py-http.wasm" "$IMG_PYHTTP" "$TMP/py-http.tar" || prepared=0
	check "fabricks build js-http.wasm" build_image "$TMP/js-http.wasm" "$IMG_JSHTTP" "$TMP/js-http.tar" || prepared=0
	COMPONENT_ENV=(FABRICKS_CRI_PY_HTTP_IMAGE="$IMG_PYHTTP" FABRICKS_CRI_JS_HTTP_IMAGE="$IMG_JSHTTP")
fi
check "registry up on $REG" registry_up || prepared=0
check "fabricks push go-hello to $PULL_HELLO" push "$TMP/go-hello.tar" "$PULL_HELLO" || prepared=0
check "fabricks push go-http to $PULL_HTTP" push "$TMP/go-http.tar" "$PULL_HTTP" || prepared=0
((prepared)) || suite_abort "preparation failed, no containerd started"

for F in "${flavours[@]}"; do
	t=$SECONDS
	flavour_cases
	echo "# e2e-cri: [$F] $((SECONDS - t)) s, containerd log $W/containerd.log"
	F=''
done
echo "# e2e-cri: $((SECONDS - started)) s"
suite_end
