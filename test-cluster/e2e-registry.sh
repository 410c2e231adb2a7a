#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2001 # `bash -c` conditions read their values as $1, $2... on purpose; sed prefixes every line
# End-to-end tests of `fabricks push`/`build --push`/`run REF` against a real private
# docker-registry (test-cluster/registry.sh) and image pulls by real containerds (ctr, both
# flavours through harness.sh); prebuilt .wasm packed by `fabricks build FILE.wasm`, and the CNCF
# wasm artifact layout as `oras` pushes it (oras is `go install`ed into $FABRICKS_TOOLS).
#
# usage: e2e-registry.sh            (needs root, go, cargo; installs apt docker-registry apache2-utils skopeo)
#
# Prints `ok - name` / `not ok - name: why` (details on `#` lines), then `N passed, N failed`
# (`, N skipped` when a case could not run: its line says why); exits 1 if any case failed.
# Always stops what it started. Knobs:
#   FABRICKS_HARNESS_DIR  work dir of the registries and containerds (default /tmp/fh-reg);
#                         its registry data is wiped at start.
#   FABRICKS_E2E_BUILD=0  skip `cargo build --release`
#   FABRICKS_E2E_FLAVOURS containerd flavours to pull with (default "1.6 2")
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fh-reg}
FAB=${FABRICKS_CLI:-$REPO/target/release/fabricks}
H=$HERE/harness.sh
R=$HERE/registry.sh
REG=127.0.0.1:${FABRICKS_REGISTRY_PORT:-5000}
AREG=127.0.0.1:$((${FABRICKS_REGISTRY_PORT:-5000} + 1))
HELLO=$REG/examples/go-hello:dev
HTTP=$REG/examples/go-http:dev
FLAVOURS=${FABRICKS_E2E_FLAVOURS:-1.6 2}
TMP=$(mktemp -d /tmp/fabricks-e2e-registry.XXXXXX)
readonly ORAS_VERSION=1.2.3
ORAS=${FABRICKS_TOOLS:-$HOME/.cache/fabricks/tools}/oras-$ORAS_VERSION/oras
PASSED=0 FAILED=0 SKIPPED=0
declare -A DIGEST
STARTED_FLAVOURS=()

ok() {
	echo "ok - $1"
	PASSED=$((PASSED + 1))
}
not_ok() {
	echo "not ok - $1: $2"
	[[ -n ${3:-} ]] && sed 's/^/# /' <<<"$3"
	FAILED=$((FAILED + 1))
}
# check NAME COND-COMMAND... : ok when the command succeeds, else not ok with $OUT as details.
check() {
	local name=$1 why=$2
	shift 2
	if "$@"; then ok "$name"; else not_ok "$name" "$why" "${OUT:-}"; fi
}
skip() {
	echo "skip - $1: $2"
	SKIPPED=$((SKIPPED + 1))
}
has() { grep -qiF -- "$1" <<<"$OUT"; }
json() { jq -r "$1" <<<"$OUT" 2>/dev/null; }
blob_uploads() { grep -cE '"(PUT|PATCH) /v2/[^ ]*/blobs/uploads/' "$FABRICKS_HARNESS_DIR/registry/registry.log" || true; }

