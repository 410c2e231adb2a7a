#!/usr/bin/env bash
# End-to-end tests of `fabricks push`, `build --push` and `run REF` against a real private
# docker-registry (registry.sh; a second one with htpasswd), and of image pulls by the real
# containerds through ctr (both flavours). CRI's pulls of such images are e2e-cri.sh's.
#
# usage: e2e-registry.sh [1.6|2]...   (default both; needs root, go, cargo, jq, skopeo;
#                                      registry.sh installs docker-registry and apache2-utils)
#
# Cases print as lib/suite.sh says; the exit status is 1 if any case failed. Always stops what it
# started. Knobs (see lib/suite.sh for the common ones): FABRICKS_HARNESS_DIR (default
# /tmp/fh-reg; its registry data is wiped at start), FABRICKS_REGISTRY_PORT (5000; the htpasswd
# registry listens on the next port).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fh-reg}
# shellcheck source-path=SCRIPTDIR source=lib/suite.sh
. "$HERE/lib/suite.sh"
R=$HERE/registry.sh
readonly REG=127.0.0.1:${FABRICKS_REGISTRY_PORT:-5000} AREG=127.0.0.1:$((${FABRICKS_REGISTRY_PORT:-5000} + 1))
readonly HELLO=$REG/examples/go-hello:dev HTTP=$REG/examples/go-http:dev
# A docker config with the htpasswd registry's user (registry.sh writes it), and one without.
readonly AUTH=$FABRICKS_HARNESS_DIR/registry-auth/docker
suite_begin e2e-registry fabricks-e2e-registry
declare -A DIGEST
AGAIN='' AGAIN_ERR='' # the second push's JSON and stderr

suite_stop() {
	"$R" down >/dev/null 2>&1
	"$R" down --auth >/dev/null 2>&1
}

registries_up() {
	rm -rf "$FABRICKS_HARNESS_DIR/registry" "$FABRICKS_HARNESS_DIR/registry-auth"
	run_cmd "$R" up
	expect_rc 0 || return
	run_cmd "$R" up --auth
	expect_rc 0
}

blob_uploads() { grep -cE '"(PUT|PATCH) /v2/[^ ]*/blobs/uploads/' "$FABRICKS_HARNESS_DIR/registry/registry.log"; }

# json FIELD: FIELD of the last command's JSON output.
json() { jq -r ".$1" <<<"$OUT" 2>/dev/null; }

# --- pushes ------------------------------------------------------------------------------------

# build_push EXAMPLE: `fabricks build --push` of the example to $REG/examples/EXAMPLE:dev uploads
# its blobs; its digest into DIGEST[EXAMPLE].
build_push() {
	run_cmd "$FABRICKS" build "$TMP/src/examples/$1" -o "$TMP/$1.tar" --push "$REG/examples/$1:dev" --json
	expect_rc 0 || return
	DIGEST[$1]=$(json digest)
	[[ $(json uploaded_bytes) =~ ^[1-9][0-9]*$ ]] || why "uploaded_bytes=$(json uploaded_bytes)" || return
	[[ ${DIGEST[$1]} =~ ^sha256:[0-9a-f]{64}$ ]] || why "digest ${DIGEST[$1]}" || return
	note "digest ${DIGEST[$1]}"
}

index_platforms() {
	local platforms
	run_cmd curl -sS -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$REG/v2/examples/go-hello/manifests/dev"
	expect_rc 0 || return
	platforms=$(jq -r '[.manifests[].platform | .os + "/" + .architecture] | join(",")' <<<"$OUT" 2>/dev/null)
	[[ $platforms == wasi/wasm,linux/amd64,linux/arm64 ]] || why "the index's platforms are '$platforms'" || return
	[[ $(jq -r '.annotations["org.opencontainers.image.created"]' <<<"$OUT") != null ]] || why "the index has no created annotation"
}

push_again() {
	local before after
	before=$(blob_uploads)
	run_cmd "$FABRICKS" push "$TMP/go-hello.tar" "$HELLO" --json
	after=$(blob_uploads)
	AGAIN=$OUT AGAIN_ERR=$ERR
	expect_rc 0 || return
	[[ $(json uploaded_bytes) == 0 && $(json skipped_blobs) == 4 ]] ||
		why "uploaded_bytes=$(json uploaded_bytes), skipped_blobs=$(json skipped_blobs)" || return
	[[ $before == "$after" ]] || why "blob uploads in the registry log: $before, then $after"
}

same_digest() {
	OUT=$AGAIN ERR=$AGAIN_ERR
	[[ -n ${DIGEST[go-hello]:-} && $(json digest) == "${DIGEST[go-hello]}" ]] || why "digest $(json digest), first push ${DIGEST[go-hello]:-?}" || return
	expect_out "exists, skipped"
}

# --- fabricks run REF ----------------------------------------------------------------------------

run_ref() {
	run_cmd "$FABRICKS" run "$HELLO" -- a b
	expect_rc 0 && expect_out "Hello from Fabricks!" && expect_out 'args: ["a" "b"]'
}

wasm_layer() {
	run_cmd "$FABRICKS" build "$TMP/src/examples/go-hello" --layer wasm -o "$TMP/go-hello-wasm.tar" --push "$REG/examples/go-hello:wasm"
	expect_rc 0 || return
	run_cmd "$FABRICKS" run "$REG/examples/go-hello:wasm" -- w
	expect_rc 0 && expect_out "Hello from Fabricks!" && expect_out 'args: ["w"]'
}

# --- containerd pulls --------------------------------------------------------------------------

