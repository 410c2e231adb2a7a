#!/usr/bin/env bash
# A single-node Kubernetes cluster on this host, for machines where the node VM (vm/) cannot run
# (no usable KVM): etcd, kube-apiserver, kube-controller-manager and kube-scheduler on loopback,
# and a kubelet (cgroupfs driver; cgroup v1 allowed) on the harness's containerd 2.x CRI
# (`harness.sh up 2 --cri`: CNI bridge, the fabricks runtime handler), all from the kube binary
# vm/k8s.sh builds. There is no systemd here: each component runs in the background with its
# state in $FABRICKS_HOSTNODE_DIR, and `down` stops exactly what `up` started and removes what
# it left (pods, mounts, cgroups, the few host paths kubelet insists on, the kernel settings it
# changes). Run without arguments for usage.
# -E: the ERR trap of `up` (tear down what started) also fires in the functions it calls.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
S=$(realpath -m "${FABRICKS_HOSTNODE_DIR:-/tmp/fabricks-hostnode}")
# The harness's containerd lives in $S/h/2; its own bridge and subnet (FABRICKS_NET_ID) keep it
# apart from the other suites' harnesses.
export FABRICKS_HARNESS_DIR=$S/h FABRICKS_NET_ID=${FABRICKS_HOSTNODE_NET_ID:-57}
H=$HERE/harness.sh
W=$S/h/2
SOCK=$W/containerd.sock
readonly NODE=fabricks-host SERVICE_CIDR=10.96.0.0/12 API_SERVICE_IP=10.96.0.1
# Pods' cgroups: <root>/kubepods/... in every hierarchy (its own root, so nothing of another
# kubelet or harness is ever counted or removed).
CGROOT=fabricks-hostnode-$FABRICKS_NET_ID
# What kubelet sets at start-up (setupKernelTunables) and down restores.
readonly SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Host paths kubelet uses whatever its --root-dir: the device-plugin socket and checkpoint, the
# legacy log symlinks.
readonly DEVICE_PLUGINS=/var/lib/kubelet/device-plugins CONTAINER_LOGS=/var/log/containers
readonly COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet)

usage() {
	cat <<EOF
usage: $0 COMMAND
  up          start the harness's containerd 2.x with CRI, then etcd, kube-apiserver,
              kube-controller-manager, kube-scheduler and kubelet; wait for the node to be Ready
              \$FABRICKS_HOSTNODE_REGISTRY=127.0.0.1:PORT: pods pull localhost:PORT/... from there
  env         shell exports: KUBECONFIG, FABRICKS_KUBE (the kube binary), and the harness's
  kubectl ARGS  kubectl (the kube binary) on the admin kubeconfig
  inventory   what pods leave on the node, one "kind what" line each (cgroup, shim, proc, mount,
              netns, veth, runc)
  down        stop everything up started; remove pods, mounts, cgroups, state (keeps logs/)
  leftovers   print what down should have removed and did not; exit 1 if anything
state: $S (logs in $S/logs)
EOF
	exit 2
}

die() {
	echo "host-node: $*" >&2
	exit 1
}
log() { echo "host-node: $*" >&2; }

kube_bin() { "$HERE/vm/k8s.sh" build; }

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port() { awk -v n="$1" '$1 == n { print $2 }' "$S/ports"; }

# --- processes ----------------------------------------------------------------------------

# pid_of NAME: the recorded pid of component NAME, if that process still is ours (its command
# line names the component and this state dir).
pid_of() {
	local pid cmd
	pid=$(cat "$S/run/$1.pid" 2>/dev/null) || return 1
	cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
	[[ $cmd == *" $1 "* && $cmd == *"$S/"* ]] && echo "$pid"
}

# start NAME ARGS...: the kube binary as component NAME in its own session, logging to logs/.
start() {
	local name=$1
	shift
	# shellcheck disable=SC2016 # $$ is the inner sh's
	setsid sh -c 'echo $$ >"$0"; exec "$@"' "$S/run/$name.pid" "$KUBE" "$name" "$@" \
		</dev/null >>"$S/logs/$name.log" 2>&1 &
}

