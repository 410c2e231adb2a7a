#!/usr/bin/env bash
# End-to-end tests of WASI preview-2 components under containerd-shim-fabricks-v1, through ctr,
# with the components of test-cluster/components (componentize-py and componentize-js, built
# from the package registries by components/build.sh) packed by `fabricks build FILE.wasm`.
# Per flavour:
#   commands   runwasi's component-hello-world greets and exits 0, and its second start
#              compiles nothing; wasi:cli/run: greeting, args, env, the rootfs as `/`, `exit-with-code` status,
#              a trap exits 134 with the trap on stderr, a JS exception exits 1, SIGTERM of a
#              sleeping one 143, SIGKILL of a spinning one 137, past --memory-limit 137 with the
#              reason on stderr and a TaskOOM event
#   sockets    a wasi:sockets listener on a port of its listen spec (FABRICKS_LISTEN) accepts
#              connections; one off the spec is refused with the reason on stderr (exit 3)
#   http       wasi:http services (Python, JS) on the listen spec's port: GET /, a 10 MiB POST
#              /echo comes back byte for byte, 20 concurrent GETs; with no listen spec at all
#              they serve on 8080; SIGTERM exits 0, and lets an upload in flight finish first
#   errors     `/x.wasm#export` on a component fails the create naming the problem
#   leftovers  nothing of ours is left after each case and after down
# and `fabricks run` of a command and a service component.
#
# usage: e2e-components.sh [1.6|2]...   (default both; needs root, cargo, curl, and the built
#                                        components: FABRICKS_TEST_COMPONENTS)
# Without the components every case prints `skip - …` with the reason.
# Knobs: FABRICKS_HARNESS_DIR (default /tmp/fh-components), FABRICKS_E2E_BUILD=0,
# FABRICKS_E2E_TIMEOUT, FABRICKS_SHIM, FABRICKS_CLI; FABRICKS_COMPONENTS_PORT (a free loopback
# port for the services, default 18480).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fh-components}
TMO=${FABRICKS_E2E_TIMEOUT:-120}
# shellcheck source-path=SCRIPTDIR source=lib/suite.sh
. "$HERE/lib/suite.sh"
COMPONENTS=${FABRICKS_TEST_COMPONENTS:-}
PORT=${FABRICKS_COMPONENTS_PORT:-18480}
readonly IMG_PY=localhost/fabricks-comp/py-cli:latest
readonly IMG_JS=localhost/fabricks-comp/js-cli:latest
readonly IMG_PYHTTP=localhost/fabricks-comp/py-http:latest
readonly IMG_JSHTTP=localhost/fabricks-comp/js-http:latest
readonly IMG_HELLO=localhost/fabricks-comp/component-hello-world:latest

suite_begin e2e-components fh-components
RETRY_MISSING=1
NOFLAVOUR=local
BGPIDS=()

suite_stop() {
	local p
	for p in "${BGPIDS[@]}"; do
		if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null; fi
	done
}

# --- preparation ---------------------------------------------------------------------------

# pack NAME REF: the prebuilt component packed into an OCI archive at $TMP/NAME.tar.
pack() {
	[[ -s $COMPONENTS/$1.wasm ]] || why "no $COMPONENTS/$1.wasm (test-cluster/components/build.sh makes it)" || return
	cp "$COMPONENTS/$1.wasm" "$TMP/$1.wasm"
	build_image "$TMP/$1.wasm" "$2" "$TMP/$1.tar"
}

# --- commands ------------------------------------------------------------------------------

hello_world() {
	run_ctr run --rm --runtime "$RT" "$IMG_HELLO" comp-hello
	expect_rc 0 && expect_out "Hello, world!" && expect_gone comp-hello
}

# A later start of the same image loads the compiled component: no compile in its shim log.
second_start_cached() {
	local before digest
	digest=$(sha256sum <"$COMPONENTS/component-hello-world.wasm" | cut -d' ' -f1)
	before=$(wc -l <"$W/containerd.log")
	run_ctr run --rm --runtime "$RT" "$IMG_HELLO" comp-hello2
	expect_rc 0 && expect_gone comp-hello2 || return
	tail -n +"$((before + 1))" "$W/containerd.log" >"$TMP/start-log"
	grep -q "using cached module .*/$digest\.component\.cwasm" "$TMP/start-log" ||
		why "no \"using cached module .../$digest.component.cwasm\" in the shim log of this start" || return
	! grep -q "compiled module" "$TMP/start-log" || why "this start compiled: $(grep -m 1 'compiled module' "$TMP/start-log")"
}

py_greets() {
	run_ctr run --rm --runtime "$RT" --env FABRICKS_TEST=from-ctr "$IMG_PY" comp-py
	expect_rc 0 && expect_out "hello from componentize-py" && expect_out "env FABRICKS_TEST: from-ctr" &&
		expect_gone comp-py
}

