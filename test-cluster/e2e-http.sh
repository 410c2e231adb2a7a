#!/usr/bin/env bash
# End-to-end tests of Fabricks' listening sockets: examples/go-http served by
# containerd-shim-fabricks-v1 on a private containerd (harness.sh) through ctr, and by
# `fabricks run` (go-http as a CRI pod is e2e-cri.sh's). Per flavour:
#   ctr        `ctr run -d --net-host` of the go-http image (port 8080 from its config): /, /json,
#              /echo, /healthz, /stream?mb=100 (length and sha256 of the deterministic content),
#              50 concurrent requests
#   sources    the annotation fabricks.io/listen and the variable FABRICKS_LISTEN on an image
#              without ports; precedence annotation > env > image; no spec at all; no --net-host
#   errors     malformed spec, duplicate port, a port in use (a foreign listener, a second
#              go-http): `ctr run` fails naming the problem and leaves no task or shim
#   stop       SIGTERM is graceful (exit 0, an in-flight request completes); SIGKILL is 137; the
#              stop times are printed as `#` lines (figures, not assertions)
#   reactor    go-http built with --mode reactor, served by hyper and the pool in its runner:
#              the same route checks as the command build; /panic gets a 500 with the trap in
#              the task's log and the next requests succeed; a full queue answers 503 with
#              Retry-After; a request past its deadline is cut and its instance replaced; a
#              reactor without the ABI fails the create; SIGTERM exits 0, SIGKILL 137
#   leftovers  after down, nothing of ours is left
# and once per mode: `fabricks run examples/go-http --listen …` serves and exits 0 on SIGTERM.
#
# usage: e2e-http.sh [1.6|2]...      (default: both flavours; needs root, go, cargo, curl, jq,
#                                     python3)
#
# Cases print as lib/suite.sh says; the exit status is 1 if any case failed. HTTP goes only to
# 127.0.0.1. Knobs (see lib/suite.sh for the common ones): FABRICKS_HARNESS_DIR (default
# /tmp/fh-http; the suite takes down whatever harness runs there).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fh-http}
# shellcheck source-path=SCRIPTDIR source=lib/suite.sh
. "$HERE/lib/suite.sh"
readonly IMG=localhost/go-http:latest          # listen = "http=8080" from fabricks.toml
readonly IMG_NOPORTS=localhost/go-http:noports # --listen '': no ExposedPorts, no label
readonly IMG_HELLO=localhost/go-hello:latest
readonly IMG_REACTOR=localhost/go-http:reactor       # the same handler, --mode reactor
readonly IMG_HELLO_REACTOR=localhost/go-hello:reactor # a reactor without the Fabricks ABI
readonly MIB=1048576

suite_begin e2e-http fh-http-e2e
NOFLAVOUR=local
EVPID=''  # `ctr events` recorder
OCCPID='' # a foreign listener (the port-in-use case)
BGPIDS=() # other background processes of ours (curl, fabricks run)
KEEP=''   # containers that outlive their case (h1 serves cases 1 to 4)

# Called by the EXIT trap.
suite_stop() {
	local p
	for p in "$EVPID" "$OCCPID" "${BGPIDS[@]}"; do
		if [[ -n $p ]] && kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null; fi
	done
}

# --- events: exit statuses and stop times ----------------------------------------------------

# Records containerd's events (`ctr events`) for this flavour: /tasks/exit carries the exit
# status (absent when 0) and containerd's timestamp of the exit.
start_events() {
	"$CTR" events >"$TMP/events-$F" 2>&1 &
	EVPID=$!
}

stop_events() {
	if [[ -n $EVPID ]]; then
		kill "$EVPID" 2>/dev/null
		wait "$EVPID" 2>/dev/null
	fi
	EVPID=''
}

events_mark() { wc -l <"$TMP/events-$F"; }

