#!/usr/bin/env bash
# Pods through CRI, as kubelet runs them, on the harness's private containerd (`up --cri`):
#   runc pod      handler runc: the pause image as sandbox and as container; CRI + CNI work
#                 (pod IP on our bridge's /24, its netns, one ping from the host)
#   fabricks pod  handler fabricks: the same pod, the sandbox (pause, native) going through
#                 our shim, which runs it with runc; one shim for the whole pod; fabricks.io/*
#                 annotations reach config.json, others do not
#   leftovers     after down, nothing of ours is left (processes, mounts, netns, bridge, CNI state)
# usage: cri-smoke.sh [1.6|2]...   (default: both; run `harness.sh install all` first)
# Packets go only to the pods' IPs, in network namespaces this run created.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
H=$HERE/harness.sh
IMG=localhost/fabricks/pause:3
TMP=$(mktemp -d)
cur=''
passed=0 failed=0

cleanup() {
	local rc=$?
	if [[ -n $cur ]]; then "$H" down "$cur" || true; fi
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT

crictl() { "$H" crictl "$cur" "$@"; }

# Inside a case (a subshell with set -e): ends the case with a reason.
fail() {
	echo "FAIL [$cur] $CASE: $*" >&2
	exit 1
}

# Runs case function $1 in a subshell with errexit (a bare `( … )`, not in a condition, so that
# set -e holds inside); counts it; on failure shows what containerd logged at warning and above.
# A failing command is reported by the ERR trap: the last report is the case's own statement.
run_case() {
	local rc mark
	CASE=$1
	mark=$(wc -l <"$W/containerd.log" 2>/dev/null || echo 0)
	: >"$TMP/err"
	set +e
	(
		set -eE
		trap 'echo "FAIL [$cur] $CASE: line $LINENO: $BASH_COMMAND" >>"$TMP/err"' ERR
		"case_$1"
	)
	rc=$?
	set -e
	tail -n1 "$TMP/err" >&2
	LAST=$rc
	if ((rc == 0)); then
		echo "ok   [$cur] $1"
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "---- containerd.log (warnings and errors since the case began):" >&2
		tail -n "+$((mark + 1))" "$W/containerd.log" 2>/dev/null | grep -E 'level=(warning|error|fatal)' | tail -n 20 | cut -c1-800 >&2 || true
		echo "----" >&2
	fi
	return 0
}

# Stops and removes every pod (after a failed case, so the next starts clean).
remove_pods() {
	local p
	for p in $(crictl pods -q 2>/dev/null); do
		crictl stopp "$p" >/dev/null 2>&1 || true
		crictl rmp "$p" >/dev/null 2>&1 || true
	done
}

# Pid of the shim started for task $1 with our socket, if any.
shim_of() {
	local p cmd
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		if [[ $cmd == *containerd-shim-*" -id $1 "*"-address $CONTAINERD_ADDRESS"* ]]; then
			echo "${p#/proc/} ${cmd%% *}"
		fi
	done
}

veths() { ip -o link show master "$BRIDGE" 2>/dev/null | wc -l; }

# The pod config (crictl JSON) for handler $1, with a log directory under the work dir.
pod_json() {
	cat >"$TMP/pod-$1.json" <<EOF
{
  "metadata": { "name": "smoke-$1", "namespace": "cri-smoke", "uid": "cri-smoke-$1-$$", "attempt": 0 },
  "log_directory": "$W/pods/smoke-$1",
  "annotations": { "fabricks.io/smoke": "pod-$1", "example.com/dropped": "yes" },
  "linux": {}
}
EOF
	echo "$TMP/pod-$1.json"
}

ctr_json() {
	cat >"$TMP/ctr.json" <<EOF
{
  "metadata": { "name": "pause" },
  "image": { "image": "$IMG" },
  "log_path": "pause.log",
  "annotations": { "fabricks.io/container": "yes" },
  "linux": {}
}
EOF
	echo "$TMP/ctr.json"
}

# The whole pod cycle with handler $1; extra checks for fabricks.
pod_cycle() {
	local handler=$1 pod cid ip netns spec shim ctr_shim before out
	local podj ctrj
	podj=$(pod_json "$handler")
	ctrj=$(ctr_json)
	before=$(veths)
	pod=$(crictl runp --runtime "$handler" "$podj")
	spec=$W/state/io.containerd.runtime.v2.task/k8s.io/$pod/config.json
	cid=$(crictl create "$pod" "$ctrj" "$podj")
	crictl start "$cid" >/dev/null
	out=$(crictl inspect --state "$cid")
	[[ $out == "CONTAINER_RUNNING 0" ]] || fail "container state: $out"
	out=$(crictl pods)
	[[ $out == *"$pod"$'\t'SANDBOX_READY*$'\t'"$handler"* ]] || fail "pod not ready with handler $handler: $out"

	# Network: an address on our /24, in the netns CRI made (under the work dir), reachable.
	ip=$(crictl inspectp --ip "$pod")
	[[ $ip == "$SUBNET".* ]] || fail "pod IP $ip not in $SUBNET.0/24"
	netns=$(grep -o '"type":"network","path":"[^"]*"' "$spec" | sed 's/.*"path":"//; s/"$//')
	[[ $netns == "$W"/* && -e $netns ]] || fail "pod netns '$netns' not under $W"
	out=$(nsenter --net="$netns" ip -4 -o addr show)
	[[ $out == *" $ip/24 "* ]] || fail "$ip not in the pod's netns: $out"
	(($(veths) == before + 1)) || fail "no veth of the pod on $BRIDGE"
	ping -c1 -W2 "$ip" >/dev/null || fail "ping $ip from the host"
	crictl logs "$cid" >/dev/null || fail "logs"
	[[ -f $W/pods/smoke-$handler/pause.log ]] || fail "no log file $W/pods/smoke-$handler/pause.log"

	# Which shim runs the pod: runc's for runc; ours for fabricks, for the container too.
	shim=$(shim_of "$pod")
	ctr_shim=$(shim_of "$cid")
	if [[ $handler == fabricks ]]; then
		[[ ${shim#* } == */containerd-shim-fabricks-v1 ]] || fail "sandbox shim: '$shim'"
		[[ -z $ctr_shim ]] || fail "the container got its own shim: $ctr_shim"
		out=$(ps -o args= --ppid "${shim%% *}")
		[[ $out == *"/pause"* ]] || fail "the pod's pause is not a child of our shim: $out"
		grep -q '"fabricks.io/smoke"' "$spec" || fail "pod annotation fabricks.io/smoke missing from the sandbox's config.json"
		! grep -q '"example.com/dropped"' "$spec" || fail "pod annotation example.com/dropped passed to the sandbox"
		grep -q '"fabricks.io/container"' "$W/state/io.containerd.runtime.v2.task/k8s.io/$cid/config.json" ||
			fail "container annotation fabricks.io/container missing from its config.json"
	else
		[[ ${shim#* } == */containerd-shim-runc-v2 ]] || fail "sandbox shim: '$shim'"
	fi

	# Stop and remove: CNI gives the address and the veth back, the netns goes.
	crictl stopp "$pod" >/dev/null
	crictl rmp "$pod" >/dev/null
	[[ ! -e $netns ]] || fail "netns $netns still there after rmp"
	[[ ! -e $W/cni/networks/$CNI_NET/$ip ]] || fail "IPAM still holds $ip after rmp"
	(($(veths) == before)) || fail "the pod's veth is still on $BRIDGE"
	[[ -z $(crictl pods -q) ]] || fail "pods left: $(crictl pods)"
	[[ -z $(shim_of "$pod") ]] || fail "shim still running after rmp: $(shim_of "$pod")"
	echo "     [$cur] $handler pod: IP $ip, netns ${netns##*/}, shim ${shim##*/}"
}

case_up() {
	local conf
	"$H" up "$cur" --cri
	crictl version | sed -n 's/^RuntimeVersion: */     ['"$cur"'] CRI of containerd /p'
	conf=$(cat "$W"/cni/conf/*.conflist)
	sed -n 's/.*"bridge": "\([^"]*\)".*/\1/p' <<<"$conf" >"$TMP/bridge"
	sed -n 's/.*"subnet": "\([0-9.]*\)\.0\/24".*/\1/p' <<<"$conf" >"$TMP/subnet"
	sed -n 's/.*"name": "\([^"]*\)".*/\1/p' <<<"$conf" >"$TMP/net"
	[[ -s $TMP/bridge && -s $TMP/subnet && -s $TMP/net ]] || fail "unexpected conflist: $conf"
}

case_runc_pod() { pod_cycle runc; }
case_fabricks_pod() { pod_cycle fabricks; }

case_leftovers() {
	"$H" down "$cur"
	local out
	out=$("$H" leftovers "$cur") || fail "after down: $out"
}

cd "$HERE/.."
shim=${FABRICKS_SHIM:-target/release/containerd-shim-fabricks-v1}
if [[ ! -x $shim ]]; then
	echo "== building the shim"
	cargo build --release -p containerd-shim-fabricks
fi

flavours=("$@")
((${#flavours[@]})) || flavours=(1.6 2)
for cur in "${flavours[@]}"; do
	start=$SECONDS
	eval "$("$H" env "$cur")"
	W=$FABRICKS_HARNESS_WORK
	run_case up
	if ((LAST == 0)); then
		BRIDGE=$(cat "$TMP/bridge") SUBNET=$(cat "$TMP/subnet") CNI_NET=$(cat "$TMP/net")
		run_case runc_pod
		remove_pods
		run_case fabricks_pod
		remove_pods
	fi
	run_case leftovers
	echo "     [$cur] done in $((SECONDS - start)) s"
	cur=''
done
echo "$passed passed, $failed failed"
((failed == 0))
