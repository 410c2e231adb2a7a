#!/usr/bin/env bash
# End-to-end check of the harness with the stock runc runtime (needs no Fabricks shim):
# up, import the pause image, run, stop, clean up, nothing left behind.
# usage: smoke-runc.sh [1.6|2]...   (default: both; run `harness.sh install all` first)
set -euo pipefail
H=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/harness.sh
IMG=localhost/fabricks/pause:3
TMP=$(mktemp -d)
cur=''

# On any failure, still take down the containerd we started.
cleanup() {
	local rc=$?
	if [[ -n $cur ]]; then "$H" down "$cur" || true; fi
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT

fail() {
	echo "FAIL [$cur]: $*" >&2
	exit 1
}

# Waits until task $1 reports status $2.
wait_status() {
	local _
	for _ in {1..50}; do
		if "$H" ctr "$cur" task ls | grep -Eq "^$1 +[0-9]+ +$2"; then return 0; fi
		sleep 0.1
	done
	fail "task $1 never reached $2"
}

"$H" pause-image "$TMP/pause.tar"
flavours=("$@")
((${#flavours[@]})) || flavours=(1.6 2)
passed=0
for cur in "${flavours[@]}"; do
	start=$SECONDS
	"$H" up "$cur" 2>/dev/null
	"$H" ctr "$cur" images import "$TMP/pause.tar" >/dev/null
	grep -qx "$IMG" <<<"$("$H" ctr "$cur" images ls -q)" || fail "$IMG not imported"

	"$H" ctr "$cur" run -d --runtime io.containerd.runc.v2 "$IMG" p1
	wait_status p1 RUNNING
	"$H" ctr "$cur" task kill p1
	wait_status p1 STOPPED
	# ctr task delete warns "exit with non-zero exit code N" unless the task exited 0.
	out=$("$H" ctr "$cur" task delete p1 2>&1) || fail "task delete p1: $out"
	[[ -z $out ]] || fail "pause did not exit 0 on SIGTERM: $out"
	"$H" ctr "$cur" containers rm p1

	# The exit check above can see a failure: SIGKILL must come back as 137.
	"$H" ctr "$cur" run -d --runtime io.containerd.runc.v2 "$IMG" p2
	wait_status p2 RUNNING
	"$H" ctr "$cur" task kill -s SIGKILL p2
	wait_status p2 STOPPED
	out=$("$H" ctr "$cur" task delete p2 2>&1) || true
	[[ $out == *"exit code 137"* ]] || fail "SIGKILL not reported as 137: $out"
	"$H" ctr "$cur" containers rm p2

	# down must stop a task that is still running.
	"$H" ctr "$cur" run -d --runtime io.containerd.runc.v2 "$IMG" p3
	wait_status p3 RUNNING
	"$H" down "$cur"
	out=$("$H" leftovers "$cur") || fail "left behind after down: $out"
	echo "smoke-runc [$cur]: ok ($((SECONDS - start)) s)"
	cur=''
	passed=$((passed + 1))
done
echo "$passed passed, 0 failed"
