#!/usr/bin/env bash
# A private containerd (Debian's 1.6 or a pinned 2.x built from source) for Fabricks tests.
# Run without arguments for usage.
set -euo pipefail

# Newest 2.x that `go install`s cleanly here (no replace directives; needs go >= 1.26.6).
readonly CTRD2_VERSION=2.4.2
readonly CTRD2_CMDS=(containerd ctr containerd-shim-runc-v2)
readonly SHIM_NAME=containerd-shim-fabricks-v1
# CRI (`up --cri`): the sandbox image (built by pause-image, imported into k8s.io at up), the
# namespace CRI always uses, where Debian's containernetworking-plugins put the CNI plugins.
readonly CRI_IMAGE=localhost/fabricks/pause:3 CRI_NS=k8s.io CNI_BIN=/usr/lib/cni
# libcni's result cache: not configurable through containerd, so shared with the host.
readonly CNI_CACHE=/var/lib/cni/results
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
TOOLS=${FABRICKS_TOOLS:-$HOME/.cache/fabricks/tools}
# Normalised, because shims are matched by the exact socket path containerd hands them.
BASE=$(realpath -m "${FABRICKS_HARNESS_DIR:-/tmp/fabricks-harness}")
SHIM=${FABRICKS_SHIM:-$REPO/target/release/$SHIM_NAME}

usage() {
	cat <<EOF
usage: $0 COMMAND [1.6|2] [ARGS...]      (flavour defaults to \${FABRICKS_FLAVOUR:-1.6})
  install [1.6|2|all]    apt packages; for 2 also build containerd $CTRD2_VERSION into $TOOLS
  up [--cri]             start the private containerd in \$FABRICKS_HARNESS_DIR/<flavour>;
                         --cri: with its CRI plugin, CNI bridge and the pause image in k8s.io
                         \$FABRICKS_HARNESS_CONFIG: run with that config file instead
  install-shim           recopy \$FABRICKS_SHIM into its opt/bin
  ctr ARGS...            that flavour's ctr on the private socket (namespace fabricks-<flavour>
                         unless -n or \$CONTAINERD_NAMESPACE says otherwise)
  crictl ARGS...         a CRI client on the private socket (test-cluster/cri; crictl-like
                         commands: runp, create, start, inspectp, logs, stopp, rmp, pull, ps…)
  env                    shell exports for other clients (CONTAINERD_ADDRESS, ...)
  down                   kill its tasks, stop it, unmount and remove its state (keeps containerd.log)
  leftovers              print processes/mounts/cgroups/state/cache temp files of ours still present; exit 1 if any
  pause-image OUT.tar [REF]   static native pause as an OCI archive (default localhost/fabricks/pause:3)
EOF
	exit 2
}

die() {
	echo "harness: $*" >&2
	exit 1
}

# Runs a command silently; its output is shown only when it fails.
quiet() {
	local log rc=0
	log=$(mktemp)
	"$@" >"$log" 2>&1 || rc=$?
	((rc == 0)) || cat "$log" >&2
	rm -f "$log"
	return "$rc"
}

flavour() {
	F=$1
	W=$BASE/$F
	SOCK=$W/containerd.sock
	NS=fabricks-$F # per flavour: both containerds share /run/containerd/runc/<ns>/<id>
	if [[ $F == 2 ]]; then BIN=$TOOLS/containerd-$CTRD2_VERSION/bin; else BIN=/usr/bin; fi
	# CNI for `up --cri`: one bridge and one /24 per flavour, so both flavours can run at once
	# (but only one harness dir per flavour with CRI: the bridge carries its owner's $W).
	# $FABRICKS_NET_ID (1-60) moves both to their own bridge and subnet, for a second harness dir.
	local id=${FABRICKS_NET_ID:-0}
	if ! [[ $id =~ ^[0-9]+$ ]] || ((id > 60)); then die "FABRICKS_NET_ID must be a number from 0 to 60"; fi
	if [[ $F == 2 ]]; then BRIDGE=fbr2 SUBNET=10.244.$((78 + 2 * id)); else BRIDGE=fbr16 SUBNET=10.244.$((77 + 2 * id)); fi
	CNI_NET=fabricks-$F
	# Also the namespace: every containerd here shares /run/containerd/runc/<ns>/<id>.
	if ((id > 0)); then BRIDGE=$BRIDGE-$id NS=$NS-$id CNI_NET=$CNI_NET-$id; fi
}