ctr_pull() {
	local opts=()
	# 2.x pulls through its transfer service, whose unpacker knows only the host platform:
	# --local pulls (and unpacks for wasi/wasm) in ctr itself, as `images import --local` does.
	if [[ $F == 2 ]]; then opts=(--local); fi
	run_ctr images pull "${opts[@]}" --plain-http --platform wasi/wasm "$1"
	expect_rc 0
}

ctr_run_pulled() {
	run_ctr run --rm --platform wasi/wasm --runtime "$RT" "$HELLO" reg-hello
	expect_rc 0 && expect_out "Hello from Fabricks!" && expect_gone reg-hello
}

flavour_cases() {
	use_flavour
	check "containerd up" harness_up || return
	check "ctr images pull --plain-http $HELLO" ctr_pull "$HELLO"
	check "ctr images pull --plain-http $HTTP" ctr_pull "$HTTP"
	check "ctr run --rm (fabricks runtime) of the pulled $HELLO greets" ctr_run_pulled
	check "down" harness_down
	check "leftovers after down" nothing_left
}

# --- credentials ---------------------------------------------------------------------------------

# fab DOCKER_CONFIG ARGS...: the CLI with that docker config and none of the caller's credentials.
fab() {
	local dc=$1
	shift
	run_cmd env -u FABRICKS_REGISTRY_USERNAME -u FABRICKS_REGISTRY_PASSWORD DOCKER_CONFIG="$dc" "$FABRICKS" "$@"
}

push_with_config() {
	fab "$AUTH" push "$TMP/go-hello.tar" "$AREG/examples/go-hello:dev"
	expect_rc 0
}

push_anonymous() {
	fab "$TMP/nodocker" push "$TMP/go-hello.tar" "$AREG/examples/go-hello:anon"
	expect_fail && expect_out_re -i '401|unauthorized' && expect_out "$AREG"
}

# A push that failed half-way (credentials refused) leaves nothing in the way of a retry.
push_retried() {
	fab "$TMP/nodocker" push "$TMP/go-http.tar" "$AREG/examples/go-http:retry"
	expect_fail || return
	fab "$AUTH" push "$TMP/go-http.tar" "$AREG/examples/go-http:retry"
	expect_rc 0
}

push_wrong_password() {
	run_cmd env -u FABRICKS_REGISTRY_USERNAME DOCKER_CONFIG="$TMP/nodocker" FABRICKS_REGISTRY_PASSWORD=wrong \
		"$FABRICKS" push "$TMP/go-hello.tar" "$AREG/examples/go-hello:wrong" --username fabricks
	expect_fail && expect_out 401 && expect_out "$AREG"
}

run_password_stdin() {
	printf 'fabricks-secret\n' >"$TMP/password"
	IN=$TMP/password fab "$TMP/nodocker" run "$AREG/examples/go-hello:dev" --username fabricks --password-stdin -- x
	expect_rc 0 && expect_out "Hello from Fabricks!"
}

# --- failures ------------------------------------------------------------------------------------

push_unreachable() {
	run_cmd "$FABRICKS" push "$TMP/go-hello.tar" 127.0.0.1:5999/examples/go-hello:dev
	expect_fail && expect_out "cannot reach the registry 127.0.0.1:5999" && expect_out_re -i refused
}

run_missing_tag() {
	run_cmd "$FABRICKS" run "$REG/examples/go-hello:no-such-tag"
	expect_fail && expect_out_re -i 'not found' && expect_out 404 && expect_out "$REG"
}

run_missing_repo() {
	run_cmd "$FABRICKS" run "$REG/examples/no-such-repo:dev"
	expect_fail && expect_out_re -i 'not found' && expect_out "$REG"
}

run_linux_image() {
	run_cmd "$H" pause-image "$TMP/pause.tar"
	expect_rc 0 || return
	run_cmd skopeo copy -q --dest-tls-verify=false "oci-archive:$TMP/pause.tar" "docker://$REG/fabricks/pause:3"
	expect_rc 0 || return
	run_cmd "$FABRICKS" run "$REG/fabricks/pause:3"
	expect_fail && expect_out "fabricks/pause:3 is not a wasm image (platform linux/amd64)"
}

# --- main ----------------------------------------------------------------------------------------

set_flavours "$@"
prepared=1
check "install prerequisites" install_prerequisites || prepared=0
if building; then check "cargo build shim and CLI" build_binaries || prepared=0; fi
check "copy examples and SDK" copy_sources || prepared=0
check "registries start (docker-registry on $REG, with htpasswd on $AREG)" registries_up || prepared=0
((prepared)) || suite_abort "preparation failed"
mkdir -p "$TMP/nodocker"

check "build --push $REG/examples/go-hello:dev uploads its blobs" build_push go-hello
check "build --push $REG/examples/go-http:dev uploads its blobs" build_push go-http
check "the tag is an OCI index: wasi/wasm, then linux/amd64 and linux/arm64 for CRI, and annotations" index_platforms
check "pushing the same image again uploads no blob" push_again
check "the second push gives the same digest and logs 'exists, skipped'" same_digest
check "fabricks run $HELLO -- a b" run_ref
check "a wasm-layer image pushes and runs from the registry" wasm_layer
for F in "${flavours[@]}"; do
	flavour_cases
	F=''
done
check "push to the htpasswd registry with DOCKER_CONFIG credentials" push_with_config
check "push without credentials fails naming 401 and the registry" push_anonymous
check "a push retried after a refused one succeeds" push_retried
check "push with a wrong password fails naming 401 and the registry" push_wrong_password
check "run from the htpasswd registry with --username/--password-stdin" run_password_stdin
check "push to an unreachable registry fails clearly" push_unreachable
check "run of a missing tag fails clearly" run_missing_tag
check "run of a missing repository fails clearly" run_missing_repo
check "run of a linux image fails: not a wasm image (platform linux/amd64)" run_linux_image
suite_end
