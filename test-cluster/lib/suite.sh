# shellcheck shell=bash
# The one library of the shell suites (e2e*.sh, chart-check.sh) and the benchmarks (bench/):
# result lines and the closing count, running ctr and other commands with their output
# captured, the expectations cases are built from, waiting for tasks, files and URLs, what a
# container leaves behind, the harness's containerd (up, up --cri, down, leftovers), the Go CRI
# tests as cases (go_cases) and the EXIT trap. Sourced; a suite then calls suite_begin.
#
# Set by the suite before sourcing:
#   HERE                  the suite's directory (test-cluster)
#   FABRICKS_HARNESS_DIR  (exported) work dir of the containerds
# and before its first case, if it wants:
#   NOFLAVOUR             label of the cases run outside any flavour ('' = none: `ok - name`)
#   RETRY_MISSING=1       a case that failed only because expected output was missing (see
#                         expect_out) runs once more
#   KEEP                  containers that outlive their case (not removed between cases)
#   suite_stop            a function the EXIT trap calls first (to end background processes)
# Knobs every suite takes:
#   FABRICKS_E2E_BUILD=0      skip `cargo build --release` (test the binaries already built)
#   FABRICKS_E2E_TIMEOUT      seconds any single ctr call may take before it counts as hung (120)
#   FABRICKS_E2E_CRI_WAIT     seconds `up --cri` waits for another harness's CRI network (600)
#   FABRICKS_SHIM, FABRICKS_CLI   binaries under test (default target/release/...)
# Every case prints `ok - [flavour] name`, `not ok - [flavour] name: why` (details follow on `#`
# lines) or `skip - [flavour] name: why`; the last line is `N passed, N failed[, N skipped]`.

REPO=$(dirname "$HERE")
H=$HERE/harness.sh
export FABRICKS_SHIM=${FABRICKS_SHIM:-$REPO/target/release/containerd-shim-fabricks-v1}
FABRICKS=${FABRICKS_CLI:-$REPO/target/release/fabricks}
TMO=${TMO:-${FABRICKS_E2E_TIMEOUT:-120}}
CRI_WAIT=${FABRICKS_E2E_CRI_WAIT:-600}
# shellcheck disable=SC2034 # used by the suites
STOP_WAIT=30 # seconds a stopped task gets to stop: a bound for hangs, not a benchmark
# shellcheck disable=SC2034
readonly RT=io.containerd.fabricks.v1

SUITE='' TMP=''
passed=0 failed=0 skipped=0 summarized=0
flavours=()
F=''         # the flavour whose containerd is up ('' when none is)
NOFLAVOUR='' # see above
RETRY_MISSING=0
KEEP=''
OUT='' ERR='' RC=0 CMD='' WHY='' MISSING=0 NOTE=''

# suite_begin NAME TMPNAME: NAME prefixes the suite's own `#` lines; makes the scratch dir TMP
# (/tmp/TMPNAME.XXXXXX) and sets the traps that take the containerd down and remove TMP.
suite_begin() {
	SUITE=$1
	TMP=$(mktemp -d "/tmp/$2.XXXXXX")
	trap suite_cleanup EXIT
	trap 'exit 130' INT TERM
}

suite_cleanup() {
	local rc=$?
	if declare -F suite_stop >/dev/null; then suite_stop; fi
	if [[ -n $F ]]; then "$H" down "$F" >/dev/null 2>&1 || true; fi
	if ((!summarized)); then
		echo "# $SUITE: stopped early (exit $rc)"
		summary
	fi
	# Never recurse into a mount (a bind mount left in a --rootfs dir would expose its source).
	if grep -qF " $TMP/" /proc/self/mountinfo; then
		echo "# $SUITE: mounts remain under $TMP; not removing it" >&2
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}