# 2.x's ctr warns on every call that cgroup v1 is deprecated: true of the host, noise in tests.
c() {
	CONTAINERD_NAMESPACE=${CONTAINERD_NAMESPACE:-$NS} \
		CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=${CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS:-1} \
		"$BIN/ctr" --address "$SOCK" "$@"
}

# Prints the recorded containerd pid if that process is still the one we started.
our_pid() {
	local pid cmd
	pid=$(cat "$W/containerd.pid" 2>/dev/null) || return 1
	cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
	[[ $cmd == *"--config $W/config.toml "* ]] && echo "$pid"
}

our_shims() {
	local p cmd a0
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		a0=${cmd%% *}
		if [[ ${a0##*/} == containerd-shim-* && $cmd == *" -address $SOCK "* ]]; then echo "${p#/proc/}"; fi
	done
}

# "ns id" of every container we know of: from containerd while it answers, else from the task
# bundles and shims it left, and from what earlier calls recorded.
known_containers() {
	local ns id d p
	if our_pid >/dev/null; then
		for ns in $(c namespaces ls -q); do
			for id in $(c -n "$ns" containers ls -q); do echo "$ns $id"; done
		done
	fi
	for d in "$W"/state/io.containerd.runtime.v2.task/*/*/; do
		[[ -d $d ]] || continue
		d=${d%/}
		ns=${d%/*}
		echo "${ns##*/} ${d##*/}"
	done
	for p in $(our_shims); do
		tr '\0' '\n' 2>/dev/null <"/proc/$p/cmdline" | awk '/^-namespace$/ { getline ns } /^-id$/ { getline id } END { if (id != "") print ns, id }'
	done
	cat "$W/containers" 2>/dev/null || true
}

# ctr's stdio fifo dirs that our shims hold open: containerd removes them only when it deletes a task.
our_fifo_dirs() {
	local p l
	for p in $(our_shims); do
		for l in $(readlink /proc/"$p"/fd/* 2>/dev/null); do
			if [[ $l == /run/containerd/fifo/*/* ]]; then echo "${l%/*}"; fi
		done
	done | sort -u
}

# Pids in the cgroups of our containers (ctr's default cgroupsPath is /<ns>/<id>; v1 or v2).
container_procs() {
	local ns id
	while read -r ns id; do
		cat /sys/fs/cgroup/{,*/}"$ns/$id"/cgroup.procs 2>/dev/null || true
	done < <(known_containers | sort -u) | sort -un
}

# Container cgroups (v1 hierarchies or v2) of our namespace, and of our containers in others
# (CRI's k8s.io is shared with other harnesses). Parents (/<ns>) are not garbage: runc keeps them too.
our_cgroups() {
	local d ns id
	for d in /sys/fs/cgroup/{,*/}"$NS"/*/; do
		if [[ -d $d ]]; then echo "${d%/}"; fi
	done
	while read -r ns id; do
		[[ $ns != "$NS" ]] || continue
		for d in /sys/fs/cgroup/{,*/}"$ns/$id"; do
			if [[ -d $d ]]; then echo "$d"; fi
		done
	done < <(known_containers | sort -u)
}

our_namespaces() {
	{
		echo "$NS"
		cut -d' ' -f1 "$W/containers" 2>/dev/null || true
	} | sort -u
}

# Mount points (deepest first) under our work dir, and under /run/containerd for our namespaces.
our_mounts() {
	local ns
	{
		awk -v p="$W/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo
		for ns in $(our_namespaces); do
			awk -v ns="/$ns/" 'index($5, "/run/containerd/") == 1 && index($5, ns) { print $5 }' /proc/self/mountinfo
		done
	} | sort -u
}

apt_install() {
	local p missing=()
	for p; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q ' installed$' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	export DEBIAN_FRONTEND=noninteractive
	quiet apt-get update
	quiet apt-get install -y --no-install-recommends "${missing[@]}"
}

build_containerd2() {
	local bin=$TOOLS/containerd-$CTRD2_VERSION/bin cmd pkgs=()
	for cmd in "${CTRD2_CMDS[@]}"; do [[ -x $bin/$cmd ]] || pkgs+=("github.com/containerd/containerd/v2/cmd/$cmd@v$CTRD2_VERSION"); done
	((${#pkgs[@]})) || return 0
	command -v go >/dev/null || die "building containerd $CTRD2_VERSION needs go (>= 1.21 fetches the go 1.26 it asks for)"
	# Into a scratch dir first, so an interrupted build never looks installed.
	rm -rf "$bin.partial"
	# no_btrfs: the btrfs snapshotter is cgo and useless here.
	quiet env GOBIN="$bin.partial" GOFLAGS=-buildvcs=false go install -tags no_btrfs "${pkgs[@]}"
	mkdir -p "$bin"
	mv "$bin.partial"/* "$bin/"
	rmdir "$bin.partial"
}

# The CRI client (crictl does not install from the module proxy here: see README), built once
# per source version (its module files and non-test sources) into the tools cache.
fcri_bin() {
	local h
	h=$(cd "$HERE/cri" && find . -name '*.go' ! -name '*_test.go' | sort | xargs cat go.mod go.sum | sha256sum | cut -c1-16)
	echo "$TOOLS/fcri-$h/fcri"
}

build_fcri() {
	local bin
	bin=$(fcri_bin)
	[[ -x $bin ]] && return 0
	command -v go >/dev/null || die "building the CRI client needs go"
	mkdir -p "${bin%/*}"
	(cd "$HERE/cri" && quiet env GOFLAGS=-buildvcs=false go build -trimpath -o "$bin.partial" .)
	mv "$bin.partial" "$bin"
}

# fcri ARGS...: the CRI client on our socket (built on first use).
fcri() {
	build_fcri
	"$(fcri_bin)" --runtime-endpoint "unix://$SOCK" "$@"
}

cmd_install() {
	# containernetworking-plugins: CNI for `up --cri`; iputils-ping: the CRI tests ping pod IPs;
	# jq: the suites read `go test -json`.
	local pkgs=(runc gcc libc6-dev musl-tools iproute2 containernetworking-plugins iputils-ping jq)
	case ${1:-all} in
	1.6 | all) pkgs+=(containerd) ;;
	2) ;;
	*) usage ;;
	esac
	apt_install "${pkgs[@]}"
	if [[ ${1:-all} != 1.6 ]]; then build_containerd2; fi
	build_fcri
}

cmd_install_shim() {
	mkdir -p "$W/opt/bin"
	[[ -x $SHIM ]] || {
		echo "harness: no shim at $SHIM: runtime io.containerd.fabricks.v1 unavailable" >&2
		return 0
	}
	# cp then mv: overwriting a binary that running shims execute fails with ETXTBSY.
	cp "$SHIM" "$W/opt/bin/.$SHIM_NAME.new"
	mv "$W/opt/bin/.$SHIM_NAME.new" "$W/opt/bin/$SHIM_NAME"
}

write_config() {
	local version=2 extra='' disabled='"io.containerd.grpc.v1.cri"'
	# A config made by the caller (e2e-install.sh: a node's config as the installer left it); it
	# must use this harness's paths (`env` prints them) and, for `up --cri`, its CNI conf dir.
	if [[ -n ${FABRICKS_HARNESS_CONFIG:-} ]]; then
		cp "$FABRICKS_HARNESS_CONFIG" "$W/config.toml"
		return
	fi
	if [[ $F == 2 ]]; then
		# 3, not 2.4's native 4: 2.4 migrates it (one warning), and older 2.x read it too.
		version=3
		extra="temp = \"$W/tmp\""
		disabled+=', "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images"'
	fi
	if [[ -n $CRI ]]; then disabled=''; fi
	cat >"$W/config.toml" <<EOF
version = $version
root = "$W/root"
state = "$W/state"
$extra
# CRI is off unless \`up --cri\` (it wants a local sandbox image and CNI).
disabled_plugins = [$disabled]

[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"

# containerd prepends <path>/bin to its PATH: a private install of the shim under test.
[plugins."io.containerd.internal.v1.opt"]
  path = "$W/opt"
EOF
	if [[ $F == 2 ]]; then
		# NRI's default socket is the global /var/run/nri/nri.sock.
		printf '[plugins."io.containerd.nri.v1.nri"]\n  socket_path = "%s"\n' "$W/nri.sock" >>"$W/config.toml"
	fi
	if [[ -n $CRI ]]; then
		cri_config >>"$W/config.toml"
		registry_hosts
	fi
}

# CRI pulls from the test registries (registry.sh: a port and the next, with auth) over plain
# HTTP: hosts.toml per registry under the CRI's config_path.
registry_hosts() {
	local port=${FABRICKS_REGISTRY_PORT:-5000} p
	for p in "$port" $((port + 1)); do
		mkdir -p "$W/certs.d/127.0.0.1:$p"
		printf 'server = "http://127.0.0.1:%s"\n\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' \
			"$p" "$p" >"$W/certs.d/127.0.0.1:$p/hosts.toml"
	done
}

# The CRI plugin's settings. Its root and state dirs are containerd's root/state + /<plugin id>;
# netns_mounts_under_state_dir moves pod network namespaces from the global /var/run/netns to
# <cri state>/netns; the stream server (exec/attach/port-forward) listens on loopback only.
# restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, runc cannot lower oom_score_adj.
# The fabricks handler has no `options` table (it would send the shim runtimeoptions on stdin).
cri_config() {
	local p=io.containerd.grpc.v1.cri
	if [[ $F == 2 ]]; then p=io.containerd.cri.v1.runtime; fi
	echo
	if [[ $F == 2 ]]; then
		cat <<EOF
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$CRI_IMAGE"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$W/certs.d"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."$p"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."$p".cni]
    bin_dirs = ["$CNI_BIN"]
EOF
	else
		cat <<EOF
[plugins."$p"]
  sandbox_image = "$CRI_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."$p".registry]
    config_path = "$W/certs.d"
  [plugins."$p".cni]
    bin_dir = "$CNI_BIN"
EOF
	fi
	cat <<EOF
    conf_dir = "$W/cni/conf"
    max_conf_num = 1
  [plugins."$p".containerd]
    default_runtime_name = "runc"
    [plugins."$p".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."$p".containerd.runtimes.fabricks]
      runtime_type = "io.containerd.fabricks.v1"
      pod_annotations = ["fabricks.io/*"]
      container_annotations = ["fabricks.io/*", "io.kubernetes.container.terminationMessagePath"]
EOF
}

# The alias ("fabricks-cri <W> ip_forward=<0|1>") of bridge $1, if it is one of ours.
bridge_alias() {
	local a
	a=$(cat "/sys/class/net/$1/ifalias" 2>/dev/null) || return 1
	[[ $a == "fabricks-cri "* ]] && echo "$a"
}

# Prepares CNI for `up --cri`: the bridge (created here, not by the plugin, to mark it as ours in
# its alias), a bridge + host-local conflist, IPAM state under $W. The bridge plugin with
# isGateway turns on the host's net.ipv4.ip_forward; the alias keeps the value found before the
# first of our bridges existed, and down restores it when it removes the last one.
cni_setup() {
	local a other fwd dev
	[[ -x $CNI_BIN/bridge && -x $CNI_BIN/host-local && -x $CNI_BIN/loopback ]] ||
		die "no CNI plugins in $CNI_BIN: run $0 install"
	if [[ -e /sys/class/net/$BRIDGE ]]; then
		a=$(bridge_alias "$BRIDGE") || a=''
		[[ $a == "fabricks-cri $W "* ]] || die "bridge $BRIDGE exists and is not this harness's (alias: '${a}'): one CRI harness per flavour"
	else
		# Anything else on our /24 (an address or a route not on our bridge) is a collision.
		dev=$( {
			ip -4 -o addr show to "$SUBNET.0/24" | awk '{ print $2 }'
			ip -4 route show match "$SUBNET.0/24" | awk '$1 != "default" { print $3 }'
			ip -4 route show root "$SUBNET.0/24" | awk '{ print $3 }'
		} | grep -vx "$BRIDGE" | head -n1) || true
		[[ -z $dev ]] || die "$SUBNET.0/24 is already in use on $dev"
		fwd=$(cat /proc/sys/net/ipv4/ip_forward)
		for other in /sys/class/net/*; do
			if a=$(bridge_alias "${other##*/}"); then fwd=${a##*ip_forward=}; fi
		done
		ip link add "$BRIDGE" type bridge
		ip link set "$BRIDGE" alias "fabricks-cri $W ip_forward=$fwd"
	fi
	mkdir -p "$W/cni/conf" "$W/cni/networks"
	# No routes from IPAM: a pod reaches its /24 (the host is .1) and nothing else; no ipMasq.
	cat >"$W/cni/conf/10-$CNI_NET.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$SUBNET.0/24", "gateway": "$SUBNET.1" }]],
        "dataDir": "$W/cni/networks"
      }
    }
  ]
}
EOF
}