py_args_root() {
	run_ctr run --rm --runtime "$RT" "$IMG_PY" comp-py-ls /py-cli.wasm ls /
	expect_rc 0 && expect_out "args: ls /" && expect_out_re 'ls: .*py-cli\.wasm' && expect_gone comp-py-ls
}

py_exit() {
	run_ctr run --rm --runtime "$RT" "$IMG_PY" comp-py-exit /py-cli.wasm exit 7
	expect_rc 7 && expect_gone comp-py-exit
}

py_trap() {
	run_ctr run --rm --runtime "$RT" "$IMG_PY" comp-py-trap /py-cli.wasm trap
	expect_rc 134 && expect_err_re 'trap|wasm backtrace' && expect_gone comp-py-trap
}

js_greets_exits() {
	run_ctr run --rm --runtime "$RT" "$IMG_JS" comp-js /js-cli.wasm exit 5
	expect_rc 5 && expect_out "hello from componentize-js" && expect_out "args: exit 5" && expect_gone comp-js
}

# componentize-js reports nothing of the exception itself: the failed run is the evidence.
js_throws() {
	run_ctr run --rm --runtime "$RT" "$IMG_JS" comp-js-throw /js-cli.wasm throw
	expect_rc 1 && expect_out "args: throw" && expect_gone comp-js-throw
}

# stop_case ID SIGNAL STATUS ARGS...: a detached component runs ARGS, is sent SIGNAL once its
# greeting is in its log, and exits STATUS.
stop_case() {
	local id=$1 sig=$2 status=$3 log=$TMP/$F-$1.log
	shift 3
	run_ctr run -d --runtime "$RT" --log-uri "file://$log" "$IMG_PY" "$id" /py-cli.wasm "$@"
	expect_rc 0 && wait_status "$id" RUNNING 30 && wait_file "$log" "args: $*" 60 || return
	sleep 0.5 # past the greeting, into the wait
	run_ctr task kill -s "$sig" "$id"
	expect_rc 0 && wait_status "$id" STOPPED "$STOP_WAIT" || return
	run_ctr task rm "$id"
	expect_rc 0 && expect_out "exit code $status" "the exit status" || return
	run_ctr containers rm "$id"
	expect_rc 0 && expect_gone "$id"
}

# Past the limit: 137, the reason on stderr and a TaskOOM event, as for a module.
py_oom() {
	local events=$TMP/events-$F
	c events >"$events" 2>&1 &
	local watcher=$!
	run_ctr run --rm --runtime "$RT" --memory-limit $((64 << 20)) "$IMG_PY" comp-py-oom /py-cli.wasm grow
	kill "$watcher" 2>/dev/null
	wait "$watcher" 2>/dev/null || true
	expect_rc 137 && expect_err_re 'out of memory' || return
	grep -q '/tasks/oom.*comp-py-oom' "$events" || why "no /tasks/oom event for comp-py-oom" || return
	expect_gone comp-py-oom
}

# --- sockets -------------------------------------------------------------------------------

