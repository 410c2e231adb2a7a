#!/usr/bin/env bash
# End-to-end tests of .NET programs on Fabricks: images of .NET AppBundles run by
# containerd-shim-fabricks-v1 on a private containerd (harness.sh, with CRI), through ctr and
# through CRI, and by `fabricks run`.
#
#   bundle     runs everywhere: a directory laid out like a .NET AppBundle (dotnet.wasm,
#              managed/<App>.dll, <App>.runtimeconfig.json, runtimeconfig.bin, icudt.dat) whose
#              dotnet.wasm is test-cluster/bundle-probe, a Go wasip1 program that opens the
#              bundle's files the way the .NET WASI runtime does. `fabricks build` packs it
#              (files at the image root, Entrypoint `/dotnet.wasm Probe`); it must see its
#              bundle under `fabricks run`, `ctr run` and in a CRI pod (Kubernetes `args` after
#              the entrypoint).
#   errors     `fabricks build examples/dotnet-hello` without `dotnet` names the SDK, how to
#              install it and the WASI route; a net9.0 copy explains .NET 9 has no WASI support.
#   dotnet     examples/dotnet-hello (wasi-experimental, net8.0) and examples/dotnet-http
#              (componentize-dotnet, net10.0, wasi:http) built by `fabricks build`, run under
#              ctr and in CRI pods — where `dotnet` with that WASI route is installed; elsewhere
#              each prints `skip - NAME: why` (no machine of this project has one: see
#              ../shared/notes/dotnet.md).
#
# usage: e2e-dotnet.sh [1.6|2]...     (default: both flavours; needs root, go, cargo, curl,
#                                      python3)
#
# The last line is `N passed, N failed[, N skipped]`; the exit status is 1 if any case failed.
# Knobs:
#   FABRICKS_HARNESS_DIR    work dir of the containerds (default /tmp/fh-dotnet); the suite takes
#                           down whatever harness runs there
#   FABRICKS_E2E_BUILD=0    skip `cargo build --release` (test the binaries already built)
#   FABRICKS_E2E_TIMEOUT    seconds any single ctr / CRI call may take (default 120)
#   FABRICKS_DOTNET_CRI_WAIT seconds to wait for another harness's CRI bridge to go (default 600)
#   FABRICKS_SHIM, FABRICKS_CLI   binaries under test (default target/release/...)
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fh-dotnet}
TMO=${FABRICKS_E2E_TIMEOUT:-120}
# shellcheck source-path=SCRIPTDIR source=lib/suite.sh
. "$HERE/lib/suite.sh"
CRI_WAIT=${FABRICKS_DOTNET_CRI_WAIT:-600}
readonly IMG_BUNDLE=localhost/fabricks-e2e/bundle-probe:latest
readonly IMG_HELLO=localhost/fabricks-e2e/dotnet-hello:latest
readonly IMG_HTTP=localhost/fabricks-e2e/dotnet-http:latest
readonly APP=Probe

suite_begin e2e-dotnet fh-dotnet-e2e
NOFLAVOUR=local
RETRY_MISSING=1
HELLO_SKIP='' # why the dotnet-hello cases cannot run here ('' = they can)
HTTP_SKIP=''  # the same for dotnet-http
BGPID=''

suite_stop() {
	if [[ -n $BGPID ]] && kill -0 "$BGPID" 2>/dev/null; then kill -KILL "$BGPID" 2>/dev/null; fi
}

# --- the bundle probe ------------------------------------------------------------------------

# An AppBundle as WasiAppBuilder.cs lays it out for $APP, its dotnet.wasm the probe.
make_bundle() {
	local b=$TMP/bundle
	mkdir -p "$b/managed"
	run_cmd env GOOS=wasip1 GOARCH=wasm go build -C "$HERE/bundle-probe" -trimpath -o "$b/dotnet.wasm" .
	expect_rc 0 || return
	# The probe reads these; their contents only have to be what the runtime would find.
	printf 'MZ not really an assembly\n' >"$b/managed/$APP.dll"
	printf 'MZ\n' >"$b/managed/System.Private.CoreLib.dll"
	printf '{"runtimeOptions":{"tfm":"net8.0"}}\n' >"$b/$APP.runtimeconfig.json"
	printf '\001runtimeconfig\n' >"$b/runtimeconfig.bin"
	printf 'icu\n' >"$b/icudt.dat"
	printf 'wasmtime run --dir . dotnet.wasm %s $*\n' "$APP" >"$b/run-wasmtime.sh"
}