# Our CRI pods' network leftovers: veths on our bridge, the bridge, libcni's cached results.
# (Netns mounts and IPAM state are under $W.) Prints them for leftovers; removes them for down.
cni_leftovers() {
	local a v ns id f
	if a=$(bridge_alias "$BRIDGE") && [[ $a == "fabricks-cri $W "* ]]; then
		for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }'); do
			echo "veth ${v%%@*}"
		done
		echo "bridge $BRIDGE"
	fi
	while read -r ns id; do
		[[ $ns == "$CRI_NS" ]] || continue
		for f in "$CNI_CACHE/$CNI_NET-$id-"* "$CNI_CACHE/cni-loopback-$id-"*; do
			if [[ -e $f ]]; then echo "cni-cache $f"; fi
		done
	done < <(known_containers | sort -u)
}

cni_teardown() {
	local what x a fwd='' other
	while read -r what x; do
		case $what in
		veth) ip link del "$x" 2>/dev/null || true ;;
		bridge)
			a=$(bridge_alias "$x") && fwd=${a##*ip_forward=}
			ip link del "$x"
			;;
		cni-cache) rm -f "$x" ;;
		esac
	done < <(cni_leftovers)
	rmdir "$CNI_CACHE" "${CNI_CACHE%/*}" 2>/dev/null || true
	# The last of our bridges gone: ip_forward back to what it was before the first.
	[[ $fwd == [01] ]] || return 0
	for other in /sys/class/net/*; do
		if bridge_alias "${other##*/}" >/dev/null; then return 0; fi
	done
	echo "$fwd" >/proc/sys/net/ipv4/ip_forward
}

