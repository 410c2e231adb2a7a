#!/usr/bin/env bash
# Fabricks on a real Kubernetes node, the one this machine can run:
# - the node VM where KVM works (vm/vm.sh: Debian 12, systemd, cgroup v2, containerd 2.x) with a
#   single-node cluster built from source (vm/k8s.sh: kubelet with the systemd cgroup driver);
#   the product goes in as a user installs it (lib/k8s-flow.sh, the steps kind/run.sh takes too):
#   `helm install` of charts/fabricks, whose DaemonSet edits the node's containerd config and
#   restarts containerd through the node's systemd;
# - else the host node (host-node.sh: the same kube binary on this host, kubelet with the
#   cgroupfs driver on cgroup v1, on the harness's containerd 2.x CRI). No systemd here to
#   restart containerd, and pods reach no API server (no kube-proxy, a CNI without routes): the
#   harness's config carries the fabricks handler as the installer writes it, `helm install`
#   makes the RuntimeClass with the installer DaemonSet scheduled nowhere, and the test labels
#   the node as the installer would.
# Where KVM is unusable (`vm.sh kvm`: cheap, nothing built) no VM image is built and the VM's
# cases print as skipped with the reason; the host node's cases likewise where the VM runs.
# Images go to a registry on the host's loopback (`fabricks build --push`, `fabricks push`);
# then the Kubernetes cases, each checked with kubectl, the uninstall path and the node's removal.
#
# usage: test-cluster/e2e-k8s.sh [--keep]   (--keep: leave the node and registry up afterwards)
# env:   FABRICKS_K8S_NODE=auto|vm|host (auto: the VM if KVM boots its kernel, else the host),
#        FABRICKS_VM_ACCEL, FABRICKS_VM_DIR (/tmp/fabricks-vm), FABRICKS_VM_CACHE, FABRICKS_TOOLS,
#        FABRICKS_HOSTNODE_DIR (/tmp/fabricks-hostnode), FABRICKS_E2E_BUILD=0 (target/release as is)
# Prints `ok - name` / `not ok - name: why` / `skip - name: why` per case and ends with
# `N passed, N failed[, N skipped]`.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The registry's state (registry.sh) lives here.
export FABRICKS_HARNESS_DIR=${FABRICKS_K8S_HARNESS_DIR:-/tmp/fabricks-k8s}
# shellcheck source=lib/suite.sh
source "$HERE/lib/suite.sh"
# shellcheck source=lib/k8s-flow.sh
source "$HERE/lib/k8s-flow.sh"

VMSH=$HERE/vm/vm.sh
K8S=$HERE/vm/k8s.sh
HN=$HERE/host-node.sh
export FABRICKS_VM_DIR=${FABRICKS_VM_DIR:-/tmp/fabricks-vm}
# The node the cases run on: vm or host (choose_node), and why the other one is not used.
NODE_KIND='' NODE='' NO_VM='' NO_HOST=''
KEEP_UP=0
[[ ${1:-} != --keep ]] || KEEP_UP=1
# A free loopback port for the registry: other suites on this machine use 5000/5001.
REG_PORT=${FABRICKS_K8S_REGISTRY_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export FABRICKS_REGISTRY_PORT=$REG_PORT
KUBECTL=()
CLUSTER=0 VM_PORTS=''
BUSYBOX=localhost:$REG_PORT/test/busybox:1
GO_HTTP=localhost:$REG_PORT/examples/go-http:dev
GO_HELLO=localhost:$REG_PORT/examples/go-hello:dev
TRAP=localhost:$REG_PORT/test/trap:1
GO_HTTP_NATIVE=localhost:$REG_PORT/test/go-http-native:1
# Bounds for hangs, not benchmarks.
readonly POD_WAIT=180

suite_begin k8s fh-k8s
suite_stop() {
	flow_stop
	if ((!KEEP_UP)); then
		case $NODE_KIND in
		vm) "$VMSH" down >/dev/null 2>&1 ;;
		host) "$HN" down >/dev/null 2>&1 ;;
		esac
		"$HERE/registry.sh" down >/dev/null 2>&1
	fi
}

node_names() { echo "$NODE"; }
node_exec() {
	shift
	if [[ $NODE_KIND == vm ]]; then "$VMSH" ssh "$@"; else "$@"; fi
}
# On the node, as one shell command line.
on_node() { if [[ $NODE_KIND == vm ]]; then "$VMSH" ssh "$*"; else bash -c "$*"; fi; }

# show TITLE CMD...: CMD's output into the log as `#` lines (what the issue wants to see).
show() {
	local title=$1
	shift
	echo "# --- $title"
	"$@" 2>&1 | cut -c1-300 | sed 's/^/#   /'
}

# --- set-up -----------------------------------------------------------------------------------

# The VM's packages (qemu, debootstrap…) only where the VM may run.
prerequisites() {
	if [[ $NODE_KIND != host ]]; then run "$VMSH" install || return; fi
	run "$H" install 2 || return
	if ! command -v docker-registry >/dev/null || ! command -v jq >/dev/null || ! command -v wrk >/dev/null; then
		run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry jq wrk || return
	fi
}

build_product() {
	if [[ ${FABRICKS_E2E_BUILD:-1} == 0 ]]; then
		[[ -x $FABRICKS_SHIM && -x $FABRICKS && -x $REPO/target/release/fabricks-installer-image ]] ||
			why "FABRICKS_E2E_BUILD=0 but target/release lacks the binaries" || return
		run "$REPO/target/release/fabricks-installer-image" -o "$TMP/installer.tar" -t "$(flow_installer_image):$VERSION"
		return
	fi
	flow_build
}

build_kube() {
	local t0=$SECONDS
	run "$K8S" build || return
	note "kube binary: $OUT ($(du -m "$OUT" | cut -f1) MB, $((SECONDS - t0)) s here)"
}

build_image() {
	local t0=$SECONDS
	run "$VMSH" image || return
	note "image: $OUT ($((SECONDS - t0)) s here)"
}