# image_json ARCHIVE WHAT: the image's `config` or `manifest` document.
image_json() {
	python3 - "$1" "$2" <<'EOF'
import json, sys, tarfile
archive, what = sys.argv[1], sys.argv[2]
with tarfile.open(archive) as t:
    blob = lambda d: t.extractfile("blobs/sha256/" + d.split(":")[1]).read()
    index = json.loads(t.extractfile("index.json").read())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    doc = manifest if what == "manifest" else json.loads(blob(manifest["config"]["digest"]))
print(json.dumps(doc, sort_keys=True))
EOF
}

# The layer's file names, one a line.
layer_files() {
	python3 - "$1" <<'EOF'
import io, json, sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    blob = lambda d: t.extractfile("blobs/sha256/" + d.split(":")[1]).read()
    index = json.loads(t.extractfile("index.json").read())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    with tarfile.open(fileobj=io.BytesIO(blob(manifest["layers"][0]["digest"]))) as layer:
        for m in layer.getmembers():
            print(m.name + ("/" if m.isdir() and not m.name.endswith("/") else ""))
EOF
}

build_bundle() {
	build_image "$TMP/bundle" "$IMG_BUNDLE" "$TMP/bundle.tar" || return
	local config files f
	config=$(image_json "$TMP/bundle.tar" config) || why "cannot read the image config" || return
	[[ $config == *'"Entrypoint": ["/dotnet.wasm", "'"$APP"'"]'* ]] || why "Entrypoint is not [/dotnet.wasm, $APP]: $config" || return
	files=$(layer_files "$TMP/bundle.tar") || why "cannot list the layer" || return
	for f in dotnet.wasm managed/ "managed/$APP.dll" "$APP.runtimeconfig.json" runtimeconfig.bin icudt.dat; do
		grep -qxF "$f" <<<"$files" || why "the layer lacks $f (it holds: ${files//$'\n'/ })" || return
	done
	! grep -q '^\.fabricks' <<<"$files" || why "fabricks' build directory went into the image: ${files//$'\n'/ }"
}

# expect_bundle_seen ARGS: the probe's report of a complete bundle, with these args.
expect_bundle_seen() {
	expect_out "bundle-probe: app $APP, args $1" "the module's argv" &&
		expect_out "read /runtimeconfig.bin" && expect_out "read /managed/$APP.dll" &&
		expect_out "read /icudt.dat" && expect_out "the bundle is visible as the .NET runtime needs it"
}

run_bundle_locally() {
	run_cmd env XDG_CACHE_HOME="$TMP/cache" "$FABRICKS" run "$TMP/bundle" -- a 'b c'
	expect_rc 0 && expect_bundle_seen '["a" "b c"]'
}

# --- what `fabricks build` says where .NET cannot build ---------------------------------------

no_dotnet_message() {
	local t0 t1
	mkdir -p "$TMP/empty-path"
	t0=$(date +%s%N)
	run_cmd env PATH="$TMP/empty-path" "$FABRICKS" build "$TMP/src/dotnet-hello"
	t1=$(date +%s%N)
	note "failed after $(((t1 - t0) / 1000000)) ms"
	[[ $RC == 1 ]] || why "exit status $RC, want 1" || return
	expect_out "\`dotnet\` is not on PATH" && expect_out 'net8.0 with the wasi-experimental workload' &&
		expect_out 'dotnet-install.sh' && expect_out 'dotnet workload install wasi-experimental'
}

net9_message() {
	rm -rf "$TMP/src/dotnet-net9"
	cp -r "$TMP/src/dotnet-hello" "$TMP/src/dotnet-net9"
	sed -i 's|<TargetFramework>net8.0</TargetFramework>|<TargetFramework>net9.0</TargetFramework>|' "$TMP/src/dotnet-net9/DotnetHello.csproj"
	run_cmd "$FABRICKS" build "$TMP/src/dotnet-net9"
	[[ $RC == 1 ]] || why "exit status $RC, want 1" || return
	expect_out '.NET 9 has no WASI support'
}