cmd_up() {
	local _
	[[ -x $BIN/containerd ]] || die "no containerd in $BIN: run $0 install $F"
	if our_pid >/dev/null; then
		[[ -z $CRI || -e $W/cri ]] || die "containerd $F runs without CRI: $0 down $F first"
		cmd_install_shim
		return 0
	fi
	[[ ! -e $W/containerd.pid ]] || cmd_down # a crashed run's remains
	mkdir -p "$W"/{root,state,tmp,cache}
	if [[ -n $CRI ]]; then
		build_fcri
		cni_setup
		(cmd_pause_image "$W/pause.tar" "$CRI_IMAGE")
		: >"$W/cri"
	fi
	write_config
	cmd_install_shim
	: >"$W/containerd.log"
	# setsid: containerd must outlive this script and its terminal; sh records the pid it execs.
	# shellcheck disable=SC2016 # $$ is the inner sh's
	FABRICKS_CACHE_DIR=$W/cache PATH=$BIN:$PATH setsid sh -c 'echo $$ >"$0"; exec "$@"' \
		"$W/containerd.pid" "$BIN/containerd" --config "$W/config.toml" </dev/null >>"$W/containerd.log" 2>&1 &
	for _ in {1..150}; do
		if [[ -S $SOCK ]] && c --connect-timeout 1s version >/dev/null 2>&1; then
			[[ -z $CRI ]] || cri_up || break
			return 0
		fi
		if [[ -s $W/containerd.pid ]] && ! our_pid >/dev/null; then break; fi
		sleep 0.2
	done
	tail -n 20 "$W/containerd.log" >&2
	cmd_down
	die "containerd $F did not come up (log above)"
}