# kvm_cheap: what the host says about KVM, before anything is built: sets NODE_KIND=host and
# NO_VM where KVM is unusable (FABRICKS_K8S_NODE=vm|host decides instead; so does
# FABRICKS_VM_ACCEL=kvm|tcg, which asks for the VM).
kvm_cheap() {
	local want=${FABRICKS_K8S_NODE:-auto} why_
	[[ $want == auto && ${FABRICKS_VM_ACCEL:-auto} != auto ]] && want=vm
	case $want in
	vm) NODE_KIND=vm NO_HOST="FABRICKS_K8S_NODE=vm (or FABRICKS_VM_ACCEL) asks for the VM node" ;;
	host) NODE_KIND=host NO_VM="FABRICKS_K8S_NODE=host asks for the host node" ;;
	auto)
		if ! why_=$("$VMSH" kvm); then
			NODE_KIND=host NO_VM="no usable KVM here ($why_): the cases run on the host node"
		fi
		;;
	*) NODE_KIND=host NO_VM="FABRICKS_K8S_NODE=$want is not auto, vm or host" ;;
	esac
	return 0
}

# The node the cases run on: the VM if KVM boots its kernel (vm.sh probe, on the image built
# before), else the host node.
choose_node() {
	local accel
	if [[ -z $NODE_KIND ]]; then
		accel=$("$VMSH" probe 2>"$TMP/probe") || why "vm.sh probe failed: $(<"$TMP/probe")" || return
		if [[ $accel == kvm ]]; then
			NODE_KIND=vm NO_HOST="KVM works here: the cases run on the VM node"
		else
			NODE_KIND=host NO_VM="KVM does not boot the VM's kernel here ($(tr '\n' ' ' <"$TMP/probe" | sed 's/^vm: //; s/ *$//')): the cases run on the host node"
		fi
	fi
	if [[ $NODE_KIND == vm ]]; then NODE=fabricks-node; else NODE=fabricks-host; fi
	note "node: $NODE_KIND ($NODE); ${NO_VM:-$NO_HOST}"
}

registry() {
	"$HERE/registry.sh" down >/dev/null 2>&1
	run "$HERE/registry.sh" up || return
	flow_push || return
	run "$HERE/vm/busybox-image.sh" "$TMP/busybox.tar" "$BUSYBOX" || return
	run "$FABRICKS" push "$TMP/busybox.tar" "$BUSYBOX" || return
	# A module whose _start is `unreachable`, packed as it is.
	printf '\0asm\1\0\0\0\1\4\1\140\0\0\3\2\1\0\7\12\1\6_start\0\0\12\5\1\3\0\0\13' >"$TMP/trap.wasm"
	run "$FABRICKS" build "$TMP/trap.wasm" --push "$TRAP" || return
	# go-http built natively (linux/amd64, static), for the runc pod beside a Fabricks one.
	mkdir -p "$TMP/native/rootfs/tmp"
	run env -C "$REPO/examples/go-http" CGO_ENABLED=0 go build -trimpath -o "$TMP/native/rootfs/go-http" . || return
	run "$HERE/vm/rootfs-image.sh" "$TMP/native/go-http.tar" "$GO_HTTP_NATIVE" "$TMP/native/rootfs" '["/go-http"]' || return
	run "$FABRICKS" push "$TMP/native/go-http.tar" "$GO_HTTP_NATIVE"
}

cluster_up() {
	local t0=$SECONDS
	"$VMSH" down >/dev/null 2>&1
	run env FABRICKS_VM_REGISTRY="127.0.0.1:$REG_PORT" "$K8S" up || return
	eval "$("$K8S" env)"
	KUBECTL=("$FABRICKS_KUBE" kubectl --kubeconfig "$KUBECONFIG")
	VM_PORTS=$(awk '{ print $2 }' "$FABRICKS_VM_DIR/ports" | tr '\n' ' ')
	# The node maps localhost:<port> to qemu's forward to the host's registry (as kind maps it to
	# its registry container).
	run on_node "mkdir -p /etc/containerd/certs.d/localhost:$REG_PORT && printf 'server = \"http://10.0.2.100:5000\"\n\n[host.\"http://10.0.2.100:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n' >/etc/containerd/certs.d/localhost:$REG_PORT/hosts.toml" || return
	CLUSTER=1
	note "VM and cluster up in $((SECONDS - t0)) s"
}

# The node's OS: systemd as PID 1, cgroup v2, containerd 2.x active with runc's SystemdCgroup.
os_facts() {
	local fs
	fs=$(on_node stat -fc %T /sys/fs/cgroup) || why "ssh to the node failed" || return
	echo "# node: stat -fc %T /sys/fs/cgroup: $fs"
	[[ $fs == cgroup2fs ]] || why "the node's /sys/fs/cgroup is $fs, not cgroup2fs" || return
	run on_node 'ps -o comm= -p 1; systemctl is-active containerd fabricks-pause-image; containerd --version; grep -c "SystemdCgroup = true" /etc/containerd/config.toml; ctr -n k8s.io images ls -q' || return
	show "node: PID 1, units, containerd, SystemdCgroup lines, k8s.io images" printf '%s\n' "$OUT"
	local l
	mapfile -t l <<<"$OUT"
	[[ ${l[0]} == systemd ]] || why "PID 1 is ${l[0]}, not systemd" || return
	[[ ${l[1]} == active && ${l[2]} == active ]] || why "containerd / the pause import: ${l[1]} / ${l[2]}" || return
	[[ ${l[3]} =~ \ 2\.[0-9]+\.[0-9]+ ]] || why "not containerd 2.x: ${l[3]}" || return
	[[ ${l[4]} == 1 ]] || why "SystemdCgroup = true on ${l[4]} lines of the config, not 1" || return
	[[ $OUT == *$'\n'localhost/fabricks/pause:3$'\n'* ]] || why "no pause image in k8s.io"
}

