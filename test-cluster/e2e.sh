#!/usr/bin/env bash
# End-to-end tests of containerd-shim-fabricks-v1 against a real (private) containerd, driven
# through ctr: images built by `fabricks build`, args/env/exit status/stdin, a wasm-layer
# image, bind mounts, broken modules, missing entrypoints, kills, traps, a native entrypoint
# delegated to runc, the compile cache, and nothing left behind.
#
# usage: e2e.sh [1.6|2]...      (default: both flavours; needs root, go and cargo)
#
# Every case prints `ok - [flavour] name` or `not ok - [flavour] name: why` (details follow on
# `#` lines); the last line is `N passed, N failed[, N skipped]`; the exit status is 1 if any
# case failed. Knobs:
#   FABRICKS_HARNESS_DIR  work dir of the containerds (default /tmp/fabricks-e2e). The suite
#                         takes down whatever harness runs there: never share it with one you
#                         use by hand.
#   FABRICKS_E2E_BUILD=0  skip `cargo build --release` (test the binaries already built)
#   FABRICKS_E2E_TIMEOUT  seconds any single ctr call may take before it counts as hung (120)
#   FABRICKS_SHIM, FABRICKS_CLI   binaries under test (default target/release/...)
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fabricks-e2e}
TMO=${FABRICKS_E2E_TIMEOUT:-120}
# shellcheck source-path=SCRIPTDIR source=lib/suite.sh
. "$HERE/lib/suite.sh"
readonly IMG_TAR=localhost/fabricks-e2e/go-hello:tar
readonly IMG_WASM=localhost/fabricks-e2e/go-hello:wasm
readonly PAUSE=localhost/fabricks/pause:3

suite_begin e2e fabricks-e2e
RETRY_MISSING=1
DIGEST='' # sha256 of go-hello's module, as inside the image

# --- preparation (once) ------------------------------------------------------------------

# The module in the tar-layer archive (its layer holds /go-hello.wasm): $TMP/go-hello.wasm.
extract_module() {
	local archive=$TMP/go-hello-tar.tar manifest layer
	manifest=$(tar -xOf "$archive" index.json | grep -o 'sha256:[0-9a-f]\{64\}' | head -n 1)
	layer=$(tar -xOf "$archive" "blobs/sha256/${manifest#sha256:}" |
		sed 's/.*"layers"//' | grep -o 'sha256:[0-9a-f]\{64\}' | head -n 1)
	[[ -n $layer ]] || why "no layer found in $archive" || return
	tar -xOf "$archive" "blobs/sha256/${layer#sha256:}" >"$TMP/layer"
	tar -xOf "$TMP/layer" --wildcards '*go-hello.wasm' >"$TMP/go-hello.wasm" 2>/dev/null ||
		why "the image layer $layer holds no go-hello.wasm" || return
	[[ $(head -c 4 "$TMP/go-hello.wasm" | od -An -tx1 | tr -d ' ') == 0061736d ]] ||
		why "the image's go-hello.wasm is not a wasm module" || return
	DIGEST=$(sha256sum "$TMP/go-hello.wasm" | cut -d' ' -f1)
}

make_pause_image() {
	CMD="harness.sh pause-image $TMP/pause.tar"
	OUT=$("$H" pause-image "$TMP/pause.tar" 2>&1)
	RC=$?
	expect_rc 0
}

# Root filesystems for `ctr run --rootfs`: broken modules, a trapping module, an empty root.
make_rootfses() {
	local r=$TMP/rootfs
	mkdir -p "$r"/{junk,truncated,trap,empty}
	printf 'this is not WebAssembly\n' >"$r/junk/bad.wasm"
	# A real module cut in half: right magic and version, then the sections end mid-way.
	head -c "$(($(stat -c %s "$TMP/go-hello.wasm") / 2))" "$TMP/go-hello.wasm" >"$r/truncated/bad.wasm"
	# (module (func (export "_start") unreachable)) — type, function, export and code sections.
	printf '\0asm\1\0\0\0\1\4\1\140\0\0\3\2\1\0\7\12\1\6_start\0\0\12\5\1\3\0\0\13' >"$r/trap/trap.wasm"
}