# The sandbox image into CRI's namespace (CRI never pulls it: it is present), then waits until
# CRI answers and lists it.
cri_up() {
	local _
	c -n "$CRI_NS" images import "$W/pause.tar" >/dev/null
	for _ in {1..50}; do
		if grep -qxF "$CRI_IMAGE" <<<"$(fcri --timeout 2s images 2>/dev/null | cut -f2 | tr , '\n')"; then return 0; fi
		sleep 0.2
	done
	echo "harness: CRI does not answer or does not list $CRI_IMAGE" >&2
	return 1
}

# Stops and removes CRI's pods as kubelet would, so CNI releases their addresses and veths
# (ctr alone would bypass CRI). Whatever remains is cleaned up by hand after containerd stops.
cri_down() {
	local pod
	[[ -x $(fcri_bin) ]] || return 0
	for pod in $(fcri --timeout 10s pods -q 2>/dev/null); do
		fcri --timeout 30s stopp "$pod" >/dev/null 2>&1 || true
		fcri --timeout 30s rmp "$pod" >/dev/null 2>&1 || true
	done
}

# SIGTERM to the pids that "$1" prints, SIGKILL to those still there 5 s later.
# Background compiles into our cache (a command's first start ran baseline code): detached
# from their shims, they end by themselves once the optimized entry is written.
our_compiles() {
	pgrep -f "containerd-shim-fabricks-v1 compile --entry $W/cache/" || true
}

