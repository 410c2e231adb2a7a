#!/usr/bin/env bash
# Soak: N create/start/kill/delete cycles of go-hello on Fabricks against the local harness,
# then the same counts as before: processes, mounts, sockets, cgroups, state dirs, cache
# files. Every count must be equal; the run ends with `N passed, N failed` (CI runs 50 cycles).
#
# usage: bench/soak.sh [--cycles N] [--flavour 1.6|2]     (defaults: 1000, 2; needs root)
# Knobs: FABRICKS_HARNESS_DIR (default /tmp/fabricks-soak; the script takes down whatever
# harness runs there), FABRICKS_E2E_BUILD=0 (test the binaries already built).
set -uo pipefail

CYCLES=1000 FLAVOUR=2
while (($#)); do
	case $1 in
	--cycles) CYCLES=$2 && shift ;;
	--flavour) FLAVOUR=$2 && shift ;;
	*) echo "usage: $0 [--cycles N] [--flavour 1.6|2]" >&2 && exit 2 ;;
	esac
	shift
done
[[ $CYCLES =~ ^[0-9]+$ && ($FLAVOUR == 1.6 || $FLAVOUR == 2) ]] || { echo "usage: $0 [--cycles N] [--flavour 1.6|2]" >&2 && exit 2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../test-cluster" && pwd)
export FABRICKS_HARNESS_DIR=${FABRICKS_HARNESS_DIR:-/tmp/fabricks-soak}
# shellcheck source-path=SCRIPTDIR source=../test-cluster/lib/suite.sh
. "$HERE/lib/suite.sh"
readonly IMG=localhost/fabricks-soak/go-hello:tar
suite_begin soak fabricks-soak

# --- the counts ------------------------------------------------------------------------------

shim_procs() { pgrep -f "containerd-shim-fabricks-v1 .*-address $SOCK" | wc -l; }
# Processes in our containers' cgroups (a native task or anything a shim forked).
container_procs() { cat /sys/fs/cgroup/{,*/}"$NS"/*/cgroup.procs 2>/dev/null | sort -u | grep -c .; }
our_mounts() { awk -v w="$W/" -v r="/$NS/" 'index($5, w) == 1 || (index($5, "/run/containerd/") == 1 && index($5, r)) { n++ } END { print n + 0 }' /proc/self/mountinfo; }
# Shim sockets: those our shims listen on, plus socket files left by the soak's shims (the
# shim crate names them /run/containerd/s/<sha256 of containerd's address/ns/id>; counting only
# ours keeps other harnesses on this machine out of the figure).
sockets() {
	local listening=0 stale=0 p h
	for p in $(pgrep -f "containerd-shim-fabricks-v1 .*-address $SOCK"); do
		listening=$((listening + $(ss -xlp 2>/dev/null | grep -c "pid=$p,")))
	done
	while read -r h; do
		if [[ -S $h ]]; then stale=$((stale + 1)); fi
	done <"$TMP/socket-names"
	echo $((listening + stale))
}
socket_names() {
	local i
	for ((i = 0; i <= CYCLES; i++)); do
		shim_socket "soak-$i"
	done >"$TMP/socket-names"
}
cgroups() { find /sys/fs/cgroup/ -mindepth 2 -maxdepth 3 -type d -path "*/$NS/*" 2>/dev/null | wc -l; }
state_dirs() {
	find "$W/state/io.containerd.runtime.v2.task/$NS" /run/containerd/io.containerd.runtime.v2.task/"$NS" \
		/run/containerd/fabricks/runc/"$NS" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}
cache_files() { find "$W/cache" -type f 2>/dev/null | wc -l; }

COUNTS=(shim_procs container_procs our_mounts sockets cgroups state_dirs cache_files)
snapshot() {
	local f
	for f in "${COUNTS[@]}"; do printf '%s=%s ' "$f" "$($f)"; done
}

# --- the cycle -------------------------------------------------------------------------------

# One cycle: create, start (a module that sleeps), SIGKILL, delete (task and container).
cycle() {
	local id=soak-$1
	c run -d --runtime "$RT" "$IMG" "$id" /go-hello.wasm --sleep 300s >/dev/null 2>"$TMP/err" || why "run $id: $(<"$TMP/err")" || return
	c task kill -s SIGKILL "$id" >/dev/null 2>"$TMP/err" || why "kill $id: $(<"$TMP/err")" || return
	wait_status "$id" STOPPED "$STOP_WAIT" || return
	c task rm "$id" >/dev/null 2>"$TMP/err" || why "task rm $id: $(<"$TMP/err")" || return
	c containers rm "$id" >/dev/null 2>"$TMP/err" || why "containers rm $id: $(<"$TMP/err")"
}

soak() {
	local i t0=$SECONDS
	for ((i = 1; i <= CYCLES; i++)); do
		cycle "$i" || return
	done
	note "$CYCLES cycles in $((SECONDS - t0)) s"
}

# Shims exit and containerd removes their sockets and state after the delete returns.
settle() {
	local i
	for ((i = 0; i < 50; i++)); do
		[[ $(shim_procs) == 0 ]] && break
		sleep 0.2
	done
	# The warm-up's first start ran baseline code: its optimized entry is being written.
	for ((i = 0; i < 300; i++)); do
		pgrep -f "containerd-shim-fabricks-v1 compile --entry $W/cache/" >/dev/null || break
		sleep 0.2
	done
}

equal() {
	[[ $BEFORE == "$AFTER" ]] || why "counts differ: before $BEFORE, after $AFTER"
}

F=$FLAVOUR
prepared=1
if building; then check "cargo build shim and CLI" build_binaries || prepared=0; fi
check "copy examples and SDK" copy_sources || prepared=0
check "fabricks build go-hello" build_image "$TMP/src/examples/go-hello" "$IMG" "$TMP/go-hello.tar" --layer tar || prepared=0
((prepared)) || suite_abort "preparation failed"
use_flavour
socket_names
check "containerd up" harness_up || suite_abort "no containerd"
check "import go-hello" import_image "$TMP/go-hello.tar" "$IMG" wasi/wasm || suite_abort "no image"
# One warm-up cycle first: its compiled module and origins record are meant to stay.
check "warm-up cycle (compiles the module)" cycle 0
settle
BEFORE=$(snapshot)
echo "# before: $BEFORE"
check "$CYCLES create/start/kill/delete cycles" soak
settle
AFTER=$(snapshot)
echo "# after:  $AFTER"
printf '# %-16s %8s %8s\n' what before after
for f in "${COUNTS[@]}"; do
	b=${BEFORE#*"$f="} a=${AFTER#*"$f="}
	printf '# %-16s %8s %8s\n' "$f" "${b%% *}" "${a%% *}"
done
check "counts after equal counts before" equal
check "harness leftovers (processes, mounts, cgroups, cache temp files) after down" harness_down
check "nothing left after down" nothing_left
F=''
suite_end