# --- cases ---------------------------------------------------------------------------------

hello_greets() {
	run_ctr run --rm --runtime "$RT" "$IMG_TAR" e2e-hello
	expect_rc 0 && expect_out "Hello from Fabricks!" && expect_out "argv0: /go-hello.wasm" &&
		expect_out "GREETING: (unset)" && expect_gone e2e-hello
}

hello_args() {
	run_ctr run --rm --runtime "$RT" "$IMG_TAR" e2e-args /go-hello.wasm a 'b c'
	expect_rc 0 && expect_out 'args: ["a" "b c"]' && expect_gone e2e-args
}

hello_env() {
	run_ctr run --rm --runtime "$RT" --env GREETING=bonjour "$IMG_TAR" e2e-env
	expect_rc 0 && expect_out "GREETING: bonjour" && expect_gone e2e-env
}

hello_exit() {
	run_ctr run --rm --runtime "$RT" "$IMG_TAR" e2e-exit /go-hello.wasm --exit 7
	expect_rc 7 && expect_out "Hello from Fabricks!" && expect_gone e2e-exit
}

# ctr attaches its stdin to the task (both 1.6 and 2.x; 2.x has no -i). Non-empty on purpose:
# with empty stdin ctr closes its end of the FIFO before the task opens it and EOF is lost
# (a native task under runc never sees EOF through `ctr run` either).
hello_stdin() {
	printf 'fed through ctr\n' >"$TMP/stdin"
	IN=$TMP/stdin run_ctr run --rm --runtime "$RT" "$IMG_TAR" e2e-stdin /go-hello.wasm --stdin
	expect_rc 0 && expect_out $'stdin (16 bytes):\nfed through ctr' && expect_gone e2e-stdin
}

# Four runs at a time, as on a node starting several pods, ten times: every create must find
# the stdio FIFOs ctr made for it. ctr opens their read ends from goroutines while it already
# asks for the task, so a runtime has to wait for its reader (runc's shim opens them blocking)
# rather than fail at once. Output ctr itself drops under load is not counted here.
concurrent_creates() {
	local i j rc n=0 bad=0 first='' pids
	for ((i = 1; i <= 10; i++)); do
		pids=()
		for ((j = 1; j <= 4; j++)); do
			c run --rm --runtime "$RT" "$IMG_TAR" "e2e-par-$i-$j" /go-hello.wasm --exit 3 </dev/null >"$TMP/par-$j" 2>&1 &
			pids+=($!)
		done
		for ((j = 1; j <= 4; j++)); do
			rc=0
			wait "${pids[j - 1]}" || rc=$?
			n=$((n + 1))
			if ((rc != 3)); then
				bad=$((bad + 1))
				[[ -n $first ]] || first="e2e-par-$i-$j: exit $rc: $(grep -m 1 -v '^Hello\|^runtime:\|^argv0:\|^args:\|^GREETING:' "$TMP/par-$j")"
			fi
		done
	done
	((bad == 0)) || why "$bad of $n \`ctr run --rm ... /go-hello.wasm --exit 3\` did not exit 3; first: $first"
}

wasm_layer_greets() {
	run_ctr run --rm --runtime "$RT" "$IMG_WASM" e2e-wasm
	expect_rc 0 && expect_out "Hello from Fabricks!" && expect_out "argv0: /go-hello.wasm" && expect_gone e2e-wasm
}

bind_rw() {
	local dir=$TMP/data-$F-rw
	mkdir -p "$dir"
	run_ctr run --rm --runtime "$RT" --mount "type=bind,src=$dir,dst=/data,options=rbind:rw" \
		"$IMG_TAR" e2e-bind-rw /go-hello.wasm --write /data/x
	expect_rc 0 && expect_out "wrote 20 bytes to /data/x" || return
	[[ $(cat "$dir/x" 2>/dev/null) == "written by go-hello" ]] || why "$dir/x on the host does not hold what the module wrote" || return
	expect_gone e2e-bind-rw
}