# The node is what the issue asks for: cgroup v2 unified, kubelet on the systemd driver.
node_facts() {
	local fs driver
	os_facts || return
	fs=$(on_node stat -fc %T /sys/fs/cgroup) || why "ssh to the node failed" || return
	run "${KUBECTL[@]}" get --raw "/api/v1/nodes/$NODE/proxy/configz" || return
	driver=$(jq -r .kubeletconfig.cgroupDriver <<<"$OUT")
	echo "# node: kubelet cgroupDriver (configz): $driver"
	show "kubectl version; get nodes -o wide" sh -c "$(printf '%q ' "${KUBECTL[@]}") version; $(printf '%q ' "${KUBECTL[@]}") get nodes -o wide"
	show "node: runc, kernel" on_node 'runc --version | head -n1; uname -r'
	[[ $driver == systemd ]] || why "kubelet's cgroup driver is $driver, not systemd"
}

install_chart() {
	local before after
	CONFIG_SUM=$(on_node sha256sum /etc/containerd/config.toml | cut -d' ' -f1)
	before=$(on_node systemctl show -p InvocationID --value containerd)
	flow_install_chart || return
	after=$(on_node systemctl show -p InvocationID --value containerd)
	[[ -n $before && $before != "$after" ]] || why "containerd was not restarted by systemd (invocation $before, then $after)" || return
	run on_node "grep -n -A4 'runtimes.fabricks\\]' /etc/containerd/config.toml" || why "the node's config has no fabricks runtime" || return
	show "node: the runtime the installer registered" printf '%s\n' "$OUT"
	run on_node test -x /usr/local/bin/containerd-shim-fabricks-v1
}

# --- the host node ----------------------------------------------------------------------------

# What a kubelet could change on this host outside its state dir (and host-node.sh restores):
# iptables rules, the kernel settings it tunes, its fixed host paths.
host_snapshot() {
	iptables-save 2>/dev/null | grep -v '^#'
	ip6tables-save 2>/dev/null | grep -v '^#'
	sysctl vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes
	ls -d /var/lib/kubelet /var/log/containers /var/log/pods 2>&1
}

host_up() {
	local t0=$SECONDS
	"$HN" down >/dev/null 2>&1
	host_snapshot >"$TMP/host.before"
	run env FABRICKS_HOSTNODE_REGISTRY="127.0.0.1:$REG_PORT" "$HN" up || return
	run "$HN" env || return
	# Only these: the harness's CONTAINERD_ADDRESS must not reach the suite's other commands.
	eval "$(grep -E '^export (KUBECONFIG|FABRICKS_KUBE)=' <<<"$OUT")"
	HN_WORK=$(sed -n 's/.*FABRICKS_HARNESS_WORK=\([^ ]*\).*/\1/p' <<<"$OUT")
	HN_CTR=$(sed -n 's/.* CTR=\([^ ]*\).*/\1/p' <<<"$OUT")
	KUBECTL=("$FABRICKS_KUBE" kubectl --kubeconfig "$KUBECONFIG")
	CLUSTER=1
	note "host node up in $((SECONDS - t0)) s"
}