# stop NAME: SIGTERM, then SIGKILL 15 s later.
stop() {
	local pid _
	pid=$(pid_of "$1") || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in {1..75}; do
		[[ -d /proc/$pid ]] || return 0
		sleep 0.2
	done
	log "$1 (pid $pid) ignored SIGTERM for 15 s: killing it"
	kill -KILL "$pid" 2>/dev/null || true
	sleep 0.5
}

# wait_for WHAT SECONDS CMD...: polls CMD until it succeeds; fails with the component's log.
wait_for() {
	local what=$1 n=$2 i
	shift 2
	for ((i = 0; i < n * 2; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	log "$what: not ready after $n s"
	return 1
}

kctl() { "$KUBE" kubectl --kubeconfig "$S/kubeconfig" "$@"; }

node_ready() { [[ $(kctl get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]; }

# --- set-up -------------------------------------------------------------------------------

# Another kubelet on this host would share the device-plugin socket with ours.
no_other_kubelet() {
	local p cmd
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		if [[ $cmd == *" kubelet --config"* || $cmd == kubelet\ * ]] && [[ $cmd != *"$S/"* ]]; then
			die "another kubelet runs here (pid ${p#/proc/}: ${cmd:0:120}); one host node per machine"
		fi
	done
	[[ ! -e $DEVICE_PLUGINS/kubelet.sock ]] || die "$DEVICE_PLUGINS/kubelet.sock exists: another kubelet's (or a crashed run's: remove it)"
}

# Records host paths that do not exist yet, so down removes exactly those.
note_created() {
	local d
	for d; do
		if [[ ! -e $d ]]; then echo "$d" >>"$S/created"; fi
	done
}

# The pods' cgroup root in every hierarchy (kubelet refuses a cgroupRoot that does not exist);
# cpuset needs its cpus and mems before anything can join.
cgroup_root() {
	local m
	for m in $(cgroup_mounts); do
		mkdir -p "$m/$CGROOT"
		if [[ -e $m/$CGROOT/cpuset.cpus ]]; then
			cat "$m/cpuset.cpus" >"$m/$CGROOT/cpuset.cpus"
			cat "$m/cpuset.mems" >"$m/$CGROOT/cpuset.mems"
		fi
	done
}

cgroup_mounts() { awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts; }

# The bridge's gateway address (the harness's CNI conflist) is the node's IP: kubelet refuses
# loopback, and the address must exist before the first pod (the bridge plugin adds it then).
node_ip() {
	local gw bridge
	gw=$(jq -r '.plugins[0].ipam.ranges[0][0].gateway' "$W"/cni/conf/*.conflist)
	bridge=$(jq -r '.plugins[0].bridge' "$W"/cni/conf/*.conflist)
	[[ $gw =~ ^[0-9.]+$ && -n $bridge ]] || die "no gateway/bridge in the harness's CNI config"
	if ! ip -4 -o addr show dev "$bridge" | grep -qF " $gw/"; then
		ip addr add "$gw/24" dev "$bridge"
	fi
	ip link set "$bridge" up
	echo "$gw"
}

# Pods name their images localhost:PORT/... (as on kind): the CRI maps that to the registry.
registry_hosts() {
	local reg=${FABRICKS_HOSTNODE_REGISTRY:-} d
	[[ -n $reg ]] || return 0
	d=$W/certs.d/localhost:${reg##*:}
	mkdir -p "$d"
	printf 'server = "http://%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$reg" "$reg" >"$d/hosts.toml"
}

pki() {
	local ip=$1 n
	PKI=$S/pki
	pki_ca fabricks-hostnode-ca
	pki_cert apiserver kube-apiserver '' \
		"DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:$API_SERVICE_IP,IP:127.0.0.1"
	pki_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
	pki_cert admin kubernetes-admin system:masters
	pki_cert controller-manager system:kube-controller-manager
	pki_cert scheduler system:kube-scheduler
	pki_cert kubelet "system:node:$NODE" system:nodes
	# The apiserver checks the kubelet's serving certificate against the CA.
	pki_cert kubelet-serving "$NODE" '' "DNS:$NODE,IP:$ip"
	for n in admin controller-manager scheduler kubelet; do
		pki_kubeconfig fabricks-hostnode "$n" "https://127.0.0.1:$(port kube-apiserver)" >"$S/etc/$n.conf"
	done
	cp "$S/etc/admin.conf" "$S/kubeconfig"
}

kubelet_config() {
	cat <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host: cgroup v1 (Kubernetes 1.35 refuses it unless told), no systemd.
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: /$CGROOT
containerRuntimeEndpoint: unix://$SOCK
address: $1
port: $(port kubelet)
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $(port kubelet-healthz)
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $PKI/ca.crt }
authorization: { mode: Webhook }
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: $S/pod-logs
# No iptables chains of kubelet's on a shared host (nothing here needs them).
makeIPTablesUtilChains: false
serializeImagePulls: false
# A shared disk: eviction and image GC must not start because other work fills it.
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
evictionHard: { memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1% }
EOF
}

# shellcheck source=lib/kube-pki.sh
source "$HERE/lib/kube-pki.sh"

cmd_up() {
	local t0=$SECONDS ip n sc
	[[ $EUID == 0 ]] || die "needs root (kubelet, cgroups, CNI)"
	KUBE=$(kube_bin) || die "no kube binary (vm/k8s.sh build failed)"
	if pid_of kubelet >/dev/null || pid_of kube-apiserver >/dev/null; then die "a host node already runs in $S: $0 down first"; fi
	[[ ! -e $S/run ]] || cmd_down # a crashed run's remains
	no_other_kubelet
	mkdir -p "$S"/{run,logs,etc,pod-logs,kubelet}
	: >"$S/ports"
	for n in etcd etcd-peer kube-apiserver kubelet kubelet-healthz; do echo "$n $(free_port)" >>"$S/ports"; done
	for sc in "${SYSCTLS[@]}"; do echo "$sc $(sysctl -n "$sc")"; done >"$S/sysctl.before"
	: >"$S/created"
	note_created /var/lib/kubelet "$DEVICE_PLUGINS" "$CONTAINER_LOGS"
	trap 'log "start-up failed; logs in $S/logs"; cmd_down' ERR
	env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$H" up 2 --cri
	registry_hosts
	ip=$(node_ip)
	pki "$ip"
	cgroup_root
	start etcd --name "$NODE" --data-dir "$S/etcd" \
		--listen-client-urls "http://127.0.0.1:$(port etcd)" --advertise-client-urls "http://127.0.0.1:$(port etcd)" \
		--listen-peer-urls "http://127.0.0.1:$(port etcd-peer)" --initial-advertise-peer-urls "http://127.0.0.1:$(port etcd-peer)" \
		--initial-cluster "$NODE=http://127.0.0.1:$(port etcd-peer)" --unsafe-no-fsync --log-level warn
	wait_for etcd 60 curl -fsS "http://127.0.0.1:$(port etcd)/health"
	# No endpoint reconciler: the `kubernetes` Service would point at a loopback address, which
	# Endpoints refuse (nothing here goes through Services: no kube-proxy).
	start kube-apiserver --etcd-servers="http://127.0.0.1:$(port etcd)" --bind-address=127.0.0.1 \
		--advertise-address=127.0.0.1 --secure-port="$(port kube-apiserver)" --endpoint-reconciler-type=none \
		--service-cluster-ip-range=$SERVICE_CIDR --allow-privileged=true \
		--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
		--client-ca-file="$PKI/ca.crt" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key"
	wait_for kube-apiserver 180 kctl get --raw /readyz
	# --secure-port=0: neither serves anything (loopback-only, no port to collide on).
	start kube-controller-manager --kubeconfig="$S/etc/controller-manager.conf" --secure-port=0 \
		--leader-elect=false --use-service-account-credentials=true \
		--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" --root-ca-file="$PKI/ca.crt" \
		--service-account-private-key-file="$PKI/sa.key" --service-cluster-ip-range=$SERVICE_CIDR
	start kube-scheduler --kubeconfig="$S/etc/scheduler.conf" --secure-port=0 --leader-elect=false
	kubelet_config "$ip" >"$S/etc/kubelet.yaml"
	start kubelet --config="$S/etc/kubelet.yaml" --kubeconfig="$S/etc/kubelet.conf" --root-dir="$S/kubelet" \
		--cert-dir="$S/kubelet/pki" --volume-plugin-dir="$S/volume-plugins" \
		--hostname-override=$NODE --node-ip="$ip"
	wait_for "node $NODE Ready" 180 node_ready
	# Pods need their namespace's service account (the controller-manager makes it).
	wait_for "service account default/default" 60 kctl get serviceaccount default
	trap - ERR
	log "node $NODE Ready on $ip in $((SECONDS - t0)) s (kubeconfig $S/kubeconfig)"
}

# --- what pods leave ----------------------------------------------------------------------

# Our shims: containerd-shim-* serving our containerd's socket.
our_shims() {
	local p cmd a0
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		a0=${cmd%% *}
		if [[ ${a0##*/} == containerd-shim-* && $cmd == *" -address $SOCK "* ]]; then echo "${p#/proc/}"; fi
	done
}

our_container_ids() {
	[[ -S $SOCK ]] || return 0
	CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=1 "$H" ctr 2 -n k8s.io containers ls -q 2>/dev/null || true
}

cmd_inventory() {
	local m p c id r bridge
	for m in $(cgroup_mounts); do
		if [[ -d $m/$CGROOT/kubepods ]]; then find "$m/$CGROOT/kubepods" -mindepth 1 -type d | sed 's/^/cgroup /'; fi
	done
	for p in $(our_shims); do
		echo "shim $(basename "$(tr '\0' ' ' </proc/"$p"/cmdline | cut -d' ' -f1)")"
		# What the shim runs as processes: runc's pause, the compiler, native entrypoints.
		for c in $(pgrep -P "$p"); do echo "proc $(cat /proc/"$c"/comm 2>/dev/null)"; done
	done
	awk -v s="$S/" 'index($5, s) == 1 { print ($9 == "nsfs" ? "netns " : "mount ") $5 }' /proc/self/mountinfo
	bridge=$(jq -r '.plugins[0].bridge' "$W"/cni/conf/*.conflist 2>/dev/null) || bridge=''
	if [[ -n $bridge ]]; then
		ip -o link show master "$bridge" 2>/dev/null | awk -F': ' '{ print "veth " $2 }' | cut -d@ -f1
	fi
	for id in $(our_container_ids); do
		for r in /run/containerd/runc /run/containerd/fabricks/runc; do
			if [[ -e $r/k8s.io/$id ]]; then echo "runc $r/k8s.io/$id"; fi
		done
	done
}

# --- tear-down ----------------------------------------------------------------------------

# Processes still in our pods' cgroups (after the harness stopped their shims there should be
# none), killed before the cgroups are removed.
cgroup_procs() {
	local m
	for m in $(cgroup_mounts); do
		if [[ -d $m/$CGROOT ]]; then find "$m/$CGROOT" -name cgroup.procs -exec cat {} + 2>/dev/null; fi
	done | sort -un
}

remove_cgroups() {
	local m pids
	pids=$(cgroup_procs)
	# shellcheck disable=SC2086 # one pid per word
	if [[ -n $pids ]]; then
		log "killing processes left in the pods' cgroups: ${pids//$'\n'/ }"
		kill -KILL $pids 2>/dev/null || true
		sleep 0.5
	fi
	for m in $(cgroup_mounts); do
		if [[ -d $m/$CGROOT ]]; then find "$m/$CGROOT" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
	done
}

# Host paths kubelet wrote outside the state dir: its log symlinks into our pod logs, the
# device-plugin socket and checkpoint; directories only if up found them missing.
remove_host_paths() {
	local l d
	for l in "$CONTAINER_LOGS"/*; do
		if [[ -L $l && $(readlink "$l") == "$S/"* ]]; then rm -f "$l"; fi
	done
	if grep -qxF "$DEVICE_PLUGINS" "$S/created" 2>/dev/null; then
		rm -f "$DEVICE_PLUGINS/kubelet.sock" "$DEVICE_PLUGINS/kubelet_internal_checkpoint"
	fi
	if [[ -f $S/created ]]; then
		tac "$S/created" | while read -r d; do rmdir "$d" 2>/dev/null || true; done
	fi
}

restore_sysctls() {
	local sc v
	[[ -f $S/sysctl.before ]] || return 0
	while read -r sc v; do
		[[ $(sysctl -n "$sc") == "$v" ]] || sysctl -q -w "$sc=$v" >/dev/null
	done <"$S/sysctl.before"
}

our_mounts() { awk -v s="$S/" 'index($5, s) == 1 { print $5 }' /proc/self/mountinfo | sort -r; }

cmd_down() {
	local m
	[[ -d $S ]] || return 0
	trap - ERR
	# kubelet first, so it does not restart what the harness stops; the harness then stops and
	# removes every pod through CRI (CNI gives back addresses and veths), its shims and mounts.
	stop kubelet
	env -u RUST_BACKTRACE "$H" down 2 || log "harness.sh down 2 failed"
	for m in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$m"; done
	for m in $(our_mounts); do umount "$m" 2>/dev/null || umount -l "$m"; done
	remove_cgroups
	remove_host_paths
	restore_sysctls
	[[ -z $(our_mounts) ]] || die "still mounted, not removing $S: $(our_mounts | tr '\n' ' ')"
	# The harness keeps its containerd.log and container list in h/ (its leftovers reads the list).
	find "$S" -mindepth 1 -maxdepth 1 ! -name logs ! -name h -exec rm -rf {} +
}

cmd_leftovers() {
	local out m c sc v
	out=$(
		for c in "${COMPONENTS[@]}"; do
			if m=$(pid_of "$c"); then echo "$c pid $m"; fi
		done
		"$H" leftovers 2 2>&1 || true
		our_mounts | sed 's/^/mount /'
		for m in $(cgroup_mounts); do
			if [[ -d $m/$CGROOT ]]; then echo "cgroup $m/$CGROOT"; fi
		done
		for m in "$CONTAINER_LOGS"/*; do
			if [[ -L $m && $(readlink "$m") == "$S/"* ]]; then echo "log symlink $m"; fi
		done
		if [[ -f $S/created ]]; then
			while read -r m; do if [[ -e $m ]]; then echo "host path $m"; fi; done <"$S/created"
		fi
		if [[ -f $S/sysctl.before ]]; then
			while read -r sc v; do
				[[ $(sysctl -n "$sc") == "$v" ]] || echo "sysctl $sc=$(sysctl -n "$sc") (was $v)"
			done <"$S/sysctl.before"
		fi
		for m in "$S"/*; do
			case ${m##*/} in logs | '*') ;; h) [[ -z $(find "$m" -mindepth 2 ! -name containerd.log ! -name containers -print -quit) ]] || echo "state $m" ;; *) echo "state $m" ;; esac
		done
	)
	[[ -z $out ]] || {
		echo "$out"
		return 1
	}
}

cmd_env() {
	echo "export KUBECONFIG=$S/kubeconfig"
	echo "export FABRICKS_KUBE=$(kube_bin)"
	"$H" env 2
}

cmd=${1:-}
[[ -n $cmd ]] || usage
shift
case $cmd in
up) cmd_up ;;
down) cmd_down ;;
env) cmd_env ;;
kubectl)
	KUBE=$(kube_bin)
	kctl "$@"
	;;
inventory) cmd_inventory ;;
leftovers) cmd_leftovers ;;
*) usage ;;
esac