# connect PORT SECONDS: something accepts TCP connections on 127.0.0.1:PORT.
connect() {
	local i
	for ((i = 0; i < $2 * 5; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.2
	done
	why "nothing accepts on 127.0.0.1:$1 after $2 s"
}

socket_declared() {
	local id=comp-bind log=$TMP/$F-comp-bind.log
	run_ctr run -d --net-host --runtime "$RT" --env "FABRICKS_LISTEN=tcp=$PORT" --log-uri "file://$log" \
		"$IMG_PY" "$id" /py-cli.wasm bind "$PORT"
	# Python buffers its stdout into a file: the listener itself is the signal.
	expect_rc 0 && wait_status "$id" RUNNING 30 && connect "$PORT" 60 || return
	run_ctr task kill -s SIGKILL "$id"
	expect_rc 0 && wait_status "$id" STOPPED "$STOP_WAIT" || return
	run_ctr task rm "$id" && run_ctr containers rm "$id"
	expect_gone "$id" || return
	! (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || why "port $PORT still accepts after the task ended"
}

socket_undeclared() {
	run_ctr run --rm --net-host --runtime "$RT" "$IMG_PY" comp-bind-no /py-cli.wasm bind "$PORT"
	expect_rc 3 && expect_err_re "refused to bind TCP 0\.0\.0\.0:$PORT: not in the container's listen spec" &&
		expect_gone comp-bind-no
}

# --- HTTP ----------------------------------------------------------------------------------

# get URL [CURL ARGS...]: sets CODE and OUT.
get() {
	local url=$1
	shift
	CMD="curl $* $url"
	OUT=$(curl -sS -m 30 -w '\n%{http_code}' "$@" "$url" 2>"$TMP/stderr")
	RC=$?
	ERR=$(<"$TMP/stderr")
	CODE=${OUT##*$'\n'}
	OUT=${OUT%$'\n'*}
}

# wait_get URL SECONDS: GET URL until it answers 200; its body in OUT.
wait_get() {
	local i
	for ((i = 0; i < $2 * 5; i++)); do
		get "$1"
		[[ $RC == 0 && $CODE == 200 ]] && return 0
		sleep 0.2
	done
	why "GET $1: no 200 after $2 s (curl $RC, HTTP ${CODE:-none}: ${ERR:-$OUT})"
}

# serve ID IMAGE PORT [ctr args...]: the service runs detached on the host's network.
serve() {
	local id=$1 img=$2 port=$3
	shift 3
	run_ctr run -d --net-host --runtime "$RT" "$@" "$img" "$id"
	expect_rc 0 && wait_status "$id" RUNNING 30 && wait_get "http://127.0.0.1:$port/" 60
}

# echo_10mib URL: a 10 MiB POST to URL/echo comes back byte for byte.
echo_10mib() {
	local want got
	[[ -s $TMP/payload ]] || head -c $((10 << 20)) /dev/urandom >"$TMP/payload"
	want=$(sha256sum <"$TMP/payload" | cut -d' ' -f1)
	got=$(curl -sS -m 120 --data-binary "@$TMP/payload" "$1/echo" | sha256sum | cut -d' ' -f1)
	[[ $got == "$want" ]] || why "POST /echo of 10 MiB came back with sha256 $got, want $want"
}

http_py() {
	local id=comp-pyhttp url=http://127.0.0.1:$PORT i pids=()
	serve "$id" "$IMG_PYHTTP" "$PORT" --env "FABRICKS_LISTEN=http=127.0.0.1:$PORT" || return
	[[ $OUT == "hello from componentize-py"* ]] || why "GET /: $OUT" || return
	echo_10mib "$url" || return
	for i in $(seq 20); do
		curl -sS -m 60 -o "$TMP/c$i" "$url/" &
		pids+=($!)
	done
	for i in "${pids[@]}"; do wait "$i" || why "a concurrent GET failed" || return; done
	for i in $(seq 20); do
		[[ $(<"$TMP/c$i") == "hello from componentize-py"* ]] || why "concurrent GET $i: $(<"$TMP/c$i")" || return
	done
	get "$url/nope"
	[[ $CODE == 404 ]] || why "GET /nope: HTTP $CODE, want 404" || return
	finish "$id"
}

http_js_default_port() {
	local id=comp-jshttp
	! (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null || why "something else serves 127.0.0.1:8080 here" || return
	serve "$id" "$IMG_JSHTTP" 8080 || return
	[[ $OUT == *"componentize-js"* ]] || why "GET / on the default port: $OUT" || return
	echo_10mib http://127.0.0.1:8080 || return
	finish "$id"
}

# drain_in_flight IMAGE: SIGTERM while a slow upload is in flight: the echo completes, then the
# task exits 0.
drain_in_flight() {
	local id=comp-drain url=http://127.0.0.1:$PORT want got curl_pid
	serve "$id" "$1" "$PORT" --env "FABRICKS_LISTEN=http=127.0.0.1:$PORT" || return
	head -c $((2 << 20)) /dev/urandom >"$TMP/slow"
	want=$(sha256sum <"$TMP/slow" | cut -d' ' -f1)
	# 2 MiB at 512 KiB/s: about 4 s on the wire, SIGTERM after 1 s.
	curl -sS -m 60 --limit-rate 512k --data-binary "@$TMP/slow" -o "$TMP/slow.back" "$url/echo" 2>"$TMP/slow.err" &
	curl_pid=$!
	sleep 1
	run_ctr task kill -s SIGTERM "$id"
	expect_rc 0 || return
	wait "$curl_pid" || why "the upload in flight failed after SIGTERM: $(<"$TMP/slow.err")" || return
	got=$(sha256sum <"$TMP/slow.back" | cut -d' ' -f1)
	[[ $got == "$want" ]] || why "the drained echo came back with sha256 $got, want $want" || return
	wait_status "$id" STOPPED "$STOP_WAIT" || return
	run_ctr task rm "$id"
	expect_rc 0 || return
	[[ $ERR != *"exit code"* ]] || why "did not exit 0 after the drain: $ERR" || return
	run_ctr containers rm "$id"
	expect_rc 0 && expect_gone "$id"
}

export_refused() {
	run_ctr run --rm --runtime "$RT" "$IMG_PY" comp-export '/py-cli.wasm#run'
	[[ $RC != 0 && $RC != timeout ]] || why "create succeeded" || return
	expect_err_re 'is a component' && expect_gone comp-export
}

# --- fabricks run --------------------------------------------------------------------------

run_command() {
	run_cmd "$FABRICKS" run "$COMPONENTS/py-cli.wasm" --env FABRICKS_TEST=cli -- exit 4
	expect_rc 4 && expect_out "hello from componentize-py" && expect_out "env FABRICKS_TEST: cli"
}

run_service() {
	local pid
	"$FABRICKS" run "$COMPONENTS/py-http.wasm" --listen "http=127.0.0.1:$PORT" >"$TMP/run.out" 2>&1 &
	pid=$!
	BGPIDS+=("$pid")
	if ! wait_get "http://127.0.0.1:$PORT/" 60 || [[ $OUT != "hello from componentize-py"* ]]; then
		kill -KILL "$pid"
		wait "$pid"
		why "GET /: ${WHY:-$OUT}"
		return 1
	fi
	kill -TERM "$pid"
	wait "$pid"
	RC=$?
	expect_rc 0 || why "fabricks run exited $RC after SIGTERM: $(tail -n 3 "$TMP/run.out")"
}

# --- main ----------------------------------------------------------------------------------

flavour_cases() {
	use_flavour
	check "containerd up" harness_up || return
	check "import the components' images" import_all || return
	check "runwasi's component-hello-world: greeting, exit 0" hello_world
	check "a later start compiles nothing (\"using cached module\")" second_start_cached
	check "py command: greeting and env" py_greets
	check "py command: args, the rootfs as /" py_args_root
	check "py command: exit-with-code 7 is the exit status" py_exit
	check "py command: a trap exits 134 with the trap on stderr" py_trap
	check "js command: greeting, exit-with-code 5" js_greets_exits
	check "js command: an exception exits 1" js_throws
	check "SIGTERM stops a sleeping component (exit 143)" stop_case comp-term SIGTERM 143 sleep 300
	check "SIGKILL stops a spinning component (exit 137)" stop_case comp-kill SIGKILL 137 spin
	check "past --memory-limit: exit 137, the reason on stderr, a TaskOOM event" py_oom
	check "wasi:sockets: a listener on a declared port accepts; the port is free after the task" socket_declared
	check "wasi:sockets: a port off the listen spec is refused (exit 3, the reason on stderr)" socket_undeclared
	check "wasi:http (py): GET, 10 MiB echo, 20 concurrent GETs, 404, SIGTERM exits 0" http_py
	check "wasi:http (js): no listen spec serves on 8080, 10 MiB echo; SIGTERM exits 0" http_js_default_port
	check "wasi:http (py): SIGTERM with an upload in flight lets it finish, then exits 0" drain_in_flight "$IMG_PYHTTP"
	check "wasi:http (js): SIGTERM with an upload in flight lets it finish, then exits 0" drain_in_flight "$IMG_JSHTTP"
	check "an #export on a component fails the create naming it" export_refused
}

import_all() {
	import_image "$TMP/py-cli.tar" "$IMG_PY" wasi/wasm && import_image "$TMP/js-cli.tar" "$IMG_JS" wasi/wasm &&
		import_image "$TMP/py-http.tar" "$IMG_PYHTTP" wasi/wasm && import_image "$TMP/js-http.tar" "$IMG_JSHTTP" wasi/wasm &&
		import_image "$TMP/component-hello-world.tar" "$IMG_HELLO" wasi/wasm
}

set_flavours "$@"
started=$SECONDS
if [[ -z $COMPONENTS || ! -s $COMPONENTS/py-cli.wasm ]]; then
	reason="no components: set FABRICKS_TEST_COMPONENTS to where test-cluster/components/build.sh put them"
	for name in commands sockets http errors "fabricks run"; do skip "$name" "$reason"; done
	summary
	exit 0
fi
prepared=1
check "install prerequisites" install_prerequisites
if [[ ${FABRICKS_E2E_BUILD:-1} != 0 ]]; then check "cargo build shim and CLI" build_binaries || prepared=0; fi
check "fabricks build py-cli.wasm" pack py-cli "$IMG_PY" || prepared=0
check "fabricks build js-cli.wasm" pack js-cli "$IMG_JS" || prepared=0
check "fabricks build py-http.wasm" pack py-http "$IMG_PYHTTP" || prepared=0
check "fabricks build js-http.wasm (no listen spec)" pack js-http "$IMG_JSHTTP" || prepared=0
check "fabricks build component-hello-world.wasm" pack component-hello-world "$IMG_HELLO" || prepared=0
if ((prepared == 0)); then
	echo "# e2e-components: preparation failed, no containerd started"
	summary
	exit 1
fi
check "fabricks run: a command component's status and env" run_command
check "fabricks run: a wasi:http component serves, SIGTERM exits 0" run_service
for F in "${flavours[@]}"; do
	flavour_cases
	check "down" harness_down
	check "leftovers after down: no shim, mount or state" nothing_left
	F=''
done
echo "# e2e-components: $((SECONDS - started)) s"
summary
((failed == 0))