cleanup() {
	local f
	for f in "${STARTED_FLAVOURS[@]}"; do
		"$H" down "$f" >/dev/null 2>&1 || echo "# harness down $f failed" >&2
	done
	"$R" down >/dev/null 2>&1
	"$R" down --auth >/dev/null 2>&1
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- preparation ----------------------------------------------------------------------------
if [[ ${FABRICKS_E2E_BUILD:-1} != 0 ]]; then
	(cd "$REPO" && cargo build --release -q -p fabricks -p containerd-shim-fabricks 2>&1) >"$TMP/build.log" ||
		{ cat "$TMP/build.log"; echo "0 passed, 1 failed"; exit 1; }
fi
# skopeo pushes a linux image (the harness's pause image) for the not-a-wasm-image case.
if ! command -v skopeo >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends skopeo >"$TMP/apt.log" 2>&1 ||
		echo "# installing skopeo failed: $(tail -n 1 "$TMP/apt.log")"
fi
rm -rf "$FABRICKS_HARNESS_DIR/registry" "$FABRICKS_HARNESS_DIR/registry-auth"
OUT=$("$R" up 2>&1 && "$R" up --auth 2>&1)
check "registries start (docker-registry on $REG, with htpasswd on $AREG)" "registry.sh up failed" test $? -eq 0

# --- pushes -----------------------------------------------------------------------------------
for ex in go-hello go-http; do
	ref=$REG/examples/$ex:dev
	JSON=$("$FAB" build "$REPO/examples/$ex" -o "$TMP/$ex.tar" --push "$ref" --json 2>"$TMP/$ex.err")
	RC=$?
	OUT="$JSON"$'\n'"$(cat "$TMP/$ex.err")"
	bytes=$(jq -r .uploaded_bytes <<<"$JSON" 2>/dev/null)
	digest=$(jq -r .digest <<<"$JSON" 2>/dev/null)
	DIGEST[$ex]=$digest
	check "build --push $ref uploads its blobs (digest ${digest:-?})" "exit $RC, uploaded_bytes=${bytes:-?}" \
		test "$RC" -eq 0 -a "${bytes:-0}" -gt 0 -a "${digest#sha256:}" != "$digest"
done
OUT=$(curl -s -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$REG/v2/examples/go-hello/manifests/dev")
check "the tag is an OCI index: wasi/wasm, then linux/amd64 and linux/arm64 for CRI, and annotations" "index: $(tail -c 600 <<<"$OUT")" \
	bash -c '[[ $(jq -r "[.manifests[].platform|.os+\"/\"+.architecture]|join(\",\")" <<<"$1" 2>/dev/null) == wasi/wasm,linux/amd64,linux/arm64 && $(jq -r ".annotations[\"org.opencontainers.image.created\"]" <<<"$1") != null ]]' _ "$(tail -n 1 <<<"$OUT")"

before=$(blob_uploads)
JSON=$("$FAB" push "$TMP/go-hello.tar" "$HELLO" --json 2>"$TMP/again.err")
RC=$?
OUT="$JSON"$'\n'"$(cat "$TMP/again.err")"
after=$(blob_uploads)
check "pushing the same image again uploads no blob" \
	"exit $RC, uploaded_bytes=$(jq -r .uploaded_bytes <<<"$JSON" 2>/dev/null), skipped=$(jq -r .skipped_blobs <<<"$JSON" 2>/dev/null), blob uploads in the registry log $before -> $after" \
	test "$RC" -eq 0 -a "$(jq -r .uploaded_bytes <<<"$JSON" 2>/dev/null)" = 0 -a \
	"$(jq -r .skipped_blobs <<<"$JSON" 2>/dev/null)" = 4 -a "$before" = "$after"
check "the second push gives the same digest and logs 'exists, skipped'" "digest $(jq -r .digest <<<"$JSON" 2>/dev/null) vs ${DIGEST[go-hello]}" \
	bash -c '[[ $1 == "$2" ]] && grep -q "exists, skipped" "$3"' _ "$(jq -r .digest <<<"$JSON" 2>/dev/null)" "${DIGEST[go-hello]}" "$TMP/again.err"

# --- fabricks run REF -----------------------------------------------------------------------
OUT=$("$FAB" run "$HELLO" -- a b 2>&1)
RC=$?
check "fabricks run $HELLO -- a b" "exit $RC" \
	bash -c '[[ $2 == 0 ]] && grep -q "Hello from Fabricks!" <<<"$1" && grep -qF "args: [\"a\" \"b\"]" <<<"$1"' _ "$OUT" "$RC"

JSON=$("$FAB" build "$REPO/examples/go-hello" --layer wasm -o "$TMP/go-hello-wasm.tar" \
	--push "$REG/examples/go-hello:wasm" --json 2>"$TMP/wasm.err") &&
	OUT=$("$FAB" run "$REG/examples/go-hello:wasm" -- w 2>&1)
RC=$?
check "a wasm-layer image pushes and runs from the registry" "exit $RC" \
	bash -c '[[ $2 == 0 ]] && grep -q "Hello from Fabricks!" <<<"$1" && grep -qF "args: [\"w\"]" <<<"$1"' _ "$OUT" "$RC"

# --- prebuilt wasm and the CNCF wasm artifact layout -----------------------------------------
# config_label REPO TAG LABEL: the label of the image config the tag's first manifest names.
config_label() {
	local top manifest config
	top=$(curl -sf -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' \
		"http://$REG/v2/$1/manifests/$2") || return
	manifest=$(jq -r 'if .manifests then .manifests[0].digest else empty end' <<<"$top")
	[[ -z $manifest ]] || top=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		"http://$REG/v2/$1/manifests/$manifest") || return
	config=$(jq -r .config.digest <<<"$top")
	curl -sf "http://$REG/v2/$1/blobs/$config" | jq -r --arg l "$3" '.config.Labels[$l] // "none"'
}
index_platforms() {
	curl -s -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$REG/v2/$1/manifests/$2" |
		jq -r '[.manifests[].platform|.os+"/"+.architecture]|join(",")' 2>/dev/null
}

# The module a Go toolchain left, packed as any toolchain's output is.
cp "$REPO/examples/go-hello/.fabricks/go-hello.wasm" "$TMP/hello.wasm"
PREBUILT=$REG/prebuilt/hello:dev
JSON=$("$FAB" build "$TMP/hello.wasm" --label team=e2e --push "$PREBUILT" --json 2>"$TMP/prebuilt.err") &&
	OUT=$("$FAB" run "$PREBUILT" -- p 2>&1)
RC=$?
check "a prebuilt .wasm (fabricks build FILE.wasm) pushes and runs from the registry" "exit $RC: $(cat "$TMP/prebuilt.err")" \
	bash -c '[[ $2 == 0 ]] && grep -q "Hello from Fabricks!" <<<"$1" && grep -qF "args: [\"p\"]" <<<"$1" && [[ -f $3 ]]' \
	_ "$OUT" "$RC" "$TMP/hello.tar"
OUT="kind=$(config_label prebuilt/hello dev fabricks.io/wasm-kind) team=$(config_label prebuilt/hello dev team) platforms=$(index_platforms prebuilt/hello dev)"
check "its config says fabricks.io/wasm-kind=module and keeps --label; the index lists node platforms" "$OUT" \
	test "$OUT" = "kind=module team=e2e platforms=wasi/wasm,linux/amd64,linux/arm64"

# oras, the CNCF layout's reference client, from the Go module proxy (cached like containerd 2.x).
install_oras() {
	[[ -x $ORAS ]] && return
	rm -rf "$ORAS.partial" && mkdir -p "$(dirname "$ORAS")" &&
		GOBIN=$ORAS.partial GOFLAGS=-buildvcs=false go install "oras.land/oras/cmd/oras@v$ORAS_VERSION" >"$TMP/oras.log" 2>&1 &&
		mv "$ORAS.partial/oras" "$ORAS" && rmdir "$ORAS.partial"
}
CNCF_CASES=("fabricks run of a CNCF wasm artifact (oras push: wasm config, application/wasm layer)"
	"fabricks push of a CNCF wasm artifact archive (oras --oci-layout), then run"
	"the pushed artifact's index lists it under wasip1/wasm and the node platforms")
if install_oras; then
	printf '{"architecture":"wasm","os":"wasip1","layerDigests":[]}' >"$TMP/wasm-config.json"
	OUT=$(cd "$TMP" && "$ORAS" push --plain-http "$REG/cncf/hello:v1" \
		--config wasm-config.json:application/vnd.wasm.config.v0+json hello.wasm:application/wasm 2>&1) &&
		OUT=$("$FAB" run "$REG/cncf/hello:v1" -- c 2>&1)
	RC=$?
	check "${CNCF_CASES[0]}" "exit $RC" \
		bash -c '[[ $2 == 0 ]] && grep -q "Hello from Fabricks!" <<<"$1" && grep -qF "args: [\"c\"]" <<<"$1"' _ "$OUT" "$RC"
	OUT=$(cd "$TMP" && "$ORAS" push --oci-layout "$TMP/layout:v1" \
		--config wasm-config.json:application/vnd.wasm.config.v0+json hello.wasm:application/wasm 2>&1) &&
		OUT=$(tar -C "$TMP/layout" -cf "$TMP/cncf.tar" . 2>&1) &&
		OUT=$("$FAB" push "$TMP/cncf.tar" "$REG/cncf/pushed:v1" 2>&1) &&
		OUT=$("$FAB" run "$REG/cncf/pushed:v1" -- d 2>&1)
	RC=$?
	check "${CNCF_CASES[1]}" "exit $RC" \
		bash -c '[[ $2 == 0 ]] && grep -q "Hello from Fabricks!" <<<"$1" && grep -qF "args: [\"d\"]" <<<"$1"' _ "$OUT" "$RC"
	OUT=$(index_platforms cncf/pushed v1)
	check "${CNCF_CASES[2]}" "platforms: $OUT" test "$OUT" = "wasip1/wasm,linux/amd64,linux/arm64"
else
	for name in "${CNCF_CASES[@]}"; do
		skip "$name" "oras $ORAS_VERSION did not install from the Go module proxy: $(tail -n 1 "$TMP/oras.log" 2>/dev/null)"
	done
fi

# --- containerd pulls and runs ----------------------------------------------------------------
for f in $FLAVOURS; do
	if ! OUT=$("$H" up "$f" 2>&1); then
		not_ok "[$f] harness up" "harness.sh up $f failed" "$OUT"
		continue
	fi
	STARTED_FLAVOURS+=("$f")
	# 2.x pulls through its transfer service, whose unpacker knows only the host platform:
	# --local pulls (and unpacks for wasi/wasm) in ctr itself, as `images import --local` does.
	local_pull=()
	[[ $f == 1.6 ]] || local_pull=(--local)
	for ref in "$HELLO" "$HTTP"; do
		OUT=$("$H" ctr "$f" images pull "${local_pull[@]}" --plain-http --platform wasi/wasm "$ref" 2>&1)
		check "[$f] ctr images pull --plain-http $ref" "exit $?" test $? -eq 0
	done
	OUT=$(timeout 120 "$H" ctr "$f" run --rm --platform wasi/wasm --runtime io.containerd.fabricks.v1 \
		"$HELLO" "reg-hello-$f" 2>&1)
	RC=$?
	check "[$f] ctr run --rm (fabricks runtime) $HELLO greets" "exit $RC" \
		bash -c '[[ $2 == 0 ]] && grep -q "Hello from Fabricks!" <<<"$1"' _ "$OUT" "$RC"
	OUT=$("$H" down "$f" 2>&1) && unset 'STARTED_FLAVOURS[-1]'
done

# --- CRI pulls and pods ---------------------------------------------------------------------
crictl() { timeout -k 10 120 "$H" crictl "$f" "$@"; }

# cri_pod NAME REF [ANNOTATIONS-JSON]: a pod (handler fabricks) running REF as it was pulled;
# sets POD, CID, POD_IP.
cri_pod() {
	local annotations=${3:-'{}'}
	cat >"$TMP/pod-$1.json" <<EOF
{ "metadata": { "name": "$1", "namespace": "e2e-registry", "uid": "$1-$f-$$", "attempt": 0 },
  "log_directory": "$TMP/pods/$1-$f", "annotations": $annotations, "linux": {} }
EOF
	cat >"$TMP/ctr-$1.json" <<EOF
{ "metadata": { "name": "$1" }, "image": { "image": "$2" }, "log_path": "$1.log", "linux": {} }
EOF
	POD=$(crictl runp --runtime fabricks "$TMP/pod-$1.json" 2>&1) &&
		CID=$(crictl create "$POD" "$TMP/ctr-$1.json" "$TMP/pod-$1.json" 2>&1) &&
		crictl start "$CID" >/dev/null 2>&1 &&
		POD_IP=$(crictl inspectp --ip "$POD")
}

cri_pod_gone() {
	crictl stopp "$POD" >/dev/null 2>&1 && crictl rmp "$POD" >/dev/null 2>&1
}

# until_ok TRIES CMD...: retries CMD every 0.2 s.
until_ok() {
	local i n=$1
	shift
	for ((i = 0; i < n; i++)); do
		"$@" && return 0
		sleep 0.2
	done
	return 1
}
hello_exited() { [[ $(crictl inspect --state "$CID" 2>/dev/null) == "CONTAINER_EXITED 0" ]]; }

for f in $FLAVOURS; do
	if ! OUT=$("$H" up "$f" --cri 2>&1); then
		not_ok "[$f] harness up --cri" "harness.sh up $f --cri failed" "$OUT"
		continue
	fi
	STARTED_FLAVOURS+=("$f")
	# What kubelet does: PullImage for the node's platform (through hosts.toml: plain HTTP).
	for ref in "$HELLO" "$HTTP"; do
		OUT=$(crictl pull "$ref" 2>&1)
		check "[$f] CRI pulls $ref (node platform entry of the index)" "exit $?" test $? -eq 0
	done
	# The listen spec comes from the image label, as pulled: no annotation on this pod.
	POD='' CID='' POD_IP=''
	if cri_pod go-http "$HTTP" >"$TMP/pod.out" 2>&1; then
		OUT=$(until_ok 150 curl -sf "http://$POD_IP:8080/healthz" && curl -sf "http://$POD_IP:8080/json")
		check "[$f] CRI pod (handler fabricks) of the pulled $HTTP serves on its pod IP" "curl http://$POD_IP:8080/json failed" \
			bash -c 'grep -q "\"runtime\": \"wasip1/wasm\"" <<<"$1"' _ "$OUT"
		OUT=$(cri_pod_gone 2>&1)
		check "[$f] the go-http pod stops and is removed" "stopp/rmp failed" test $? -eq 0
	else
		not_ok "[$f] CRI pod (handler fabricks) of the pulled $HTTP serves on its pod IP" "the pod did not start" "$POD $CID $(cat "$TMP/pod.out")"
	fi
	POD='' CID='' POD_IP=''
	if cri_pod go-hello "$HELLO" >"$TMP/pod.out" 2>&1 && until_ok 150 hello_exited; then
		OUT=$(crictl logs "$CID" 2>&1)
		check "[$f] CRI pod of the pulled $HELLO greets and exits 0" "log: $OUT" \
			bash -c 'grep -q "Hello from Fabricks!" <<<"$1" && grep -q "runtime: wasip1/wasm" <<<"$1"' _ "$OUT"
	else
		not_ok "[$f] CRI pod of the pulled $HELLO greets and exits 0" "state: $(crictl inspect --state "$CID" 2>&1)" "$POD $CID $(cat "$TMP/pod.out")"
	fi
	OUT=$(cri_pod_gone 2>&1)
	OUT=$("$H" down "$f" 2>&1) && unset 'STARTED_FLAVOURS[-1]'
done

# --- credentials --------------------------------------------------------------------------------
mkdir -p "$TMP/nodocker"
OUT=$(DOCKER_CONFIG=$FABRICKS_HARNESS_DIR/registry-auth/docker FABRICKS_REGISTRY_USERNAME='' \
	"$FAB" push "$TMP/go-hello.tar" "$AREG/examples/go-hello:dev" 2>&1)
RC=$?
check "push to the htpasswd registry with DOCKER_CONFIG credentials" "exit $RC" test $RC -eq 0
OUT=$(DOCKER_CONFIG=$TMP/nodocker FABRICKS_REGISTRY_USERNAME='' \
	"$FAB" push "$TMP/go-hello.tar" "$AREG/examples/go-hello:anon" 2>&1)
RC=$?
check "push without credentials fails naming 401 and the registry" "exit $RC" \
	bash -c '[[ $2 != 0 ]] && grep -qi "401\|unauthorized" <<<"$1" && grep -qF "$3" <<<"$1"' _ "$OUT" "$RC" "$AREG"
# A push that failed half-way (credentials refused) leaves nothing in the way of a retry.
OUT=$(DOCKER_CONFIG=$TMP/nodocker "$FAB" push "$TMP/go-http.tar" "$AREG/examples/go-http:retry" 2>&1)
OUT=$OUT$'\n'$(DOCKER_CONFIG=$FABRICKS_HARNESS_DIR/registry-auth/docker \
	"$FAB" push "$TMP/go-http.tar" "$AREG/examples/go-http:retry" 2>&1)
RC=$?
check "a push retried after a refused one succeeds" "exit $RC" test $RC -eq 0
OUT=$(DOCKER_CONFIG=$TMP/nodocker FABRICKS_REGISTRY_PASSWORD=wrong \
	"$FAB" push "$TMP/go-hello.tar" "$AREG/examples/go-hello:wrong" --username fabricks 2>&1)
RC=$?
check "push with a wrong password fails naming 401 and the registry" "exit $RC" \
	bash -c '[[ $2 != 0 ]] && grep -qi "401" <<<"$1" && grep -qF "$3" <<<"$1"' _ "$OUT" "$RC" "$AREG"
OUT=$(printf 'fabricks-secret\n' | DOCKER_CONFIG=$TMP/nodocker \
	"$FAB" run "$AREG/examples/go-hello:dev" --username fabricks --password-stdin -- x 2>&1)
RC=$?
check "run from the htpasswd registry with --username/--password-stdin" "exit $RC" \
	bash -c '[[ $2 == 0 ]] && grep -q "Hello from Fabricks!" <<<"$1"' _ "$OUT" "$RC"

# --- failures -----------------------------------------------------------------------------------
OUT=$("$FAB" push "$TMP/go-hello.tar" 127.0.0.1:5999/examples/go-hello:dev 2>&1)
RC=$?
check "push to an unreachable registry fails clearly" "exit $RC" \
	bash -c '[[ $2 != 0 ]] && grep -qF "cannot reach the registry 127.0.0.1:5999" <<<"$1" && grep -qi "refused" <<<"$1"' _ "$OUT" "$RC"
OUT=$("$FAB" run "$REG/examples/go-hello:no-such-tag" 2>&1)
RC=$?
check "run of a missing tag fails clearly" "exit $RC" \
	bash -c '[[ $2 != 0 ]] && grep -qi "not found" <<<"$1" && grep -qF "404" <<<"$1" && grep -qF "$3" <<<"$1"' _ "$OUT" "$RC" "$REG"
OUT=$("$FAB" run "$REG/examples/no-such-repo:dev" 2>&1)
RC=$?
check "run of a missing repository fails clearly" "exit $RC" \
	bash -c '[[ $2 != 0 ]] && grep -qi "not found" <<<"$1" && grep -qF "$3" <<<"$1"' _ "$OUT" "$RC" "$REG"
OUT=$("$H" pause-image "$TMP/pause.tar" 2>&1) &&
	OUT=$(skopeo copy -q --dest-tls-verify=false "oci-archive:$TMP/pause.tar" "docker://$REG/fabricks/pause:3" 2>&1) &&
	OUT=$("$FAB" run "$REG/fabricks/pause:3" 2>&1)
RC=$?
check "run of a linux image fails: not a wasm image (platform linux/amd64)" "exit $RC" \
	bash -c '[[ $2 != 0 ]] && grep -qF "fabricks/pause:3 is not a wasm image (platform linux/amd64)" <<<"$1"' _ "$OUT" "$RC"

if ((SKIPPED > 0)); then
	echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
else
	echo "$PASSED passed, $FAILED failed"
fi
[[ $FAILED == 0 ]]