# --- .NET on this machine ---------------------------------------------------------------------

# Sets HELLO_SKIP and HTTP_SKIP to why the real .NET cases cannot run here, if they cannot.
dotnet_routes() {
	local version workloads major
	if ! command -v dotnet >/dev/null; then
		HELLO_SKIP="no \`dotnet\` on PATH: no .NET SDK with a WASI route can be installed from the registries reachable here"
		HTTP_SKIP=$HELLO_SKIP
		return
	fi
	version=$(cd "$TMP/src/dotnet-hello" && dotnet --version 2>/dev/null) || version=unknown
	major=${version%%.*}
	workloads=$(cd "$TMP/src/dotnet-hello" && dotnet workload list 2>/dev/null)
	if ! grep -qE '^\s*wasi-experimental(-net8)?\s' <<<"$workloads"; then
		HELLO_SKIP="the .NET SDK here ($version) has no wasi-experimental workload (\`dotnet workload install wasi-experimental\`)"
	fi
	if ! [[ $major =~ ^[0-9]+$ ]] || ((major < 10)); then
		HTTP_SKIP="dotnet-http (componentize-dotnet, net10.0) needs the .NET 10 SDK; this one is $version"
	fi
}

build_dotnet() {
	local dir=$1 ref=$2 out=$3
	build_image "$dir" "$ref" "$out"
}

# hello under ctr: greeting, args after the entrypoint, env, exit status.
hello_ctr() {
	run_ctr run --rm --runtime "$RT" --env GREETING=bonjour "$IMG_HELLO" e2e-dn-hello /dotnet.wasm DotnetHello --exit 7 a 'b c'
	expect_rc 7 && expect_out "Hello from Fabricks!" && expect_out 'args: ["a" "b c"]' &&
		expect_out "GREETING: bonjour" && expect_gone e2e-dn-hello
}

http_ctr() {
	local id=e2e-dn-http
	run_ctr run -d --net-host --runtime "$RT" "$IMG_HTTP" "$id"
	expect_rc 0 && wait_status "$id" RUNNING 30 || return
	wait_http "http://127.0.0.1:8080/healthz" 120 || return
	get "http://127.0.0.1:8080/" && [[ $BODY == "Hello from Fabricks!"* ]] || why "GET / said: $BODY" || return
	get "http://127.0.0.1:8080/json" && [[ $BODY == *'"message": "Hello from Fabricks!"'* ]] || why "GET /json said: $BODY" || return
	get "http://127.0.0.1:8080/echo?x=1" -X POST --data-binary 'hi there' &&
		[[ $BODY == *'"body": "hi there"'* && $BODY == *'"method": "POST"'* ]] || why "POST /echo said: $BODY" || return
	finish "$id"
}

get() {
	local url=$1
	shift
	CMD="curl $* $url"
	CODE=$(curl -sS -m 60 -o "$TMP/body" -w '%{http_code}' "$@" "$url" 2>"$TMP/stderr")
	RC=$?
	BODY=$(cat "$TMP/body" 2>/dev/null)
	OUT=$BODY ERR=$(<"$TMP/stderr")
	((RC == 0)) || why "curl failed (exit $RC)" || return
	[[ $CODE == 200 ]] || why "HTTP $CODE from $url"
}

wait_http() {
	local i
	for ((i = 0; i < $2 * 5; i++)); do
		curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.2
	done
	why "$1 did not answer 200 within ${2}s"
}

# --- CRI -------------------------------------------------------------------------------------


# `up --cri`; while another harness owns this flavour's bridge or subnet, waits and retries.
cri_up() {
	local waited=0 said=''
	"$H" down "$F" >/dev/null 2>&1
	while :; do
		run_cmd env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$H" up "$F" --cri
		CMD="harness.sh up $F --cri"
		((RC == 0)) && break
		if [[ $ERR == *"one CRI harness per flavour"* || $ERR == *"is already in use on"* ]] && ((waited < CRI_WAIT)); then
			if [[ -z $said ]]; then
				echo "#   [$F] another harness holds the CRI network: waiting up to ${CRI_WAIT}s"
				said=1
			fi
			sleep 10
			waited=$((waited + 10))
			continue
		fi
		why "harness.sh up --cri failed" || return
	done
}