# set_flavours [1.6|2]...: the flavours to test (default both) into `flavours`; else usage, exit 2.
set_flavours() {
	local f
	flavours=("$@")
	((${#flavours[@]})) || flavours=(1.6 2)
	for f in "${flavours[@]}"; do
		[[ $f == 1.6 || $f == 2 ]] || {
			echo "usage: $0 [1.6|2]..." >&2
			summarized=1
			exit 2
		}
	done
}

# --- reporting ---------------------------------------------------------------------------

label() {
	local l=${F:-$NOFLAVOUR}
	if [[ -n $l ]]; then printf '[%s] %s' "$l" "$1"; else printf '%s' "$1"; fi
}

pass() {
	echo "ok - $(label "$1")"
	passed=$((passed + 1))
}

# Prints the failure with the last command's output as `#` lines.
fail() {
	echo "not ok - $(label "$1"): ${2//$'\n'/\\n}"
	details
	failed=$((failed + 1))
}

# The last command and (the ends of) its output, as `#` lines.
details() {
	if [[ -n $CMD ]]; then
		echo "#   \$ $CMD  (exit $RC)"
		{
			[[ -z $OUT ]] || printf '%s\n' "$OUT"
			[[ -z $ERR ]] || printf '%s\n' "$ERR"
		} | awk '{ l[NR] = $0 } END { for (i = 1; i <= NR; i++) if (NR <= 30 || i <= 12 || i > NR - 12) print l[i]; else if (i == 13) print "[...]" }' |
			cut -c1-400 | sed 's/^/#   | /'
	fi
}

skip() {
	echo "skip - $(label "$1"): $2"
	skipped=$((skipped + 1))
}

# The closing line.
summary() {
	local s="$passed passed, $failed failed"
	((skipped == 0)) || s+=", $skipped skipped"
	echo "$s"
	summarized=1
}

# suite_end: the closing line; the suite's status (1 if any case failed).
suite_end() {
	summary
	((failed == 0))
}

# suite_abort WHY: preparation failed; the closing line, exit 1.
suite_abort() {
	echo "# $SUITE: $*"
	summary
	exit 1
}

# why MESSAGE: records why the running case failed; always returns 1.
why() {
	WHY=$*
	return 1
}

# note TEXT: a figure the case reports (printed as a `#` line after its result).
note() { NOTE+="#   $(label "$*")"$'\n'; }

# check NAME FUNC [ARGS...]: runs one case; FUNC returns non-zero (after `why`) to fail it.
# On failure, containerd's warnings and errors logged during the case follow (shim logs too).
# Containers a case leaves behind (its own failure; but those in $KEEP) are removed so the next
# case starts clean. With RETRY_MISSING=1 a case that failed only because expected task output
# was missing runs once more: ctr can drop a task's last output under CPU load (its exit
# handling closes the FIFOs it has not drained yet; runc tasks lose output that way too).
check() {
	local name=$1 ok=0 mark=0
	shift
	NOTE=''
	if [[ -n $F ]]; then mark=$(wc -l 2>/dev/null <"$W/containerd.log" || echo 0); fi
	attempt "$@" && ok=1
	if ((!ok && MISSING && RETRY_MISSING)); then
		echo "# retrying $(label "$name"): ${WHY//$'\n'/\\n}"
		details
		clean_slate
		attempt "$@" && ok=1
	fi
	if ((ok)); then pass "$name"; else
		fail "$name" "${WHY:-failed}"
		if [[ -n $F && -f $W/containerd.log ]]; then
			tail -n "+$((mark + 1))" "$W/containerd.log" | grep -E 'level=(warning|error|fatal)' | tail -n 15 |
				cut -c1-400 | sed 's/^/#   log: /'
		fi
	fi
	printf '%s' "$NOTE"
	clean_slate
	((ok))
}

attempt() {
	WHY='' CMD='' OUT='' ERR='' RC=0 MISSING=0
	"$@"
}

clean_slate() {
	if [[ -n $F && -S ${SOCK:-} ]]; then scrap_all; fi
}

# --- commands and ctr ----------------------------------------------------------------------

# Points ctr at flavour $F's containerd: CTR, CONTAINERD_ADDRESS (SOCK), NS, W.
use_flavour() {
	unset CONTAINERD_NAMESPACE # the harness default (fabricks-<flavour>), never the caller's
	eval "$("$H" env "$F")"
	export CONTAINERD_ADDRESS CONTAINERD_NAMESPACE CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=1
	SOCK=$CONTAINERD_ADDRESS
	NS=$CONTAINERD_NAMESPACE
	W=$FABRICKS_HARNESS_WORK
}

# shim_socket ID: where a shim for grouping ID (a task id, or a pod's sandbox id) listens; the
# shim crate names it after containerd's address, the namespace and ID, in one global directory.
shim_socket() {
	printf '/run/containerd/s/%s\n' "$(printf '%s' "$SOCK/$NS/$1" | sha256sum | cut -d' ' -f1)"
}

# ctr itself, not through `harness.sh ctr`: a timeout must hit ctr, not a shell around it.
c() { timeout -k 10 "$TMO" "$CTR" "$@"; }

# ARGS... as one line, the words with spaces quoted.
quoted() {
	local a s=''
	for a; do if [[ $a == *[[:space:]]* ]]; then s+=" '$a'"; else s+=" $a"; fi; done
	printf '%s' "${s# }"
}

# run_cmd ARGS...: runs a command with stdin from $IN (default /dev/null); sets OUT, ERR, RC
# and CMD.
run_cmd() {
	CMD=$(quoted "$@")
	OUT=$("$@" <"${IN:-/dev/null}" 2>"$TMP/stderr")
	RC=$?
	ERR=$(<"$TMP/stderr")
}

# run_ctr ARGS...: run_cmd of ctr ARGS... under the timeout.
run_ctr() {
	local t0=$SECONDS
	run_cmd c "$@"
	CMD="ctr ${CMD#c }"
	# timeout's own statuses, but only if it had time to fire: a task's OOM end is also 137.
	if ((RC == 124 || RC == 137)) && ((SECONDS - t0 >= TMO)); then
		why "timed out: \`$CMD\` still running after ${TMO}s"
		RC=timeout
	fi
}

expect_rc() {
	[[ $RC == "$1" ]] || why "${WHY:-exit status $RC, want $1}"
}

# expect_out TEXT [WHAT]: the last command's stdout+stderr contains TEXT.
expect_out() {
	[[ "$OUT"$'\n'"$ERR" == *"$1"* ]] || {
		MISSING=1
		why "output lacks \"$1\"${2:+ ($2)}"
	}
}

# expect_out_re [-i] REGEX: stdout+stderr match the extended regex (-i: ignoring case).
expect_out_re() {
	local i=()
	if [[ $1 == -i ]]; then i=(-i) && shift; fi
	grep -Eq "${i[@]}" -- "$1" <<<"$OUT"$'\n'"$ERR" || {
		MISSING=1
		why "output does not match /$1/"
	}
}

# expect_fail: the last command failed (and did not hang).
expect_fail() {
	[[ $RC != timeout ]] || return 1
	[[ $RC != 0 ]] || why "exit status 0, want a failure"
}

# expect_err_re REGEX: stderr matches the extended regex.
expect_err_re() {
	grep -Eq -- "$1" <<<"$ERR" || {
		MISSING=1
		why "stderr does not match /$1/"
	}
}

task_status() { c task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'; }
task_pid() { c task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $2 }'; }

# wait_status ID STATUS SECONDS
wait_status() {
	local i st=''
	for ((i = 0; i < $3 * 5; i++)); do
		st=$(task_status "$1")
		[[ $st == "$2" ]] && return 0
		sleep 0.2
	done
	why "task $1 is ${st:-gone}, not $2, ${3}s later"
}

# wait_file FILE TEXT SECONDS: FILE (a task's log) shows TEXT.
wait_file() {
	local i
	for ((i = 0; i < $3 * 5; i++)); do
		grep -qF -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.2
	done
	why "\"$2\" never appeared in $1"
}

# wait_http URL [SECONDS [POLL]]: URL answers 200 within SECONDS (TMO), asked every POLL
# seconds (0.2; 0: at once again, for a start-up figure).
wait_http() {
	local end=$((SECONDS + ${2:-$TMO})) poll=${3:-0.2}
	until curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null; do
		((SECONDS < end)) || why "$1 did not answer 200 within ${2:-$TMO}s" || return
		[[ $poll == 0 ]] || sleep "$poll"
	done
}

# Pids of our shims serving container $1.
shim_pids() {
	local p cmd
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		cmd=" $cmd"
		if [[ ${cmd%% -*} == */containerd-shim-fabricks-v1 && $cmd == *" -address $SOCK "* && $cmd == *" -id $1 "* ]]; then
			echo "${p#/proc/}"
		fi
	done
}

# fcri ARGS...: the CRI client (harness.sh crictl: the one wrapper of test-cluster/cri's fcri)
# on flavour $F's containerd, each call bounded by CRI_TMO (TMO seconds).
fcri() { "$H" crictl "$F" --timeout "${CRI_TMO:-${TMO}s}" "$@"; }

# cri_start POD.json CTR.json: RunPodSandbox (handler fabricks), CreateContainer and
# StartContainer; sets POD and CID. For flows still in shell: the CRI cases of this repository
# are Go tests (go_cases).
cri_start() {
	run_cmd fcri runp --runtime fabricks "$1"
	expect_rc 0 || return
	POD=$OUT
	run_cmd fcri create "$POD" "$2" "$1"
	expect_rc 0 || return
	CID=$OUT
	run_cmd fcri start "$CID"
	expect_rc 0
}

# listed LINE CMD...: CMD's output has the line LINE. Not `CMD | grep -q`: grep stops reading at
# the match, CMD may then die of SIGPIPE, and pipefail turns that into "not listed".
listed() {
	local line=$1 out
	shift
	out=$("$@") || return
	grep -qxF -- "$line" <<<"$out"
}

# remains ID [task]: what is left of container ID: its task, container (unless `task`), shim,
# mounts, runc state (runc's, or our shim's for native entrypoints) and processes.
remains() {
	local id=$1 d
	if listed "$id" c task ls -q 2>/dev/null; then echo "task $id"; fi
	if [[ ${2:-} != task ]] && listed "$id" c containers ls -q 2>/dev/null; then echo "container $id"; fi
	shim_pids "$id" | sed 's/^/shim pid /'
	awk -v p="/$NS/$id/" 'index($5, p) { print "mount " $5 }' /proc/self/mountinfo
	for d in /run/containerd/runc /run/containerd/fabricks/runc; do
		if [[ -e $d/$NS/$id ]]; then echo "runc state $d/$NS/$id"; fi
	done
	cat /sys/fs/cgroup/{,*/}"$NS/$id"/cgroup.procs 2>/dev/null | sort -u | sed 's/^/process /'
	for d in /sys/fs/cgroup/{,*/}"$NS/$id"; do if [[ -d $d ]]; then echo "cgroup $d"; fi; done
}

# expect_gone ID [task]: nothing of container ID is left (with `task`: but its container
# record). Shims exit asynchronously: a bounded wait.
expect_gone() {
	local i left
	for ((i = 0; i < 50; i++)); do
		left=$(remains "$@")
		[[ -z $left ]] && return 0
		sleep 0.2
	done
	why "left behind: ${left//$'\n'/; }"
}

# expect_no_task ID: no task, shim, mount, runc state or process of ID.
expect_no_task() { expect_gone "$1" task; }

# Removes every container of our namespace but those in $KEEP, whatever state it is in.
scrap_all() {
	local id
	for id in $(c containers ls -q 2>/dev/null); do
		[[ " $KEEP " != *" $id "* ]] || continue
		if [[ $(task_status "$id") == RUNNING ]]; then
			c task kill -s SIGKILL "$id" >/dev/null 2>&1
			wait_status "$id" STOPPED 10 || true
		fi
		c task rm -f "$id" >/dev/null 2>&1
		c containers rm "$id" >/dev/null 2>&1
	done
}

# finish ID: SIGTERM, the task exits 0 (graceful), removal leaves nothing.
finish() {
	run_ctr task kill "$1"
	expect_rc 0 && wait_status "$1" STOPPED "$STOP_WAIT" || return
	run_ctr task rm "$1"
	expect_rc 0 || return
	[[ $ERR != *"exit code"* ]] || why "did not exit 0 after SIGTERM: $ERR" || return
	run_ctr containers rm "$1"
	expect_rc 0 && expect_gone "$1"
}

# import_image ARCHIVE REF [PLATFORM [NAMESPACE]]
import_image() {
	local opts=() ns=${4:-$NS}
	# 2.x's transfer service unpacks for linux/amd64 only: --local takes --platform.
	if [[ $F == 2 ]]; then opts+=(--local); fi
	if [[ -n ${3:-} ]]; then opts+=(--platform "$3"); fi
	run_ctr -n "$ns" images import "${opts[@]}" "$1"
	expect_rc 0 || return
	listed "$2" c -n "$ns" images ls -q || why "$2 not listed in $ns after import"
}

# --- preparation ---------------------------------------------------------------------------

install_prerequisites() {
	local what=all
	if ((${#flavours[@]} == 1)); then what=${flavours[0]}; fi
	run_cmd "$H" install "$what"
	CMD="harness.sh install $what"
	expect_rc 0
}

# building: the suite builds the binaries it tests (unless FABRICKS_E2E_BUILD=0).
building() { [[ ${FABRICKS_E2E_BUILD:-1} != 0 ]]; }

build_binaries() {
	run_cmd cargo build --release --manifest-path "$REPO/Cargo.toml" -p containerd-shim-fabricks -p fabricks
	expect_rc 0 || return
	[[ -x $FABRICKS_SHIM && -x $FABRICKS ]] || why "no $FABRICKS_SHIM or $FABRICKS"
}

# copy_sources: a private copy of the examples and the Go SDK (their go.mod replaces it with
# ../../sdk/go) in $TMP/src/{examples,sdk}: `fabricks build` writes into the project's
# .fabricks/, which others may be using.
copy_sources() {
	mkdir -p "$TMP/src/examples" "$TMP/src/sdk" || return
	cp -r "$REPO/examples/go-http" "$REPO/examples/go-hello" "$TMP/src/examples/" &&
		cp -r "$REPO/sdk/go" "$TMP/src/sdk/" || why "copying the sources failed" || return
	rm -rf "$TMP"/src/examples/*/.fabricks
}

# build_image DIR REF OUT.tar [ARGS...]: `fabricks build DIR -o OUT.tar -t REF ARGS...` makes
# an OCI archive.
build_image() {
	local dir=$1 ref=$2 out=$3
	shift 3
	rm -f "$out"
	run_cmd "$FABRICKS" build "$dir" -o "$out" -t "$ref" "$@"
	expect_rc 0 || return
	[[ -s $out ]] || why "no archive $out" || return
	tar -xOf "$out" index.json >/dev/null 2>&1 || why "$out is not an OCI archive (no index.json)"
}

# --- the harness's containerd ----------------------------------------------------------------

# A fresh containerd of flavour $F: remains of an earlier run (and its cache) would change
# what is tested.
harness_up() {
	"$H" down "$F" >/dev/null 2>&1
	# A node's containerd has no RUST_BACKTRACE: keep this shell's out of the shims.
	run_cmd env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$H" up "$F"
	CMD="harness.sh up $F"
	expect_rc 0
}

# harness_up_cri [CONFIG]: a fresh containerd of flavour $F with its CRI plugin and CNI (on
# CONFIG as it is, if given). While another harness holds this flavour's CNI bridge or subnet
# (one CRI harness per flavour on a machine), waits for it, up to CRI_WAIT seconds.
harness_up_cri() {
	local waited=0 cfg=()
	if [[ -n ${1:-} ]]; then cfg=(FABRICKS_HARNESS_CONFIG="$1"); fi
	"$H" down "$F" >/dev/null 2>&1
	while :; do
		run_cmd env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "${cfg[@]}" "$H" up "$F" --cri
		CMD="${1:+FABRICKS_HARNESS_CONFIG=$1 }harness.sh up $F --cri"
		((RC == 0)) && return
		[[ $ERR == *"one CRI harness per flavour"* || $ERR == *"is already in use on"* ]] && ((waited < CRI_WAIT)) ||
			why "harness.sh up --cri failed" || return
		if ((waited == 0)); then echo "#   $(label "another harness holds the CRI network: waiting up to ${CRI_WAIT}s (${ERR##*harness: })")"; fi
		sleep 10
		waited=$((waited + 10))
	done
}

harness_down() {
	run_cmd "$H" down "$F"
	CMD="harness.sh down $F"
	expect_rc 0
}

# After down: nothing of ours is left (harness.sh leftovers, runc state, shims on our socket,
# mounts under TMP).
nothing_left() {
	local extra p
	run_cmd "$H" leftovers "$F"
	CMD="harness.sh leftovers $F"
	[[ $RC == 0 && -z $OUT ]] || why "harness.sh leftovers reports: ${OUT//$'\n'/; }" || return
	extra=$(
		find "/run/containerd/fabricks/runc/$NS" -mindepth 1 -maxdepth 1 -printf 'runc state of our shim: %p\n' 2>/dev/null
		for p in $(pgrep -f "containerd-shim-fabricks-v1 .*-address $W/containerd.sock" 2>/dev/null); do echo "shim pid $p"; done
		awk -v p="$TMP/" 'index($5, p) == 1 { print "mount " $5 }' /proc/self/mountinfo
	)
	[[ -z $extra ]] || why "left behind: ${extra//$'\n'/; }"
}

# --- the Go CRI tests ------------------------------------------------------------------------

# go_cases [VAR=VALUE...] -- [GO TEST ARGS...]: Go tests as cases of this suite: `go test -json`
# in test-cluster/cri (default package ./e2e/: the CRI tests, which take the harness's
# containerd from the environment `use_flavour` exported) with VAR=VALUE set. Every test
# without subtests is a case (`ok`, `not ok` or `skip` with its last log line as the reason);
# a parent counts only when it fails by itself. Go's output goes before, as `#` lines. A run
# with no test, or a failed `go test` without a failed test (a build error), is a failed case.
go_cases() {
	local vars=() before=$((passed + failed + skipped)) failures=$failed kind name rest rc
	local -A children child_failed last
	while (($#)) && [[ $1 != -- ]]; do vars+=("$1") && shift; done
	shift
	(($#)) || set -- ./e2e/
	CMD='' OUT='' ERR='' RC=0
	command -v jq >/dev/null || { fail "go test $*" "no jq (harness.sh install installs it)" && return 1; }
	# Fields split by US (0x1f): tabs are whitespace to `read` and empty fields would merge.
	while IFS=$'\x1f' read -r kind name rest; do
		if [[ $kind == O ]]; then
			[[ $rest =~ ^(===\ (RUN|PAUSE|CONT|NAME)|\ *---\ (PASS|FAIL|SKIP):|PASS$|ok\ ) ]] || echo "#   $rest"
			if [[ -n $name && $rest =~ ^\ +[A-Za-z0-9_]+\.go:[0-9]+:\ (.*) ]]; then last[$name]=${BASH_REMATCH[1]}; fi
			continue
		fi
		if [[ -z ${children[$name]:-} ]]; then
			case $rest in
			pass) pass "$name" ;;
			skip) skip "$name" "${last[$name]:-skipped}" ;;
			*) fail "$name" "${last[$name]:-failed}" ;;
			esac
		elif [[ $rest == fail && -z ${child_failed[$name]:-} ]]; then
			fail "$name" "${last[$name]:-failed}"
		fi
		while [[ $name == */* ]]; do
			name=${name%/*}
			children[$name]=1
			if [[ $rest == fail ]]; then child_failed[$name]=1; fi
		done
	done < <(
		{
			(cd "$HERE/cri" && env "${vars[@]}" go test -json -count=1 -timeout 30m "$@" 2>&1)
			echo $? >"$TMP/go.rc"
		} | jq -R --unbuffered -r '(fromjson? // {Action: "output", Output: .}) as $e
			| if $e.Action == "output" then "O\u001f\($e.Test // "")\u001f\($e.Output | rtrimstr("\n"))"
			  elif $e.Test != null and ($e.Action | IN("pass", "fail", "skip")) then "R\u001f\($e.Test)\u001f\($e.Action)"
			  else empty end'
	)
	rc=$(cat "$TMP/go.rc" 2>/dev/null || echo '?')
	CMD="go test $*" RC=$rc
	if ((passed + failed + skipped == before)); then
		fail "go test $*" "no test ran (exit $rc)"
	elif [[ $rc != 0 ]] && ((failed == failures)); then
		fail "go test $*" "exit $rc without a failed test (see its output above)"
	fi
	((failed == failures))
}