# ro_write ID: a write to a read-only bind mount; $dir holds the mount's source.
ro_write() {
	dir=$TMP/data-$F-$1
	mkdir -p "$dir"
	run_ctr run --rm --runtime "$RT" --mount "type=bind,src=$dir,dst=/data,options=rbind:ro" \
		"$IMG_TAR" "$1" /go-hello.wasm --write /data/y
}

bind_ro_refuses() {
	local dir
	ro_write e2e-bind-ro
	[[ $RC != timeout ]] || return 1
	[[ $RC != 0 ]] || why "the write to a read-only mount succeeded (exit 0)" || return
	[[ ! -e $dir/y ]] || why "the module created $dir/y through a read-only mount" || return
	expect_err_re '[Rr]ead-only file system' && expect_gone e2e-bind-ro
}

# The guest must see an ordinary EROFS, as a native program would: go-hello reports it and
# exits 1 (its documented behaviour), rather than the runtime trapping the module.
bind_ro_errno() {
	local dir
	ro_write e2e-bind-errno
	expect_rc 1 && expect_err_re '^go-hello: write /data/y: .*[Rr]ead-only file system' && expect_gone e2e-bind-errno
}

# rootfs_fails DIR ID REGEX [ARGS...]: `ctr run --rootfs DIR ID ARGS` fails at create with a
# message matching REGEX, and nothing is left.
rootfs_fails() {
	local dir=$1 id=$2 re=$3
	shift 3
	run_ctr run --rm --runtime "$RT" --rootfs "$TMP/rootfs/$dir" "$id" "$@"
	[[ $RC != timeout ]] || return 1
	[[ $RC != 0 ]] || why "ctr run succeeded" || return
	expect_err_re "$re" && expect_gone "$id"
}

# kill_case ID SIGNAL STATUS FLAG [log]: a detached module runs FLAG's endless wait,
# `ctr task kill -s SIGNAL` stops it and it exits with STATUS. With `log` its output goes to a
# file (a file:// log URI) and the kill waits until the module says it is in that wait;
# otherwise its stdio are ctr's FIFOs, as `ctr run -d` makes them.
kill_case() {
	local id=$1 sig=$2 status=$3 flag=$4 log=$TMP/$F-$1.log opts=() args=(/go-hello.wasm "$4")
	if [[ $flag == --sleep ]]; then args+=(300s); fi
	if [[ ${5:-} == log ]]; then opts=(--log-uri "file://$log"); fi
	run_ctr run -d --runtime "$RT" "${opts[@]}" "$IMG_TAR" "$id" "${args[@]}"
	expect_rc 0 && wait_status "$id" RUNNING 30 || return
	if [[ ${5:-} == log ]]; then
		wait_file "$log" "$([[ $flag == --spin ]] && echo spinning || echo sleeping)" 60 || return
	fi
	run_ctr task kill -s "$sig" "$id"
	expect_rc 0 || return
	wait_status "$id" STOPPED "$STOP_WAIT" || why "$WHY (after $sig)" || return
	run_ctr task rm "$id"
	expect_rc 0 && expect_out "exit code $status" "the exit status" || return
	run_ctr containers rm "$id"
	expect_rc 0 && expect_gone "$id"
}

trap_reported() {
	run_ctr run --rm --runtime "$RT" --rootfs "$TMP/rootfs/trap" e2e-trap /trap.wasm
	expect_rc 134 && expect_err_re 'trap' && expect_err_re 'wasm backtrace' &&
		expect_err_re 'unreachable' && expect_gone e2e-trap
}

pause_native() {
	local id=e2e-pause
	run_ctr run -d --runtime "$RT" "$PAUSE" "$id"
	expect_rc 0 && wait_status "$id" RUNNING 30 || return
	[[ -d /run/containerd/fabricks/runc/$NS/$id ]] || why "no runc state: pause did not run under runc" || return
	finish "$id"
}

compiled_once() {
	local n
	n=$(grep -c "compiled module .*/$DIGEST\.cwasm" "$W/containerd.log")
	((n == 1)) || why "$n \"compiled module\" lines for $DIGEST in $W/containerd.log, want 1 (the image ran many times)" || return
	compgen -G "$W/cache/*/$DIGEST.cwasm" >/dev/null || why "no $W/cache/*/$DIGEST.cwasm"
}