# cri_pod NAME IMAGE ARGS_JSON [ANNOTATIONS_JSON]: a pod (handler fabricks) of one container.
cri_pod() {
	local annotations=${4:-'{}'}
	cat >"$TMP/pod.json" <<EOF
{
  "metadata": { "name": "$1", "namespace": "e2e-dotnet", "uid": "e2e-dotnet-$1-$F-$$", "attempt": 0 },
  "log_directory": "$W/pods/$1",
  "annotations": $annotations,
  "linux": {}
}
EOF
	cat >"$TMP/ctr.json" <<EOF
{
  "metadata": { "name": "$1" },
  "image": { "image": "$2" },
  "args": $3,
  "log_path": "$1.log",
  "linux": {}
}
EOF
	cri_start "$TMP/pod.json" "$TMP/ctr.json"
}

# wait_exited SECONDS: the container $CID has exited; its status is in STATE.
wait_exited() {
	local i
	for ((i = 0; i < $1 * 5; i++)); do
		STATE=$(fcri inspect --state "$CID" 2>/dev/null)
		[[ $STATE == CONTAINER_EXITED* ]] && return 0
		sleep 0.2
	done
	why "container $CID is '$STATE', not exited, ${1}s later"
}

cri_remove() {
	run_cmd fcri stopp "$POD"
	expect_rc 0 || return
	run_cmd fcri rmp "$POD"
	expect_rc 0 || return
	[[ -z $(fcri pods -q) ]] || why "pods left: $(fcri pods)"
}

bundle_cri() {
	cri_pod bundle-probe "$IMG_BUNDLE" '["from", "cri"]' || return
	wait_exited 60 || return
	[[ $STATE == "CONTAINER_EXITED 0" ]] || why "the probe ended as '$STATE', want CONTAINER_EXITED 0" || return
	run_cmd fcri logs "$CID"
	expect_rc 0 && expect_bundle_seen '["from" "cri"]' || return
	cri_remove
}

hello_cri() {
	cri_pod dotnet-hello "$IMG_HELLO" '["--exit", "3", "hello", "kubernetes"]' || return
	wait_exited 120 || return
	[[ $STATE == "CONTAINER_EXITED 3" ]] || why "dotnet-hello ended as '$STATE', want CONTAINER_EXITED 3" || return
	run_cmd fcri logs "$CID"
	expect_rc 0 && expect_out "Hello from Fabricks!" && expect_out 'args: ["hello" "kubernetes"]' || return
	cri_remove
}

http_cri() {
	local ip
	cri_pod dotnet-http "$IMG_HTTP" '[]' '{ "fabricks.io/listen": "http=8080" }' || return
	ip=$(fcri inspectp --ip "$POD")
	[[ -n $ip ]] || why "no pod IP" || return
	wait_http "http://$ip:8080/healthz" 120 || return
	get "http://$ip:8080/json" && [[ $BODY == *'"message": "Hello from Fabricks!"'* ]] || why "GET /json said: $BODY" || return
	run_cmd fcri stop -t 10 "$CID"
	expect_rc 0 || return
	cri_remove
}

# --- per flavour -------------------------------------------------------------------------------

# case_or_skip NAME SKIP-REASON FUNC: FUNC's case, or its skip line when REASON is set.
case_or_skip() {
	local name=$1 reason=$2
	shift 2
	if [[ -n $reason ]]; then skip "$name" "$reason"; else check "$name" "$@"; fi
}