# The host node as it is: cgroup v1 (hierarchies per controller on a tmpfs), no systemd, kubelet
# with the cgroupfs driver and failCgroupV1 off.
host_facts() {
	local fs driver v1
	fs=$(stat -fc %T /sys/fs/cgroup)
	v1=$(awk '$3 == "cgroup" { n++ } END { print n + 0 }' /proc/self/mounts)
	echo "# node: stat -fc %T /sys/fs/cgroup: $fs ($v1 cgroup v1 hierarchies: cgroup v1); PID 1: $(ps -o comm= -p 1)"
	k get --raw "/api/v1/nodes/$NODE/proxy/configz" || return
	driver=$(jq -r .kubeletconfig.cgroupDriver <<<"$OUT")
	echo "# node: kubelet cgroupDriver (configz): $driver, failCgroupV1: $(jq -r .kubeletconfig.failCgroupV1 <<<"$OUT"), cgroupRoot: $(jq -r .kubeletconfig.cgroupRoot <<<"$OUT")"
	show "kubectl version; get nodes -o wide" sh -c "$(printf '%q ' "${KUBECTL[@]}") version; $(printf '%q ' "${KUBECTL[@]}") get nodes -o wide"
	show "node: runc, containerd, kernel" sh -c "runc --version | head -n1; $(printf '%q' "${HN_CTR%/*}/containerd") --version; uname -r"
	[[ $fs == tmpfs ]] && ((v1 > 0)) || why "/sys/fs/cgroup is $fs with $v1 v1 hierarchies: not the cgroup v1 host this node is for" || return
	[[ $driver == cgroupfs ]] || why "kubelet's cgroup driver is $driver, not cgroupfs"
}

# The chart for its RuntimeClass: the installer DaemonSet's nodeSelector matches no node (it
# would need systemd to restart containerd, and a route to the API server to label the node).
# What it would have done is done already or here: the handler is in the harness's containerd
# config (`harness.sh up --cri`, the table the installer writes), the shim on containerd's
# PATH ($W/opt/bin), and the node label.
host_chart() {
	local w=$HN_WORK
	flow_helm || return
	run "$HELM" upgrade --install fabricks "$REPO/charts/fabricks" --namespace kube-system \
		--set image.repository="$(flow_installer_image)" --set image.tag="$VERSION" \
		--set-string 'nodeSelector.fabricks\.io/node-installer=disabled' --wait --timeout 5m || return
	k get runtimeclass fabricks -o jsonpath='{.handler} {.scheduling.nodeSelector}' || return
	expect_out 'fabricks {"fabricks.io/runtime":"installed"}' || return
	k get daemonset -n kube-system fabricks-node-installer -o jsonpath='{.status.desiredNumberScheduled}' || return
	[[ $OUT == 0 ]] || why "the installer DaemonSet is scheduled on $OUT nodes, want 0" || return
	run grep -A3 'runtimes.fabricks\]' "$w/config.toml" || why "the harness's containerd config has no fabricks runtime" || return
	show "node: the fabricks runtime in containerd's config" printf '%s\n' "$OUT"
	run test -x "$w/opt/bin/containerd-shim-fabricks-v1" || why "no shim on containerd's PATH ($w/opt/bin)" || return
	k label node "$NODE" fabricks.io/runtime=installed --overwrite
}

host_uninstall() {
	k delete -k "$TMP/examples" --wait || return
	k label node "$NODE" fabricks.io/runtime- || return
	run "$HELM" uninstall fabricks --namespace kube-system --wait || return
	! "${KUBECTL[@]}" get runtimeclass fabricks >/dev/null 2>&1 || why "RuntimeClass fabricks is still there" || return
	! "${KUBECTL[@]}" get daemonset -n kube-system fabricks-node-installer >/dev/null 2>&1 || why "the installer DaemonSet is still there"
}

host_gone() {
	local t0=$SECONDS
	run "$HN" down || return
	note "host node down in $((SECONDS - t0)) s"
	run "$HN" leftovers || why "left behind: ${OUT//$'\n'/; }" || return
	host_snapshot >"$TMP/host.after"
	OUT=$(diff "$TMP/host.before" "$TMP/host.after") CMD="diff of iptables, kernel settings, kubelet's host paths before and after" RC=$?
	((RC == 0)) || why "the host differs from before the node (iptables, sysctls or host paths)" || return
	CLUSTER=0
}

# --- waiting on pods --------------------------------------------------------------------------

# pod_json POD: the pod's JSON into OUT.
pod_json() { run_cmd "${KUBECTL[@]}" get pod "$1" -o json; }

# A reason kubelet will not get past by waiting: the pod cannot start at all.
stuck() {
	local why_
	why_=$(jq -r '[.status.containerStatuses[]?.state.waiting | select(.reason != null and .reason != "ContainerCreating" and .reason != "CrashLoopBackOff") | "\(.reason): \(.message // "")"] | first // empty' <<<"$OUT")
	if [[ -z $why_ ]]; then
		why_=$("${KUBECTL[@]}" get events --field-selector "involvedObject.name=$1,reason=FailedCreatePodSandBox" -o jsonpath='{.items[-1:].message}' 2>/dev/null)
	fi
	[[ -n $why_ ]] && echo "$why_"
}

# wait_pod POD JQ-CONDITION WHAT: polls the pod until the condition holds (POD_WAIT seconds at
# most); fails at once when the pod cannot start (a create error, a failed sandbox).
wait_pod() {
	local i s
	for ((i = 0; i < POD_WAIT; i += 2)); do
		pod_json "$1"
		if ((RC == 0)); then
			jq -e "$2" <<<"$OUT" >/dev/null && return 0
			if s=$(stuck "$1"); then
				why "pod $1 cannot start: $s" || return
			fi
		fi
		sleep 2
	done
	local phase
	phase=$(jq -r .status.phase <<<"$OUT" 2>/dev/null)
	pod_story "$1"
	why "pod $1: not $3 after ${POD_WAIT}s (phase $phase)"
}

# pod_story POD: what a timed-out wait needs to be understood, short enough for a CI log (the
# pod's JSON is not): each container's restart count, state and last state, the pod's events,
# and what the node's containerd (the shim's lines included) and kubelet logged of it.
pod_story() {
	local ids
	# The pod's sandbox by its name (RunPodSandbox), its containers by their ids.
	ids=$(jq -r --arg pod "Name:$1," '[$pod, (.status.containerStatuses[]? | (.containerID // empty), (.lastState.terminated.containerID // empty) | sub("^[a-z]+://"; ""))] | join("|")' <<<"$OUT" 2>/dev/null)
	CMD="pod $1: containers, events, node logs" RC=0 ERR=''
	OUT=$(
		jq -r '.status.containerStatuses[]? | "\(.name): restartCount \(.restartCount), state \(.state | tojson), lastState \(.lastState | tojson)"' <<<"$OUT" 2>/dev/null
		"${KUBECTL[@]}" get events --field-selector "involvedObject.name=$1" --sort-by=.lastTimestamp \
			-o jsonpath='{range .items[*]}event: {.lastTimestamp} {.reason} (x{.count}): {.message}{"\n"}{end}' 2>&1 | tail -n 12
		node_log containerd | grep -E "${ids:-Name:$1,}" | tail -n 15 | sed 's/^/containerd: /'
		node_log kubelet | grep -F "$1" | tail -n 10 | sed 's/^/kubelet: /'
	)
}

# unready_story: the rollout did not finish: the story of a go-http pod that is not Ready.
unready_story() {
	local pod
	pod=$("${KUBECTL[@]}" get pods -l app.kubernetes.io/name=go-http -o json 2>/dev/null |
		jq -r '[.items[] | select([.status.conditions[]? | select(.type == "Ready" and .status == "True")] | length == 0) | .metadata.name] | first // empty')
	if [[ -n $pod ]]; then
		pod_json "$pod"
		pod_story "$pod"
	fi
	why "the rollout to 20 replicas did not finish in 300 s${pod:+; pod $pod is not Ready}"
}

# node_log containerd|kubelet: the component's log on the node.
node_log() {
	if [[ $NODE_KIND == vm ]]; then
		"$VMSH" ssh "journalctl -u $1 --no-pager -n 3000" 2>/dev/null
	elif [[ $1 == containerd ]]; then
		cat "$HN_WORK/containerd.log" 2>/dev/null
	else
		# host-node.sh keeps the harness in h/ and the components' logs in logs/ of its state.
		cat "${HN_WORK%/h/*}/logs/kubelet.log" 2>/dev/null
	fi
}

# apply_pod YAML: kubectl apply -f - of YAML.
apply_pod() {
	printf '%s\n' "$1" >"$TMP/pod.yaml"
	k apply -f "$TMP/pod.yaml"
}

delete_pods() { "${KUBECTL[@]}" delete pod --ignore-not-found --wait --timeout=120s "$@" >/dev/null 2>&1; }

# pod NAME IMAGE ARGS-JSON [SPEC-LINE [MEMORY-LIMIT [CONTAINER-YAML]]]: a fabricks pod
# manifest; SPEC-LINE defaults to restartPolicy Always. go-http gets its listen annotation.
pod() {
	local listen=''
	[[ $2 != "$GO_HTTP" ]] || listen='annotations: { fabricks.io/listen: "http=8080" }'
	cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  labels: { fabricks.io/test: e2e-k8s }
  $listen
spec:
  runtimeClassName: fabricks
  ${4:-restartPolicy: Always}
  containers:
    - name: main
      image: $2
      args: $3
      resources:
        requests: { cpu: 50m, memory: 32Mi }
        limits: { cpu: 500m, memory: ${5:-128Mi} }
${6:-}
EOF
}

# --- the cases --------------------------------------------------------------------------------

examples_applied() {
	flow_examples
	k apply -k "$TMP/examples"
}

hello_job() {
	k wait job/go-hello --for=condition=complete --timeout=${POD_WAIT}s || {
		run_cmd "${KUBECTL[@]}" get pods -l app.kubernetes.io/name=go-hello -o wide
		return 1
	}
	k logs job/go-hello || return
	expect_out "GREETING: Hello from a Kubernetes Job" || return
	expect_out 'args: ["hello" "kubernetes"]'
}

http_ready() {
	local ready
	k rollout status deployment/go-http --timeout=${POD_WAIT}s || return
	k get pods -l app.kubernetes.io/name=go-http -o json || return
	ready=$(jq '[.items[] | select(.status.conditions[]? | .type == "Ready" and .status == "True") | select(.spec.containers[0].readinessProbe.httpGet.path == "/healthz")] | length' <<<"$OUT")
	((ready == 2)) || why "$ready of 2 go-http pods Ready through their /healthz readiness probe"
	show "kubectl get pods -o wide" "${KUBECTL[@]}" get pods -o wide
}

http_port_forward() { flow_curl_service; }

# A runc (busybox) pod fetches go-http's page from a go-http pod's IP.
http_pod_ip() {
	local ip
	ip=$("${KUBECTL[@]}" get pods -l app.kubernetes.io/name=go-http -o jsonpath='{.items[0].status.podIP}')
	[[ -n $ip ]] || why "go-http has no pod IP" || return
	delete_pods client
	# No `-T`: Debian 12's busybox wget (1.35.0) dies of SIGSEGV with it; wait_pod bounds the wait.
	k run client --image="$BUSYBOX" --restart=Never --command -- wget -q -O- "http://$ip:8080/" || return
	wait_pod client '.status.phase == "Succeeded" or .status.phase == "Failed"' finished || return
	[[ $(jq -r .status.phase <<<"$OUT") == Succeeded ]] ||
		why "the client pod failed: $(jq -c '.status.containerStatuses[0].state.terminated | {reason, exitCode}' <<<"$OUT")" || return
	k logs client || return
	expect_out "Hello from Fabricks" || return
	note "client pod (runc) -> http://$ip:8080/: ${OUT%%$'\n'*}"
	delete_pods client
}

# Issue 18's must-show: the go-http pod's process (its runner: the one process in its
# container's cgroup) holds no capability, cannot gain one (no_new_privs) and runs under a
# seccomp filter, as /proc/PID/status on the node says.
runner_confined() {
	local id pid
	k get pods -l app.kubernetes.io/name=go-http -o json || return
	id=$(jq -r '.items[0].status.containerStatuses[0].containerID | sub("^[a-z]+://"; "")' <<<"$OUT")
	run on_node "cat \$(find /sys/fs/cgroup -path '*$id*' -name cgroup.procs | head -n1)" || return
	pid=${OUT%%$'\n'*}
	[[ $pid =~ ^[0-9]+$ ]] || why "no process in the cgroup of go-http's container $id" || return
	run on_node "tr '\\0' ' ' </proc/$pid/cmdline; echo; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/$pid/status" || return
	show "go-http's runner, pid $pid" echo "$OUT"
	expect_out "containerd-shim-fabricks-v1 runner" "the container's process is its runner" || return
	expect_out_re $'CapEff:\t0000000000000000' || return
	expect_out_re $'CapPrm:\t0000000000000000' || return
	expect_out_re $'CapBnd:\t0000000000000000' || return
	expect_out_re $'NoNewPrivs:\t1' || return
	expect_out_re $'Seccomp:\t2' || return
	note "go-http's runner $pid: $(grep -E '^(CapEff|NoNewPrivs|Seccomp):' <<<"$OUT" | tr '\t\n' '  ')"
}

liveness_restarts() {
	local n
	delete_pods live
	apply_pod "$(pod live "$GO_HTTP" '[]' '' 128Mi '      livenessProbe:
        httpGet: { path: /no-such-page, port: 8080 }
        initialDelaySeconds: 2
        periodSeconds: 2
        failureThreshold: 1')" || return
	wait_pod live '.status.containerStatuses[0].restartCount >= 2' "restarted twice by its liveness probe" || return
	n=$(jq '.status.containerStatuses[0].restartCount' <<<"$OUT")
	k get events --field-selector involvedObject.name=live -o jsonpath='{range .items[*]}{.reason}: {.message}{"\n"}{end}' || return
	expect_out "Liveness probe failed" || return
	note "restartCount $n; $(grep -m1 'Liveness probe failed' <<<"$OUT")"
	delete_pods live
}

# kubelet restarts the first crash at once and every later one after a back-off (10 s,
# doubling), announced by a BackOff event. The container's state reads waiting/CrashLoopBackOff
# only from the pod sync after that decision, which can come after the restart (kubelet 1.35
# resyncs such a pod about once a minute): so the evidence is the restarts, the exit code and
# kubelet's BackOff event, not a poll that happens to fall inside the waiting window.
crash_backoff() {
	local code
	delete_pods crash
	apply_pod "$(pod crash "$GO_HELLO" '["--exit", "3"]')" || return
	wait_pod crash '.status.containerStatuses[0].restartCount >= 2' "restarted twice" || return
	code=$(jq '.status.containerStatuses[0] | (.state.terminated // .lastState.terminated).exitCode' <<<"$OUT")
	[[ $code == 3 ]] || why "the container's last exit code is $code, want 3" || return
	note "$(jq -r '.status.containerStatuses[0] | "restartCount \(.restartCount), state \(.state | keys[0]) \(.state.waiting.reason // .state.terminated.reason)"' <<<"$OUT")"
	k get events --field-selector involvedObject.name=crash,reason=BackOff -o jsonpath='{range .items[*]}{.message} (x{.count}){"\n"}{end}' || return
	expect_out "Back-off restarting failed container main" "kubelet's BackOff event" || return
	note "event BackOff: $(head -n1 <<<"$OUT")"
	delete_pods crash
}

# kubectl delete of a running go-http pod: SIGTERM reaches the module, which stops serving
# and says so, well within terminationGracePeriodSeconds (a SIGKILL at its end would cut that off).
graceful_delete() {
	local t0 took logs_pid
	delete_pods term
	apply_pod "$(pod term "$GO_HTTP" '[]' 'terminationGracePeriodSeconds: 30')" || return
	wait_pod term '.status.containerStatuses[0].ready == true or .status.containerStatuses[0].state.running != null' running || return
	"${KUBECTL[@]}" logs -f term >"$TMP/term.log" 2>&1 &
	logs_pid=$!
	sleep 1
	t0=$(date +%s%N)
	k delete pod term --wait --timeout=60s || return
	took=$((($(date +%s%N) - t0) / 1000000))
	wait "$logs_pid" 2>/dev/null
	OUT=$(<"$TMP/term.log") CMD="kubectl logs -f term (during the delete)"
	expect_out "go-http: stopped" "the module's own words after SIGTERM" || return
	((took < 30000)) || why "the delete took $took ms: past the 30 s grace period" || return
	note "deleted in $took ms (grace period 30 s); the pod's last log line: $(tail -n1 "$TMP/term.log")"
}

oom_killed() {
	delete_pods oom
	apply_pod "$(pod oom "$GO_HELLO" '["--alloc-mib", "512"]' 'restartPolicy: Never' 64Mi)" || return
	wait_pod oom '.status.containerStatuses[0].state.terminated != null' terminated || {
		OOM_DESCRIBE=1
		return 1
	}
	show "kubectl describe pod oom" "${KUBECTL[@]}" describe pod oom
	[[ $(jq -r '.status.containerStatuses[0].state.terminated.reason' <<<"$OUT") == OOMKilled ]] ||
		why "terminated with $(jq -c '.status.containerStatuses[0].state.terminated | {reason, exitCode, message}' <<<"$OUT"), not OOMKilled" || return
	last_state_says oom "out of memory: .* memory limit of 64.0 MiB"
}

# A module that traps: exit 134, the trap as the termination message (kubectl describe's
# Last State after the restart).
trap_described() {
	local rc=0
	delete_pods trap
	trap_checks || rc=$?
	# Always: its CPU request would keep scale_20's last replica from being scheduled.
	delete_pods trap
	return "$rc"
}

trap_checks() {
	apply_pod "$(pod trap "$TRAP" '[]')" || return
	wait_pod trap '.status.containerStatuses[0].lastState.terminated != null' "restarted after its trap" || return
	[[ $(jq '.status.containerStatuses[0].lastState.terminated.exitCode' <<<"$OUT") == 134 ]] ||
		why "last exit code $(jq '.status.containerStatuses[0].lastState.terminated.exitCode' <<<"$OUT"), want 134" || return
	# (Its log is the CRI suite's: `logs --previous` races the next restart's clean-up.)
	last_state_says trap "trapped: .*unreachable"
}

# last_state_says POD REGEX: the message kubelet read from the container's termination
# message file (the last termination's, else the current one's), its lines joined, matches,
# and kubectl describe shows it.
last_state_says() {
	local message
	pod_json "$1" || return
	message=$(jq -r '.status.containerStatuses[0] | (.lastState.terminated // .state.terminated).message // ""' <<<"$OUT")
	tr '\n' ' ' <<<"$message" | grep -Eq "$2" || why "pod $1: the termination message is '$message', not /$2/" || return
	k describe pod "$1" || return
	expect_out "${message%%$'\n'*}" "kubectl describe shows the message" || return
	show "kubectl describe pod $1: the container's State and Last State" describe_states "$1"
}

describe_states() { "${KUBECTL[@]}" describe pod "$1" | sed -n '/^    State:/,/^    Ready:/p'; }

# A busy go-http pod with limits.cpu 500m under wrk, next to the same program built natively
# under runc with the same limits: the CPU each uses, from its container's cgroup files, stays
# at the limit, and kubelet's stats/summary (what metrics-server and the HPA read) shows each
# container's CPU and memory. Host node only: wrk runs where the pod IPs are, and the cgroup
# files read are v1's (cpuacct.usage).
stats_under_load() {
	local rc=0
	delete_pods busy busy-native
	stats_checks || rc=$?
	delete_pods busy busy-native
	return "$rc"
}

stats_checks() {
	local name
	apply_pod "$(pod busy "$GO_HTTP" '[]')" || return
	apply_pod "$(pod busy-native "$GO_HTTP_NATIVE" '[]' | sed '/runtimeClassName/d')" || return
	for name in busy busy-native; do
		wait_pod "$name" '.status.containerStatuses[0].ready == true' ready || return
	done
	for name in busy busy-native; do
		load_figures "$name" || return
	done
}

# load_figures POD: 10 s of wrk on the pod's IP; its container's CPU over that time from the
# cgroup files (at most the 500m limit, and busy), then what stats/summary says of it once
# kubelet's stats have caught up with the load.
load_figures() {
	local ip id dir u0 u1 t0 t1 rps cores stats i
	pod_json "$1" || return
	ip=$(jq -r .status.podIP <<<"$OUT")
	id=$(jq -r '.status.containerStatuses[0].containerID | sub("^[a-z]+://"; "")' <<<"$OUT")
	dir=$(find /sys/fs/cgroup/cpuacct/ -type d -name "$id" | head -n1)
	[[ -n $dir ]] || why "pod $1: no cpuacct cgroup of its container $id" || return
	u0=$(<"$dir/cpuacct.usage") t0=$(date +%s%N)
	run_cmd wrk -t2 -c32 -d10s "http://$ip:8080/"
	u1=$(<"$dir/cpuacct.usage") t1=$(date +%s%N)
	((RC == 0)) || why "wrk against pod $1 ($ip) failed: $ERR" || return
	rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$OUT")
	cores=$(awk -v u="$((u1 - u0))" -v t="$((t1 - t0))" 'BEGIN { printf "%.2f", u / t }')
	awk -v c="$cores" 'BEGIN { exit !(c <= 0.55) }' || why "pod $1 used $cores cores under wrk, past its 500m limit" || return
	awk -v c="$cores" 'BEGIN { exit !(c >= 0.05) }' || why "pod $1 used only $cores cores under wrk: not busy" || return
	for ((i = 0; i < 30; i++)); do
		stats=$(container_stats "$1") || return
		(($(jq .cpu <<<"$stats") >= u1)) && break
		sleep 2
	done
	(($(jq .cpu <<<"$stats") >= u1)) || why "pod $1: stats/summary's CPU $(jq .cpu <<<"$stats") ns is behind its cgroup's $u1 ns after 60 s" || return
	(($(jq .memory <<<"$stats") > 0)) || why "pod $1: stats/summary shows no container memory: $stats" || return
	note "$1: $rps req/s at $cores cores (cgroup cpuacct.usage, limit 0.5); stats/summary: container CPU $(jq .cpu <<<"$stats") ns, working set $(jq .memory <<<"$stats") B, pod working set $(jq .pod_memory <<<"$stats") B"
}

# container_stats POD: {cpu (ns), memory (working set bytes), pod_memory} of the pod's first
# container in kubelet's stats/summary.
container_stats() {
	"${KUBECTL[@]}" get --raw "/api/v1/nodes/$NODE/proxy/stats/summary" |
		jq -ce --arg pod "$1" '.pods[] | select(.podRef.name == $pod) | {cpu: (.containers[0].cpu.usageCoreNanoSeconds // 0), memory: (.containers[0].memory.workingSetBytes // 0), pod_memory: (.memory.workingSetBytes // 0)}'
}

# What pods leave on the node, one "kind what" line each. The VM: cgroups below kubepods.slice,
# shims (one line each), containerd and kubelet mounts, network namespaces, veths. The host
# node: host-node.sh inventory (the same kinds, plus the shims' child processes and runc state).
inventory() {
	if [[ $NODE_KIND == host ]]; then
		"$HN" inventory
		return
	fi
	# shellcheck disable=SC2016 # expanded on the node
	on_node '
		find /sys/fs/cgroup/kubepods.slice -type d | sed "s|^|cgroup |"
		for p in $(pgrep -f "^/usr/local/bin/containerd-shim"); do echo "shim $(tr "\0" " " </proc/$p/cmdline | cut -d" " -f1)"; done
		awk "\$5 ~ \"^/(run/containerd|var/lib/kubelet|run/netns)/\" { print \"mount \" \$5 }" /proc/self/mountinfo
		ls /run/netns 2>/dev/null | sed "s/^/netns /"
		ip -o link show type veth | awk -F": " "{ print \"veth \" \$2 }" | cut -d@ -f1'
}

# listing INVENTORY: the inventory for the log, short: cgroups counted per hierarchy, ids and
# pod UIDs as ID and UID, equal lines counted.
listing() {
	awk '$1 == "cgroup" { split($2, p, "/"); n[p[5]]++; next } { print } END { for (h in n) printf "cgroup (%d dirs below kubepods in %s)\n", n[h], h }' <<<"$1" |
		sed -E 's/[0-9a-f]{64}/ID/g; s/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/UID/g; s/(veth|cni-)[0-9a-f-]+/\1X/g; s/(kube-api-access-)[a-z0-9]+/\1X/g' |
		sort | uniq -c | sed -E 's/^ *([0-9]+) /\1x /'
}

# counts KIND: of an inventory in OUT, per kind.
counts() { awk '{ n[$1]++ } END { for (k in n) printf "%s=%d ", k, n[k] }' <<<"$1" | tr ' ' '\n' | sort | tr '\n' ' '; }

# An inventory with the ids taken out, sorted: comparable across pods.
normalized() { sed 's/pod[0-9a-f_-]\{36\}/podUID/g; s/[0-9a-f]\{12,\}/ID/g' <<<"$1" | sort; }

scale_20() {
	local before after i
	k rollout status deployment/go-http --timeout=${POD_WAIT}s || return
	before=$(inventory) || why "inventory on the node failed" || return
	k scale deployment/go-http --replicas=20 || return
	k rollout status deployment/go-http --timeout=300s || unready_story || return
	k get pods -l app.kubernetes.io/name=go-http -o json || return
	[[ $(jq '[.items[] | select(.status.phase == "Running")] | length' <<<"$OUT") == 20 ]] || why "not 20 go-http pods Running" || return
	show "kubectl get pods -o wide (20 replicas)" "${KUBECTL[@]}" get pods -o wide
	note "with 20 replicas: $(counts "$(inventory)")"
	k scale deployment/go-http --replicas=2 || return
	for ((i = 0; i < 60; i++)); do
		[[ $("${KUBECTL[@]}" get pods -l app.kubernetes.io/name=go-http -o name | wc -l) == 2 ]] && break
		sleep 2
	done
	# What the node has after that it did not have before (an earlier case's pod that kubelet
	# collects meanwhile may go: that is not a leftover).
	for ((i = 0; i < 30; i++)); do
		after=$(inventory)
		[[ -z $(comm -13 <(normalized "$before") <(normalized "$after")) ]] && break
		sleep 2
	done
	note "before: $(counts "$before")"
	note "after:  $(counts "$after")"
	show "node inventory before scaling (2 replicas)" listing "$before"
	show "node inventory after scaling back to 2" listing "$after"
	OUT=$(comm -13 <(normalized "$before") <(normalized "$after")) CMD="what the node has after scaling back and did not have before"
	[[ -z $OUT ]] || why "the node kept more than before: $(counts "$after") vs $(counts "$before")"
}

uninstall() {
	local sum
	flow_uninstall || return
	sum=$(on_node sha256sum /etc/containerd/config.toml | cut -d' ' -f1)
	[[ $sum == "$CONFIG_SUM" ]] || why "the node's containerd config differs from the one before the install"
}

vm_gone() {
	local p
	run "$VMSH" down || return
	run "$VMSH" leftovers || why "left behind: $OUT" || return
	for p in $VM_PORTS; do
		! ss -Hltn "sport = :$p" | grep -q . || why "127.0.0.1:$p still listens" || return
	done
	CLUSTER=0
}

# case_ [vm|host] NAME FUNC: a Kubernetes case, run only on a cluster that came up (else it fails:
# the product is not shown to work). With a node kind: that node's own case, skipped on the
# other with the reason the other is not used.
case_() {
	local kind=''
	if [[ $1 == vm || $1 == host ]]; then
		kind=$1
		shift
	fi
	if [[ -n $kind && -n $NODE_KIND && $kind != "$NODE_KIND" ]]; then
		if [[ $kind == vm ]]; then skip "$1" "$NO_VM"; else skip "$1" "$NO_HOST"; fi
	elif ((CLUSTER)); then
		check "$@"
	else
		fail "$1" "no cluster (set-up failed above)"
	fi
}

# step vm|host NAME FUNC: a set-up step of that node kind (skipped on the other, as case_).
step() {
	local kind=$1
	shift
	if [[ -n $NODE_KIND && $kind != "$NODE_KIND" ]]; then
		if [[ $kind == vm ]]; then skip "$1" "$NO_VM"; else skip "$1" "$NO_HOST"; fi
		return 0
	fi
	check "$@"
}

started=$SECONDS
OOM_DESCRIBE=0 CONFIG_SUM='' HN_WORK='' HN_CTR=''
kvm_cheap
if check "prerequisites: containerd $(sed -n 's/^readonly CTRD2_VERSION=\([0-9.]*\).*/\1/p' "$H"), docker-registry, jq, wrk$([[ $NODE_KIND == host ]] || echo ', qemu, debootstrap')" prerequisites &&
	check "build the product (cargo build --release --workspace) and the installer image" build_product &&
	check "build Kubernetes (kube binary: etcd, apiserver, controller-manager, scheduler, kubelet, kube-proxy, kubectl)" build_kube &&
	step vm "node VM image (Debian 12, systemd, containerd 2.x, runc, CNI bridge)" build_image &&
	check "node: the VM where KVM boots its kernel, else the host node" choose_node &&
	check "registry on 127.0.0.1:$REG_PORT: installer image, go-http, go-hello (fabricks push/build --push), busybox" registry; then
	step vm "VM boots, control plane and kubelet come up, node Ready" cluster_up
	step host "host node: etcd, kube-apiserver, controller-manager, scheduler on loopback, kubelet on containerd 2.x CRI; node Ready" host_up
fi
case_ vm "node: cgroup v2 (cgroup2fs), kubelet cgroupDriver systemd" node_facts
case_ host "host node: cgroup v1, kubelet cgroupDriver cgroupfs (failCgroupV1 false)" host_facts
case_ vm "helm install: the DaemonSet edits the node's containerd config, systemd restarts containerd, node labelled" install_chart
case_ host "helm install: RuntimeClass fabricks (installer DaemonSet on no node: no systemd here), the handler in containerd's config, node labelled" host_chart
case_ "kubectl apply -k examples (go-http Deployment + Service, go-hello Job)" examples_applied
case_ "go-hello Job completes; kubectl logs shows its greeting" hello_job
case_ "go-http Deployment Ready through its readiness probe" http_ready
case_ "go-http serves through kubectl port-forward (Service)" http_port_forward
case_ "go-http answers another pod (runc busybox) by pod IP" http_pod_ip
case_ "go-http's process: no capabilities, no_new_privs, a seccomp filter (/proc/PID/status)" runner_confined
case_ "a failing liveness probe restarts the container (restartCount rises)" liveness_restarts
case_ "a crashing container is restarted with back-off (kubelet's BackOff event, exit 3)" crash_backoff
case_ "kubectl delete stops a running pod with SIGTERM within its grace period" graceful_delete
case_ "a pod past its memory limit shows OOMKilled, and why in its termination message" oom_killed
case_ "a trapping pod: exit 134, the trap in its termination message (describe: Last State)" trap_described
if ((OOM_DESCRIBE && CLUSTER)); then show "kubectl describe pod oom" "${KUBECTL[@]}" describe pod oom; fi
case_ host "a busy go-http pod (limits.cpu 500m) and the same program under runc: CPU at the limit, stats/summary shows CPU and memory" stats_under_load
case_ "scale go-http to 20 replicas and back: nothing left on the node" scale_20
if ((CLUSTER)); then
	show "kubectl get pods -A -o wide (before uninstall)" "${KUBECTL[@]}" get pods -A -o wide
	delete_pods -l fabricks.io/test=e2e-k8s
fi
case_ vm "uninstall=true restores the node's config byte for byte, shim gone; helm uninstall" uninstall
case_ host "helm uninstall: RuntimeClass and DaemonSet gone, node label removed" host_uninstall
if ((!KEEP_UP)); then
	if ((CLUSTER)) || [[ $NODE_KIND == host ]]; then
		step vm "VM powered off: no qemu, no run dir, no forwarded port" vm_gone
		step host "host node down: no process, mount, netns, veth, cgroup, host path, sysctl or iptables change left" host_gone
	fi
	"$HERE/registry.sh" down >/dev/null 2>&1
fi
echo "# e2e-k8s: $((SECONDS - started)) s"
summary
((failed == 0))