flavour_cases() {
	use_flavour
	check "containerd up" harness_up || return
	check "import the tar-layer image" import_image "$TMP/go-hello-tar.tar" "$IMG_TAR" wasi/wasm
	check "tar-layer image prints the greeting" hello_greets
	check "args after the module path reach the module" hello_args
	check "--env reaches the module" hello_env
	check "--exit 7 is ctr's exit status" hello_exit
	check "piped stdin reaches --stdin" hello_stdin
	check "40 runs, 4 at a time: every create gets its stdio" concurrent_creates
	if [[ $F == 2 ]]; then
		check "import the wasm-layer image (--local)" import_image "$TMP/go-hello-wasm.tar" "$IMG_WASM" wasi/wasm
		check "wasm-layer image prints the greeting" wasm_layer_greets
	else
		skip "wasm-layer image" "containerd 1.6 cannot unpack application/wasm layers"
	fi
	check "rw bind mount: the module's write lands on the host" bind_rw
	check "ro bind mount: the write fails and nothing is written" bind_ro_refuses
	check "ro bind mount: the module sees EROFS (go-hello exits 1), no trap" bind_ro_errno
	check "junk module: create fails naming the problem" rootfs_fails junk e2e-junk \
		'not a WebAssembly module|neither a WebAssembly module|invalid WebAssembly' /bad.wasm
	check "truncated module: create fails naming the problem" rootfs_fails truncated e2e-trunc \
		'invalid WebAssembly|not a WebAssembly module' /bad.wasm
	check "missing entrypoint: create fails saying it does not exist" rootfs_fails empty e2e-nope \
		'/nope\.wasm.*(does not exist|not found|no such)' /nope.wasm
	check "no command at all: create fails saying there is no entrypoint" rootfs_fails empty e2e-nocmd \
		'no entrypoint'
	check "SIGTERM stops a sleeping module (exit 143)" kill_case e2e-term SIGTERM 143 --sleep
	check "SIGKILL stops a spinning module (exit 137)" kill_case e2e-kill SIGKILL 137 --spin log
	check "SIGTERM stops a spinning module (exit 143)" kill_case e2e-term-spin SIGTERM 143 --spin log
	check "a trap exits 134 with a wasm backtrace on stderr" trap_reported
	check "import the native pause image" import_image "$TMP/pause.tar" "$PAUSE"
	check "native pause runs under runc through the shim, stops on SIGTERM" pause_native
	check "the module compiled once and is in the cache" compiled_once
}

# --- main ----------------------------------------------------------------------------------

set_flavours "$@"
started=$SECONDS

prepared=1
check "install prerequisites" install_prerequisites # not fatal: what is missing fails later
if [[ ${FABRICKS_E2E_BUILD:-1} != 0 ]]; then check "cargo build shim and CLI" build_binaries || prepared=0; fi
mkdir -p "$TMP/src"
# A private copy: `fabricks build` writes into the project's .fabricks/, which others may use.
cp -r "$REPO/examples/go-hello" "$TMP/src/" && rm -rf "$TMP/src/go-hello/.fabricks"
check "fabricks build (tar layer)" build_image "$TMP/src/go-hello" "$IMG_TAR" "$TMP/go-hello-tar.tar" --layer tar || prepared=0
check "fabricks build --layer wasm" build_image "$TMP/src/go-hello" "$IMG_WASM" "$TMP/go-hello-wasm.tar" --layer wasm
check "the tar-layer image holds /go-hello.wasm" extract_module || prepared=0
check "harness pause image" make_pause_image
if ((prepared == 0)); then
	echo "# e2e: preparation failed, no containerd started"
	summary
	exit 1
fi
make_rootfses

for F in "${flavours[@]}"; do
	flavour_cases
	check "down" harness_down
	check "leftovers after down: no shim, mount or state" nothing_left
	F=''
done
echo "# e2e: $((SECONDS - started)) s"
summary
((failed == 0))