# Runners of our shims (each a wasm container's process), also any whose shim is gone.
our_runners() {
	pgrep -f "^$W/opt/bin/containerd-shim-fabricks-v1 runner" || true
}

stop_all() {
	local pids _
	pids=$("$1")
	[[ -n $pids ]] || return 0
	# shellcheck disable=SC2086 # one pid per word
	kill -TERM $pids 2>/dev/null || true
	for _ in {1..25}; do
		pids=$("$1")
		[[ -n $pids ]] || return 0
		sleep 0.2
	done
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null || true
	for _ in {1..25}; do
		[[ -n $("$1") ]] || return 0
		sleep 0.2
	done
}

cmd_down() {
	local pid ns id fifos r _
	[[ -d $W ]] || return 0
	known_containers | sort -u >"$W/containers.new"
	mv -f "$W/containers.new" "$W/containers"
	if pid=$(our_pid) && [[ -e $W/cri ]]; then cri_down; fi
	if pid=$(our_pid); then
		while read -r ns id; do
			c -n "$ns" tasks rm -f "$id" </dev/null >/dev/null 2>&1 || true
			c -n "$ns" containers rm "$id" </dev/null >/dev/null 2>&1 || true
		done <"$W/containers"
		kill -TERM "$pid"
		for _ in {1..50}; do our_pid >/dev/null || break; sleep 0.2; done
		if our_pid >/dev/null; then kill -KILL "$pid"; fi
	fi
	# Only if containerd could not clean up: runc state, processes and shims of our containers.
	# (Our shim runs native entrypoints, e.g. a CRI pod's pause, with its own runc root.)
	while read -r ns id; do
		for r in /run/containerd/runc /run/containerd/fabricks/runc; do
			if [[ -e $r/$ns/$id ]]; then runc --root "$r/$ns" delete --force "$id" >/dev/null 2>&1 || true; fi
		done
	done <"$W/containers"
	stop_all container_procs
	for _ in {1..300}; do [[ -z $(our_compiles) ]] && break; sleep 0.2; done
	stop_all our_compiles
	fifos=$(our_fifo_dirs)
	stop_all our_shims
	stop_all our_runners
	# shellcheck disable=SC2086 # one dir per word
	if [[ -n $fifos ]]; then rm -rf $fifos; fi
	for id in $(our_mounts | sort -r); do umount "$id" 2>/dev/null || umount -l "$id"; done
	cni_teardown
	# Empty leftovers only: rmdir refuses anything still in use.
	while read -r ns id; do rmdir /sys/fs/cgroup/{,*/}"$ns/$id" 2>/dev/null || true; done <"$W/containers"
	for ns in $(our_namespaces); do rmdir {/run/containerd,/run/containerd/fabricks}/runc/"$ns" /sys/fs/cgroup/{,*/}"$ns" 2>/dev/null || true; done
	[[ -z $(our_mounts) ]] || die "still mounted, not removing $W: $(our_mounts)"
	find "$W" -mindepth 1 -maxdepth 1 ! -name containerd.log ! -name containers -exec rm -rf {} +
}