# wait_exit ID MARK SECONDS: waits for the /tasks/exit event of ID after line MARK of the
# event log; sets EXIT_STATUS and EXIT_AT (seconds since the epoch, with nanoseconds).
wait_exit() {
	local i line
	for ((i = 0; i < $3 * 10; i++)); do
		line=$(tail -n "+$(($2 + 1))" "$TMP/events-$F" | grep -F ' /tasks/exit ' | grep -F "\"id\":\"$1\"" | head -n1)
		if [[ -n $line ]]; then
			EXIT_STATUS=0
			if [[ $line =~ \"exit_status\":([0-9]+) ]]; then EXIT_STATUS=${BASH_REMATCH[1]}; fi
			# "2026-11-21 12:43:26.384626625 +0000 UTC fabricks-2 /tasks/exit {...}"
			EXIT_AT=$(date -d "${line%% UTC *}" +%s.%N) || why "cannot read the time of: $line"
			return
		fi
		sleep 0.1
	done
	why "no exit event for $1 ${3}s later (task is $(task_status "$1"))"
}

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# --- HTTP ----------------------------------------------------------------------------------

# get URL [CURL ARGS...]: sets CODE and BODY (and CMD/OUT for failure reports).
get() {
	local url=$1
	shift
	CMD="curl $* $url"
	rm -f "$TMP/body"
	CODE=$(curl -sS -m 60 -o "$TMP/body" -w '%{http_code}' "$@" "$url" 2>"$TMP/stderr")
	RC=$?
	BODY=$(cat "$TMP/body" 2>/dev/null)
	OUT=$BODY ERR=$(<"$TMP/stderr")
	((RC == 0)) || why "curl failed (exit $RC)" || return
	[[ $CODE == 200 ]] || why "HTTP $CODE from $url"
}

# sha256 of the first $1 MiB of /stream's content: byte i is i % 251.
pattern_sha() {
	local i
	if [[ ! -s $TMP/chunk ]]; then
		for ((i = 0; i < 251; i++)); do printf '%b' "\\0$(printf %03o "$i")"; done >"$TMP/chunk"
		# 251 * 4096 bytes: a whole number of periods, so copies continue the pattern.
		for ((i = 0; i < 12; i++)); do
			cat "$TMP/chunk" "$TMP/chunk" >"$TMP/chunk2"
			mv "$TMP/chunk2" "$TMP/chunk"
		done
	fi
	while :; do cat "$TMP/chunk" 2>/dev/null || break; done | head -c "$(($1 * MIB))" | sha256sum | cut -d' ' -f1
}

# get_stream URL MIB: 200, exactly MIB MiB, and the right bytes.
get_stream() {
	local url=$1 n=$2 got want
	CMD="curl -o FILE $url"
	OUT=$(curl -sS -m 300 -o "$TMP/stream" -w '%{http_code} %{size_download}' "$url" 2>"$TMP/stderr")
	RC=$?
	ERR=$(<"$TMP/stderr")
	((RC == 0)) || why "curl failed (exit $RC)" || return
	[[ $OUT == "200 $((n * MIB))" ]] || why "got HTTP status and size '$OUT', want '200 $((n * MIB))'" || return
	got=$(sha256sum "$TMP/stream" | cut -d' ' -f1)
	rm -f "$TMP/stream"
	want=$(pattern_sha "$n")
	[[ $got == "$want" ]] || why "sha256 of the $n MiB is $got, want $want (byte i = i % 251)"
}

# slow_download URL RATE FILE: curl reads URL at RATE into FILE in the background (status and
# size to FILE.out) until its first bytes arrive; sets SLOW to its pid.
slow_download() {
	local i
	curl -sS -m 120 --limit-rate "$2" -o "$3" -w '%{http_code} %{size_download}' "$1" >"$3.out" 2>&1 &
	SLOW=$!
	BGPIDS+=("$SLOW")
	for ((i = 0; i < 300; i++)); do
		[[ -s $3 ]] && return 0
		sleep 0.1
	done
	why "the download of $1 never started"
}

# Listening TCP sockets (ADDR:PORT, sorted) owned by process $1, in the host's netns.
listeners() { ss -Hltnp 2>/dev/null | awk -v p="pid=$1," 'index($0, p) { print $4 }' | sort -u | paste -sd' ' -; }

# port_free PORT: nothing listens on PORT on the host (else the case cannot be told apart
# from another program's server).
port_free() {
	local l
	l=$(ss -Hltnp "sport = :$1" 2>/dev/null)
	[[ -z $l ]] || why "port $1 is already taken on this host: ${l//$'\n'/; }"
}

# --- preparation (once) --------------------------------------------------------------------

tools_present() {
	local t missing=()
	for t in curl jq python3 ss sha256sum; do command -v "$t" >/dev/null || missing+=("$t"); done
	((${#missing[@]} == 0)) || why "missing tools: ${missing[*]}"
}

# image_config ARCHIVE: the image config JSON of a single-manifest OCI archive.
image_config() {
	local m cfg
	m=$(tar -xOf "$1" index.json | jq -r '.manifests[0].digest') || return
	cfg=$(tar -xOf "$1" "blobs/sha256/${m#sha256:}" | jq -r '.config.digest') || return
	tar -xOf "$1" "blobs/sha256/${cfg#sha256:}"
}

build_http() {
	local cfg
	build_image "$TMP/src/examples/go-http" "$IMG" "$TMP/go-http.tar" || return
	cfg=$(image_config "$TMP/go-http.tar") || why "cannot read the image config" || return
	OUT=$cfg
	jq -e '.config.ExposedPorts == {"8080/tcp": {}}' <<<"$cfg" >/dev/null || why "ExposedPorts is not {8080/tcp}" || return
	jq -e '.config.Labels["fabricks.io/listen"] == "http=8080"' <<<"$cfg" >/dev/null || why "label fabricks.io/listen is not http=8080"
}

build_noports() {
	local cfg
	build_image "$TMP/src/examples/go-http" "$IMG_NOPORTS" "$TMP/go-http-noports.tar" --listen '' || return
	cfg=$(image_config "$TMP/go-http-noports.tar") || why "cannot read the image config" || return
	OUT=$cfg
	jq -e '(.config.ExposedPorts // {}) == {} and ((.config.Labels // {}) | has("fabricks.io/listen") | not)' <<<"$cfg" >/dev/null ||
		why "the --listen '' image still declares ports"
}

build_hello() { build_image "$TMP/src/examples/go-hello" "$IMG_HELLO" "$TMP/go-hello.tar"; }

build_reactor() {
	local cfg
	build_image "$TMP/src/examples/go-http" "$IMG_REACTOR" "$TMP/go-http-reactor.tar" --mode reactor || return
	cfg=$(image_config "$TMP/go-http-reactor.tar") || why "cannot read the image config" || return
	OUT=$cfg
	jq -e '.config.Labels["fabricks.io/mode"] == "reactor" and .config.Labels["fabricks.io/listen"] == "http=8080"' <<<"$cfg" >/dev/null ||
		why "labels fabricks.io/mode=reactor and fabricks.io/listen=http=8080 missing"
}

build_hello_reactor() { build_image "$TMP/src/examples/go-hello" "$IMG_HELLO_REACTOR" "$TMP/go-hello-reactor.tar" --mode reactor; }

# Case 6, once per mode: `fabricks run` binds the port itself, in this process (a reactor is
# served by this process's pool, as in the shim). fabricks_run MODE.
fabricks_run() {
	local flag pid i st
	port_free 18090 || return
	flag=(--listen http=127.0.0.1:18090 --mode "$1")
	CMD="fabricks run $TMP/src/examples/go-http ${flag[*]}"
	"$FABRICKS" run "$TMP/src/examples/go-http" "${flag[@]}" >"$TMP/run.out" 2>"$TMP/run.err" </dev/null &
	pid=$!
	BGPIDS+=("$pid")
	wait_http http://127.0.0.1:18090/healthz 120 || { OUT=$(<"$TMP/run.out") ERR=$(<"$TMP/run.err"); kill -KILL "$pid" 2>/dev/null; return 1; }
	if ! { get http://127.0.0.1:18090/ && h_root_body; } || ! { get http://127.0.0.1:18090/json && h_json_body; }; then
		kill -KILL "$pid"
		return 1
	fi
	kill -TERM "$pid"
	for ((i = 0; i < STOP_WAIT * 5; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid"
		why "still running ${STOP_WAIT}s after SIGTERM"
	fi
	wait "$pid"
	st=$?
	OUT=$(<"$TMP/run.out") ERR=$(<"$TMP/run.err") RC=$st
	((st == 0)) || why "exit status $st after SIGTERM, want 0" || return
	# A reactor's main never runs: only the command build says it stopped.
	[[ $1 == reactor ]] || grep -qF 'go-http: stopped' "$TMP/run.out" || why "the module did not print 'go-http: stopped'"
}

# --- flavour cases: ctr --------------------------------------------------------------------

containerd_up() {
	stop_events
	harness_up || return
	start_events
}

# Case 1: the image's own port, on the host's network.
h1_serves() {
	local pid l
	port_free 8080 || return
	KEEP=h1
	run_ctr run -d --net-host --runtime "$RT" "$IMG" h1
	expect_rc 0 && wait_status h1 RUNNING 30 && wait_http http://127.0.0.1:8080/healthz 60 || return
	pid=$(task_pid h1)
	l=$(listeners "$pid")
	[[ $l == 0.0.0.0:8080 ]] || why "the task's runner (pid $pid) listens on '$l', want 0.0.0.0:8080 (the image's port)"
}

h_root_body() { [[ $BODY == "Hello from Fabricks! (wasip1/wasm)" ]] || why "GET / answered '$BODY'"; }

h_json_body() {
	jq -e '.runtime == "wasip1/wasm" and .message == "Hello from Fabricks!" and (.go | startswith("go"))' <<<"$BODY" >/dev/null ||
		why "/json does not say runtime wasip1/wasm"
}

# --- go-http's routes: one set of checks for every way it is served ----------------------
# They ask BASE (http://ADDR:PORT), set by route_checks.

h_root() { get "$BASE/" && h_root_body; }
h_json() { get "$BASE/json" && h_json_body; }

h_echo() {
	local v="e2e-http-$F-$$" b='{"hello": "fabricks", "n": 42}'
	get "$BASE/echo?x=1" -X POST -H "X-Fabricks-E2e: $v" -H 'Content-Type: application/json' --data-binary "$b" || return
	jq -e --arg v "$v" --arg b "$b" '.method == "POST" and .path == "/echo" and .query.x == ["1"] and
		.headers["X-Fabricks-E2e"] == [$v] and .body == $b and .body_bytes == ($b | length)' <<<"$BODY" >/dev/null ||
		why "/echo did not send back the method, header and body"
}

h_healthz() {
	get "$BASE/healthz" || return
	[[ $BODY == ok ]] || why "/healthz answered '$BODY'"
}

h_stream() { get_stream "$BASE/stream?mb=100" 100; }

h_concurrent() {
	local codes n
	CMD="seq 50 | xargs -P 50 -I{} curl $BASE/echo?n={}"
	codes=$(seq 50 | xargs -P 50 -I{} curl -sS -m 60 -o /dev/null -w '%{http_code}\n' "$BASE/echo?n={}" 2>"$TMP/stderr")
	ERR=$(<"$TMP/stderr") OUT=$(sort <<<"$codes" | uniq -c)
	n=$(grep -cx 200 <<<"$codes")
	((n == 50)) || why "$n of 50 concurrent requests answered 200"
}

readonly ROUTES=("GET / says Hello from Fabricks! (wasip1/wasm):h_root" "GET /json reports runtime wasip1/wasm:h_json"
	"POST /echo sends back the header and body:h_echo" "GET /healthz is ok:h_healthz"
	"GET /stream?mb=100: 100 MiB, sha256 of the i%251 pattern:h_stream" "50 concurrent requests all answer 200:h_concurrent")

# route_checks MODE BASE: every route against go-http served at BASE.
route_checks() {
	local r
	BASE=$2
	for r in "${ROUTES[@]}"; do check "$1: ${r%:*}" "${r##*:}"; done
}

# route_skips MODE WHY
route_skips() {
	local r
	for r in "${ROUTES[@]}"; do skip "$1: ${r%:*}" "$2"; done
}

# serve ID RUN_ARGS...: `ctr run -d RUN_ARGS ID` (go-http) with its log in a file; waits
# until it says it listens. Sets LOG.
serve() {
	local id=$1
	shift
	LOG=$TMP/$F-$id.log
	run_ctr run -d --log-uri "file://$LOG" --runtime "$RT" "$@" "$id"
	expect_rc 0 || return
	wait_file "$LOG" 'go-http: listening' 60 || { OUT=$(cat "$LOG" 2>/dev/null); return 1; }
	wait_status "$id" RUNNING 10
}

# expect_listeners ID WANT: the task's runner listens exactly on WANT (space-separated).
expect_listeners() {
	local pid l
	pid=$(task_pid "$1")
	l=$(listeners "$pid")
	[[ $l == "$2" ]] || why "task $1 (runner pid $pid) listens on '$l', want '$2'"
}

src_annotation() {
	port_free 18081 || return
	serve s-annot --net-host --annotation fabricks.io/listen=http=127.0.0.1:18081 "$IMG_NOPORTS" &&
		expect_listeners s-annot 127.0.0.1:18081 && get http://127.0.0.1:18081/ && finish s-annot
}

src_env() {
	port_free 18082 || return
	serve s-env --net-host --env FABRICKS_LISTEN=http=18082 "$IMG_NOPORTS" &&
		expect_listeners s-env 0.0.0.0:18082 && get http://127.0.0.1:18082/json && finish s-env
}

# No spec anywhere: the module starts without sockets and its SDK says what is missing.
src_none() {
	run_ctr run --rm --net-host --runtime "$RT" "$IMG_NOPORTS" s-none
	expect_rc 1 && expect_err_re 'FABRICKS_LISTEN_FDS is not set' && expect_gone s-none
}

# The image says 8080 (h1 holds it: an image-derived bind would fail), env 18086, annotation 18085.
prec_annotation() {
	port_free 18085 && port_free 18086 || return
	serve p-annot --net-host --annotation fabricks.io/listen=http=127.0.0.1:18085 \
		--env FABRICKS_LISTEN=http=127.0.0.1:18086 "$IMG" &&
		expect_listeners p-annot 127.0.0.1:18085 && get http://127.0.0.1:18085/ && finish p-annot
}

prec_env() {
	port_free 18086 || return
	serve p-env --net-host --env FABRICKS_LISTEN=http=127.0.0.1:18086 "$IMG" &&
		expect_listeners p-env 127.0.0.1:18086 && get http://127.0.0.1:18086/ && finish p-env
}

# Without --net-host ctr gives the task a new, empty netns: its runner binds there, the module
# serves (it says so and keeps running), and nothing appears on the host's port.
own_netns() {
	port_free 18089 || return
	serve n1 --env FABRICKS_LISTEN=http=127.0.0.1:18089 "$IMG" || return
	[[ -z $(listeners "$(task_pid n1)") ]] || why "the runner listens in the host's netns: $(listeners "$(task_pid n1)")" || return
	! curl -sS -m 5 -o /dev/null http://127.0.0.1:18089/ 2>/dev/null || why "127.0.0.1:18089 answered on the host" || return
	finish n1
}

# refused ID REGEX... -- RUN_ARGS...: `ctr run -d` fails at create, stderr matches every REGEX,
# and no task or shim is left (the container record ctr made is then removed).
refused() {
	local id=$1 res=() re
	shift
	while [[ $1 != -- ]]; do
		res+=("$1")
		shift
	done
	shift
	run_ctr run -d --net-host --runtime "$RT" "$@" "$id"
	[[ $RC != timeout ]] || return 1
	[[ $RC != 0 ]] || why "ctr run succeeded" || return
	for re in "${res[@]}"; do expect_err_re "$re" || return; done
	expect_no_task "$id" || return
	run_ctr containers rm "$id"
	expect_rc 0
}

err_malformed() {
	refused e-bad 'FABRICKS_LISTEN' 'notaport' 'not a number' -- --env FABRICKS_LISTEN=http=notaport "$IMG_NOPORTS"
}

err_bad_annotation() {
	refused e-badaddr 'fabricks\.io/listen' '"bad"' 'not an IP address' -- \
		--annotation fabricks.io/listen=http=bad:1 "$IMG_NOPORTS"
}

err_duplicate() {
	refused e-dup 'port 18083' 'unique' -- --env FABRICKS_LISTEN=a=18083,b=18083 "$IMG_NOPORTS"
}

# A foreign listener (python) holds 127.0.0.1:18084.
err_in_use_foreign() {
	local i rc
	port_free 18084 || return
	python3 -c 'import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 18084))
s.listen()
time.sleep(300)' </dev/null >/dev/null 2>&1 &
	OCCPID=$!
	for ((i = 0; i < 100; i++)); do
		[[ -n $(ss -Hltn 'sport = :18084') ]] && break
		sleep 0.1
	done
	refused e-inuse '127\.0\.0\.1:18084' 'in use' -- --env FABRICKS_LISTEN=http=127.0.0.1:18084 "$IMG_NOPORTS"
	rc=$?
	kill "$OCCPID" 2>/dev/null
	wait "$OCCPID" 2>/dev/null
	OCCPID=''
	return "$rc"
}

# A second go-http from the same image while h1 holds 8080.
err_in_use_twin() {
	[[ $(task_status h1) == RUNNING ]] || why "h1 is not running" || return
	refused e-twin '0\.0\.0\.0:8080' 'in use' -- "$IMG"
}

# A task that has ended keeps no port (kubelet keeps a dead container for `logs --previous`
# while it starts the next): go-hello, given 127.0.0.1:18096 by its listen spec, exits at
# once and is kept; a client of the port is refused (not left hanging), and a go-http on the
# same port serves while the first is still there.
exited_frees_port() {
	local mark
	mark=$(events_mark)
	run_ctr run -d --net-host --runtime "$RT" --env FABRICKS_LISTEN=http=127.0.0.1:18096 "$IMG_HELLO" x-first
	expect_rc 0 && wait_exit x-first "$mark" "$STOP_WAIT" || return
	KEEP="x-first"
	[[ $(task_status x-first) == STOPPED ]] || why "x-first is $(task_status x-first), want STOPPED (kept, not deleted)" || return
	CMD="curl http://127.0.0.1:18096/ (x-first has exited)"
	OUT=$(curl -sS -m 5 http://127.0.0.1:18096/ 2>&1)
	RC=$?
	((RC == 7)) || why "curl exit $RC, want 7 (connection refused): $OUT" || return
	serve x-second --net-host --env FABRICKS_LISTEN=http=127.0.0.1:18096 "$IMG_NOPORTS" || return
	get http://127.0.0.1:18096/ && h_root_body || return
	finish x-second || return
	KEEP=''
	run_ctr task rm x-first
	run_ctr containers rm x-first
	expect_rc 0 && expect_gone x-first
}

# Case 4. SIGTERM on the idle h1: the shim shuts its listener down, go-http returns from Serve
# and exits 0; the port is free again.
stop_term() {
	local mark t0
	[[ $(task_status h1) == RUNNING ]] || why "h1 is not running" || return
	mark=$(events_mark)
	t0=$(date +%s.%N)
	run_ctr task kill h1
	expect_rc 0 && wait_exit h1 "$mark" "$STOP_WAIT" || return
	note "stop after SIGTERM: $(elapsed "$t0" "$EXIT_AT") s (exit status $EXIT_STATUS)"
	((EXIT_STATUS == 0)) || why "exit status $EXIT_STATUS after SIGTERM, want 0 (graceful)" || return
	wait_status h1 STOPPED 10 || return
	[[ -z $(ss -Hltn 'sport = :8080') ]] || why "8080 still listened on after the stop" || return
	run_ctr task rm h1
	expect_rc 0 || return
	run_ctr containers rm h1
	KEEP=''
	expect_rc 0 && expect_gone h1
}

# SIGTERM while a request streams: the client reads 32 MiB at 16 MiB/s, more than the socket
# buffers hold, so go-http's handler is still writing when the shim shuts the listener down.
# The SDK gives in-flight requests 5 s (its ShutdownTimeout) to finish: the request completes,
# then the module exits 0; the printed stop time shows how long the shim let it run. A
# reactor's server drains the same way (up to its request timeout). stop_inflight MODE.
stop_inflight() {
	local mark cpid rc n=32 t0
	if [[ $1 == reactor ]]; then
		rserve h2 18091 || return
	else
		port_free 18091 || return
		serve h2 --net-host --env FABRICKS_LISTEN=http=127.0.0.1:18091 "$IMG" || return
	fi
	slow_download "http://127.0.0.1:18091/stream?mb=$n" 16M "$TMP/inflight" || return
	cpid=$SLOW
	mark=$(events_mark)
	t0=$(date +%s.%N)
	run_ctr task kill h2
	expect_rc 0 || return
	wait "$cpid"
	rc=$?
	OUT=$(<"$TMP/inflight.out")
	rm -f "$TMP/inflight"
	((rc == 0)) && [[ $OUT == "200 $((n * MIB))" ]] || why "the in-flight request ended with curl $rc, '$OUT' (want 200 $((n * MIB)))" || return
	wait_exit h2 "$mark" "$STOP_WAIT" || return
	note "$1: stop after SIGTERM with a ${n} MiB download at 16 MiB/s in flight: $(elapsed "$t0" "$EXIT_AT") s (exit status $EXIT_STATUS)"
	((EXIT_STATUS == 0)) || why "exit status $EXIT_STATUS, want 0" || return
	[[ $1 == reactor ]] || grep -qF 'go-http: stopped' "$LOG" || why "no 'go-http: stopped' in the task's log" || return
	wait_status h2 STOPPED 10 && run_ctr task rm h2 && run_ctr containers rm h2 && expect_gone h2
}

# kill9 ID MARK_TEXT RUN_ARGS...: `ctr run -d RUN_ARGS` (image, ID and command included);
# SIGKILL once the task's log shows MARK_TEXT: exit 137.
kill9() {
	local id=$1 text=$2 mark t0
	shift 2
	LOG=$TMP/$F-$id.log
	run_ctr run -d --log-uri "file://$LOG" --runtime "$RT" "$@"
	expect_rc 0 && wait_status "$id" RUNNING 30 && wait_file "$LOG" "$text" 60 || return
	mark=$(events_mark)
	t0=$(date +%s.%N)
	run_ctr task kill -s SIGKILL "$id"
	expect_rc 0 && wait_exit "$id" "$mark" "$STOP_WAIT" || return
	note "stop after SIGKILL ($id): $(elapsed "$t0" "$EXIT_AT") s (exit status $EXIT_STATUS)"
	((EXIT_STATUS == 137)) || why "exit status $EXIT_STATUS after SIGKILL, want 137" || return
	wait_status "$id" STOPPED 10 && run_ctr task rm "$id" && run_ctr containers rm "$id" && expect_gone "$id"
}

kill_spin() { kill9 k-spin spinning "$IMG_HELLO" k-spin /go-hello.wasm --spin; }

kill_http() {
	port_free 18092 || return
	kill9 k-http 'go-http: listening' --net-host --env FABRICKS_LISTEN=http=127.0.0.1:18092 "$IMG" k-http || return
	[[ -z $(ss -Hltn 'sport = :18092') ]] || why "18092 still listened on after SIGKILL"
}

# --- flavour cases: reactor mode under ctr ----------------------------------------------------

# rserve ID PORT ENV...: go-http:reactor on 127.0.0.1:PORT (host network), log in LOG.
rserve() {
	local id=$1 port=$2 env=() e
	shift 2
	for e in "$@"; do env+=(--env "$e"); done
	port_free "$port" || return
	LOG=$TMP/$F-$id.log
	run_ctr run -d --net-host --log-uri "file://$LOG" --runtime "$RT" --env "FABRICKS_LISTEN=http=127.0.0.1:$port" \
		"${env[@]}" "$IMG_REACTOR" "$id"
	expect_rc 0 && wait_status "$id" RUNNING 30 && wait_http "http://127.0.0.1:$port/healthz" 60 || return
	expect_listeners "$id" "127.0.0.1:$port"
}

r1_serves() {
	KEEP="$KEEP r1"
	rserve r1 18093 FABRICKS_INSTANCES=2
}

# /panic panics in the handler: the Go runtime aborts (a trap), the request gets 500, the
# trap and the panic reach the task's log, the instance is replaced and the next requests
# (more than there are instances) succeed.
r1_panic() {
	local i
	CMD="curl http://127.0.0.1:18093/panic"
	CODE=$(curl -sS -m 30 -o "$TMP/body" -w '%{http_code}' http://127.0.0.1:18093/panic 2>"$TMP/stderr")
	OUT=$(<"$TMP/body") ERR=$(<"$TMP/stderr")
	[[ $CODE == 500 ]] || why "GET /panic answered $CODE, want 500" || return
	wait_file "$LOG" 'GET /panic: /go-http.wasm trapped' 10 || return
	grep -qF 'go-http: /panic was requested' "$LOG" || why "the panic's message is not in the task's log" || return
	grep -qF 'replacing the instance' "$LOG" || why "the log does not say the instance is replaced" || return
	for ((i = 0; i < 10; i++)); do
		get http://127.0.0.1:18093/ && h_root_body || return
	done
}

# One instance, no queue, a 6 s deadline: a slow download holds the instance, so another
# request gets 503 with Retry-After; the download outlives its deadline and is cut short
# (not ended as if complete), its instance is replaced, and the next request succeeds.
r2_limits() {
	local cpid rc
	KEEP="$KEEP r2"
	rserve r2 18094 FABRICKS_INSTANCES=1 FABRICKS_QUEUE=0 FABRICKS_REQUEST_TIMEOUT=6 || return
	slow_download 'http://127.0.0.1:18094/stream?mb=64' 1M "$TMP/slow" || return
	cpid=$SLOW
	CMD="curl -D - http://127.0.0.1:18094/healthz (while the one instance is busy)"
	CODE=$(curl -sS -m 30 -D "$TMP/hdr" -o /dev/null -w '%{http_code}' http://127.0.0.1:18094/healthz 2>"$TMP/stderr")
	OUT=$(<"$TMP/hdr") ERR=$(<"$TMP/stderr")
	[[ $CODE == 503 ]] || why "answered $CODE while the only instance was busy, want 503" || return
	grep -qi '^retry-after: ' "$TMP/hdr" || why "the 503 has no Retry-After" || return
	wait "$cpid"
	rc=$?
	OUT=$(<"$TMP/slow.out")
	rm -f "$TMP/slow"
	((rc != 0)) || why "the download past its deadline ended as if complete: '$OUT'" || return
	wait_file "$LOG" 'the request timed out; replacing the instance' 10 || return
	get http://127.0.0.1:18094/healthz
}

# r2 again: SIGKILL ends a reactor task with 137.
r2_kill() {
	local mark
	mark=$(events_mark)
	run_ctr task kill -s SIGKILL r2
	expect_rc 0 && wait_exit r2 "$mark" "$STOP_WAIT" || return
	((EXIT_STATUS == 137)) || why "exit status $EXIT_STATUS after SIGKILL, want 137" || return
	wait_status r2 STOPPED 10 && run_ctr task rm r2 && run_ctr containers rm r2 && expect_gone r2 || return
	[[ -z $(ss -Hltn 'sport = :18094') ]] || why "18094 still listened on after SIGKILL"
}

err_no_abi() {
	refused e-abi 'fabricks_http_abi_version' 'fabricks\.Handle' -- --env FABRICKS_LISTEN=http=127.0.0.1:18095 "$IMG_HELLO_REACTOR"
}

reactor_cases() {
	local keep=$KEEP
	if check "reactor: ctr run -d go-http:reactor (2 instances) serves on 127.0.0.1:18093" r1_serves; then
		route_checks reactor http://127.0.0.1:18093
		check "reactor: GET /panic answers 500, the trap is logged, the next requests succeed" r1_panic
		check "reactor: SIGTERM exits 0 (graceful), removal leaves nothing" finish r1
	else
		route_skips reactor "go-http:reactor (r1) is not serving"
	fi
	if check "reactor: 1 instance, queue 0: 503 + Retry-After when busy; past the deadline cut and replaced" r2_limits; then
		check "reactor: SIGKILL ends the task with 137, its port is released" r2_kill
	fi
	KEEP=$keep
	check "reactor without the Fabricks ABI (go-hello --mode reactor): ctr run fails saying what to do, no task" err_no_abi
}

containerd_down() {
	KEEP=''
	stop_events
	harness_down
}

flavour_cases() {
	use_flavour
	check "containerd up" containerd_up || return
	check "import go-http (image port 8080)" import_image "$TMP/go-http.tar" "$IMG" wasi/wasm
	check "import go-http without ports" import_image "$TMP/go-http-noports.tar" "$IMG_NOPORTS" wasi/wasm
	check "import go-hello" import_image "$TMP/go-hello.tar" "$IMG_HELLO" wasi/wasm
	check "import go-http:reactor" import_image "$TMP/go-http-reactor.tar" "$IMG_REACTOR" wasi/wasm
	check "import go-hello:reactor" import_image "$TMP/go-hello-reactor.tar" "$IMG_HELLO_REACTOR" wasi/wasm

	# 1: the image's port, --net-host, real traffic from the host.
	local h1=0
	if check "ctr run -d --net-host go-http: its runner listens on 0.0.0.0:8080 (from the image)" h1_serves; then
		route_checks command http://127.0.0.1:8080
		h1=1
	else
		route_skips command "go-http (h1) is not serving"
	fi
	reactor_cases

	# 2: where the spec comes from.
	check "annotation fabricks.io/listen on an image without ports: serves on it" src_annotation
	check "env FABRICKS_LISTEN on an image without ports: serves on it" src_env
	check "no spec at all: the module exits 1 saying FABRICKS_LISTEN_FDS is not set" src_none
	check "precedence: annotation beats env and image" prec_annotation
	check "precedence: env beats image" prec_env
	check "without --net-host: serves in its own netns, nothing on the host's port" own_netns

	# 3: what cannot be bound fails the create, and leaves nothing.
	check "malformed spec (env http=notaport): ctr run fails naming it, no task or shim" err_malformed
	check "malformed annotation (http=bad:1): ctr run fails naming it, no task or shim" err_bad_annotation
	check "duplicate port (a=18083,b=18083): ctr run fails naming it, no task or shim" err_duplicate
	check "port in use by another program: ctr run fails naming it, no task or shim" err_in_use_foreign
	if ((h1)); then
		check "port in use by a second go-http: ctr run fails naming it, no task or shim" err_in_use_twin
	else
		skip "port in use by a second go-http" "go-http (h1) is not serving"
	fi

	# 4: stops.
	if ((h1)); then
		check "SIGTERM: go-http stops gracefully (exit 0), its port is released" stop_term
	else
		skip "SIGTERM on go-http (h1)" "go-http (h1) is not serving"
	fi
	KEEP=''
	check "SIGTERM: a request in flight completes, then exit 0" stop_inflight command
	check "reactor: SIGTERM: a request in flight completes, then exit 0" stop_inflight reactor
	check "SIGKILL: a spinning go-hello ends with 137" kill_spin
	check "SIGKILL: go-http ends with 137, its port is released" kill_http
	check "an exited task keeps no port: its clients are refused, a new go-http serves on it" exited_frees_port
	check "down" containerd_down
	check "leftovers after down: no shim, mount or state" nothing_left
	echo "# e2e-http: [$F] containerd log: $W/containerd.log"
}

# --- main ----------------------------------------------------------------------------------

set_flavours "$@"
started=$SECONDS

prepared=1
check "tools present (curl, jq, python3, ss)" tools_present || prepared=0
check "install prerequisites" install_prerequisites || prepared=0
if building; then check "cargo build shim and CLI" build_binaries || prepared=0; fi
check "copy examples and SDK" copy_sources || prepared=0
check "fabricks build go-http: ExposedPorts 8080/tcp, label http=8080" build_http || prepared=0
check "fabricks build go-http --listen '': no ports" build_noports || prepared=0
check "fabricks build go-hello" build_hello || prepared=0
check "fabricks build --mode reactor go-http: label fabricks.io/mode=reactor" build_reactor || prepared=0
check "fabricks build --mode reactor go-hello (no Fabricks ABI)" build_hello_reactor || prepared=0
((prepared)) || suite_abort "preparation failed, no containerd started"
check "fabricks run go-http --listen 127.0.0.1:18090: serves / and /json, SIGTERM exits 0" fabricks_run command
check "fabricks run --mode reactor go-http: its pool serves / and /json, SIGTERM exits 0" fabricks_run reactor

for F in "${flavours[@]}"; do
	t=$SECONDS
	flavour_cases
	echo "# e2e-http: [$F] $((SECONDS - t)) s"
	F=''
done
echo "# e2e-http: $((SECONDS - started)) s"
suite_end