flavour_cases() {
	use_flavour
	check "containerd up --cri" cri_up || return
	if check "import the bundle image" import_image "$TMP/bundle.tar" "$IMG_BUNDLE" wasi/wasm &&
		check "import the bundle image into k8s.io" import_image "$TMP/bundle.tar" "$IMG_BUNDLE" wasi/wasm k8s.io; then
		check "bundle image under ctr run: the module sees its bundle at /" ctr_bundle
		check "bundle image under ctr run: args after /dotnet.wasm $APP reach the module" ctr_bundle_args
		check "bundle image in a CRI pod: the module sees its bundle, Kubernetes args follow the entrypoint" bundle_cri
	fi
	case_or_skip "import dotnet-hello" "$HELLO_SKIP" import_both "$TMP/dotnet-hello.tar" "$IMG_HELLO"
	case_or_skip "dotnet-hello under ctr run: greeting, args, env, exit 7" "$HELLO_SKIP" hello_ctr
	case_or_skip "dotnet-hello in a CRI pod: args, exit 3, logs" "$HELLO_SKIP" hello_cri
	case_or_skip "import dotnet-http" "$HTTP_SKIP" import_both "$TMP/dotnet-http.tar" "$IMG_HTTP"
	case_or_skip "dotnet-http under ctr run -d --net-host: /, /json, /echo, SIGTERM exits 0" "$HTTP_SKIP" http_ctr
	case_or_skip "dotnet-http in a CRI pod: the pod IP serves /json" "$HTTP_SKIP" http_cri
	check "down" harness_down
	check "leftovers after down: no shim, mount, netns or state" nothing_left
}

ctr_bundle() {
	run_ctr run --rm --runtime "$RT" "$IMG_BUNDLE" e2e-dn-bundle
	expect_rc 0 && expect_bundle_seen '[]' && expect_gone e2e-dn-bundle
}

# ctr replaces the image's whole Entrypoint with what follows the id, as for any image.
ctr_bundle_args() {
	run_ctr run --rm --runtime "$RT" "$IMG_BUNDLE" e2e-dn-args /dotnet.wasm "$APP" x 'y z'
	expect_rc 0 && expect_bundle_seen '["x" "y z"]' && expect_gone e2e-dn-args
}

import_both() {
	import_image "$1" "$2" wasi/wasm && import_image "$1" "$2" wasi/wasm k8s.io
}

# --- main ----------------------------------------------------------------------------------

set_flavours "$@"
started=$SECONDS

prepared=1
check "install prerequisites" install_prerequisites || prepared=0
if [[ ${FABRICKS_E2E_BUILD:-1} != 0 ]]; then check "cargo build shim and CLI" build_binaries || prepared=0; fi
mkdir -p "$TMP/src"
# Private copies: `fabricks build` writes into the project's .fabricks/.
cp -r "$REPO/examples/dotnet-hello" "$REPO/examples/dotnet-http" "$TMP/src/"
rm -rf "$TMP/src/dotnet-hello/.fabricks" "$TMP/src/dotnet-http/.fabricks"
check "bundle probe (Go, wasip1) built as dotnet.wasm of an AppBundle layout" make_bundle || prepared=0
check "fabricks build of the AppBundle: its files at the image root, Entrypoint /dotnet.wasm $APP" build_bundle || prepared=0
check "fabricks run of the AppBundle: the module sees its bundle at /" run_bundle_locally
check "fabricks build examples/dotnet-hello without dotnet: names dotnet, its install and the WASI route" no_dotnet_message
check "fabricks build of a net9.0 project: .NET 9 has no WASI support" net9_message
dotnet_routes
case_or_skip "fabricks build examples/dotnet-hello (net8.0, wasi-experimental)" "$HELLO_SKIP" \
	build_dotnet "$TMP/src/dotnet-hello" "$IMG_HELLO" "$TMP/dotnet-hello.tar" || HELLO_SKIP=${HELLO_SKIP:-"its fabricks build failed (above)"}
case_or_skip "fabricks build examples/dotnet-http (net10.0, componentize-dotnet)" "$HTTP_SKIP" \
	build_dotnet "$TMP/src/dotnet-http" "$IMG_HTTP" "$TMP/dotnet-http.tar" || HTTP_SKIP=${HTTP_SKIP:-"its fabricks build failed (above)"}
if ((prepared == 0)); then
	echo "# e2e-dotnet: preparation failed, no containerd started"
	summary
	exit 1
fi

for F in "${flavours[@]}"; do
	t=$SECONDS
	flavour_cases
	"$H" down "$F" >/dev/null 2>&1
	echo "# e2e-dotnet: [$F] $((SECONDS - t)) s"
	F=''
done
echo "# e2e-dotnet: $((SECONDS - started)) s"
summary
((failed == 0))