cmd_leftovers() {
	local out pid ns id
	out=$(
		if pid=$(our_pid); then echo "containerd pid $pid"; fi
		for pid in $(our_shims); do echo "shim pid $pid: $(tr '\0' ' ' 2>/dev/null </proc/"$pid"/cmdline)"; done
		for pid in $(our_compiles); do echo "background compile pid $pid"; done
		for pid in $(our_runners); do echo "runner pid $pid"; done
		for pid in $(container_procs); do echo "container pid $pid: $(tr '\0' ' ' 2>/dev/null </proc/"$pid"/cmdline)"; done
		for id in $(our_mounts); do
			if [[ $(findmnt -n -o FSTYPE --mountpoint "$id" 2>/dev/null) == nsfs ]]; then echo "netns $id"; else echo "mount $id"; fi
		done
		cni_leftovers
		while read -r ns id; do
			for r in /run/containerd/runc /run/containerd/fabricks/runc; do
				if [[ -e $r/$ns/$id ]]; then echo "runc state $r/$ns/$id"; fi
			done
		done < <(known_containers | sort -u)
		for id in "$W"/*; do
			case ${id##*/} in containerd.log | containers | '*') ;; *) echo "state $id" ;; esac
		done
		our_cgroups | sed 's/^/cgroup /'
		for id in "$W"/cache/*/*.tmp*; do if [[ -e $id ]]; then echo "cache temp file $id"; fi; done
	)
	[[ -z $out ]] || {
		echo "$out"
		return 1
	}
}

cmd_env() {
	printf 'export CONTAINERD_ADDRESS=%q CONTAINERD_NAMESPACE=%q FABRICKS_HARNESS_WORK=%q CTR=%q\n' \
		"$SOCK" "${CONTAINERD_NAMESPACE:-$NS}" "$W" "$BIN/ctr"
	printf 'export CONTAINER_RUNTIME_ENDPOINT=%q FCRI=%q\n' "unix://$SOCK" "$(fcri_bin)"
}


# A hand-written OCI layout (one uncompressed layer): fewer tools and a reproducible digest.
cmd_pause_image() {
	local out ref=${2:-localhost/fabricks/pause:3} arch cc layer config manifest
	out=$(realpath -m "${1:?usage: pause-image OUT.tar [REF]}")
	arch=$(dpkg --print-architecture)
	TMP=$(mktemp -d)
	trap 'rm -rf "$TMP"' EXIT
	mkdir -p "$TMP/rootfs" "$TMP/oci/blobs/sha256"
	cc=$(command -v musl-gcc || echo gcc) # musl: 13 KB instead of 680 KB
	"$cc" -static -Os -s -o "$TMP/rootfs/pause" "$HERE/images/pause.c"
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$TMP/rootfs" -cf "$TMP/layer" pause
	blob "$TMP/layer" && layer=$DESC
	printf '{"architecture": "%s", "os": "linux", "config": {"Entrypoint": ["/pause"]}, "rootfs": {"type": "layers", "diff_ids": ["%s"]}}' \
		"$arch" "$DIGEST" >"$TMP/config"
	blob "$TMP/config" && config=$DESC
	printf '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"mediaType": "application/vnd.oci.image.config.v1+json", %s}, "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", %s}]}' \
		"$config" "$layer" >"$TMP/manifest"
	blob "$TMP/manifest" && manifest=$DESC
	# io.containerd.image.name gives `ctr images import` the full reference.
	printf '{"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", %s, "platform": {"architecture": "%s", "os": "linux"}, "annotations": {"io.containerd.image.name": "%s", "org.opencontainers.image.ref.name": "%s"}}]}' \
		"$manifest" "$arch" "$ref" "${ref##*:}" >"$TMP/oci/index.json"
	echo '{"imageLayoutVersion": "1.0.0"}' >"$TMP/oci/oci-layout"
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$TMP/oci" -cf "$out" oci-layout index.json blobs
}

# Moves file $1 into the layout's blobs; sets DIGEST and DESC (its descriptor's digest and size).
blob() {
	DIGEST=sha256:$(sha256sum "$1" | cut -d' ' -f1)
	DESC=$(printf '"digest": "%s", "size": %d' "$DIGEST" "$(stat -c %s "$1")")
	mv "$1" "$TMP/oci/blobs/sha256/${DIGEST#sha256:}"
}

cmd=${1:-}
(($#)) && shift
if [[ $cmd == install ]]; then
	cmd_install "$@"
	exit
fi
f=${FABRICKS_FLAVOUR:-1.6}
CRI=''
if [[ $cmd == up && ${1:-} == --cri ]]; then
	CRI=1
	shift
fi
if [[ ${1:-} == 1.6 || ${1:-} == 2 ]]; then
	f=$1
	shift
fi
if [[ $cmd == up && ${1:-} == --cri ]]; then
	CRI=1
	shift
fi
flavour "$f"
[[ $cmd == ctr || $cmd == crictl || $cmd == pause-image || $# == 0 ]] || usage
case $cmd in
up) cmd_up ;;
down) cmd_down ;;
leftovers) cmd_leftovers ;;
env) cmd_env ;;
install-shim) cmd_install_shim ;;
ctr) c "$@" ;;
crictl) fcri "$@" ;;
pause-image) cmd_pause_image "$@" ;;
*) usage ;;
esac
