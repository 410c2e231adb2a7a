#!/usr/bin/env bash
# A private containerd (Debian's 1.6 or a pinned 2.x built from source) for Fabricks tests.
# Run without arguments for usage.
set -euo pipefail

# Newest 2.x that `go install`s cleanly here (no replace directives; needs go >= 1.26.6).
readonly CTRD2_VERSION=2.4.2
readonly CTRD2_CMDS=(containerd ctr containerd-shim-runc-v2)
readonly SHIM_NAME=containerd-shim-fabricks-v1
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
  up                     start the private containerd in \$FABRICKS_HARNESS_DIR/<flavour>
  install-shim           recopy \$FABRICKS_SHIM into its opt/bin
  ctr ARGS...            that flavour's ctr on the private socket (namespace fabricks-<flavour>
                         unless -n or \$CONTAINERD_NAMESPACE says otherwise)
  env                    shell exports for other clients (CONTAINERD_ADDRESS, ...)
  down                   kill its tasks, stop it, unmount and remove its state (keeps containerd.log)
  leftovers              print processes/mounts/state of ours still present; exit 1 if any
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

cmd_install() {
	local pkgs=(runc gcc libc6-dev musl-tools)
	case ${1:-all} in
	1.6 | all) pkgs+=(containerd) ;;
	2) ;;
	*) usage ;;
	esac
	apt_install "${pkgs[@]}"
	if [[ ${1:-all} != 1.6 ]]; then build_containerd2; fi
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
	if [[ $F == 2 ]]; then
		# 3, not 2.4's native 4: 2.4 migrates it (one warning), and older 2.x read it too.
		version=3
		extra="temp = \"$W/tmp\""
		disabled+=', "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images"'
	fi
	cat >"$W/config.toml" <<EOF
version = $version
root = "$W/root"
state = "$W/state"
$extra
# CRI stays off until a test needs it (it wants a local sandbox image and CNI).
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
}

cmd_up() {
	local _
	[[ -x $BIN/containerd ]] || die "no containerd in $BIN: run $0 install $F"
	if our_pid >/dev/null; then
		cmd_install_shim
		return 0
	fi
	[[ ! -e $W/containerd.pid ]] || cmd_down # a crashed run's remains
	mkdir -p "$W"/{root,state,tmp,cache}
	write_config
	cmd_install_shim
	: >"$W/containerd.log"
	# setsid: containerd must outlive this script and its terminal; sh records the pid it execs.
	# shellcheck disable=SC2016 # $$ is the inner sh's
	FABRICKS_CACHE_DIR=$W/cache PATH=$BIN:$PATH setsid sh -c 'echo $$ >"$0"; exec "$@"' \
		"$W/containerd.pid" "$BIN/containerd" --config "$W/config.toml" </dev/null >>"$W/containerd.log" 2>&1 &
	for _ in {1..150}; do
		if [[ -S $SOCK ]] && c --connect-timeout 1s version >/dev/null 2>&1; then return 0; fi
		if [[ -s $W/containerd.pid ]] && ! our_pid >/dev/null; then break; fi
		sleep 0.2
	done
	tail -n 20 "$W/containerd.log" >&2
	cmd_down
	die "containerd $F did not come up (log above)"
}

# SIGTERM to the pids that "$1" prints, SIGKILL to those still there 5 s later.
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
	local pid ns id fifos _
	[[ -d $W ]] || return 0
	known_containers | sort -u >"$W/containers.new"
	mv -f "$W/containers.new" "$W/containers"
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
	while read -r ns id; do
		if [[ -e /run/containerd/runc/$ns/$id ]]; then
			runc --root "/run/containerd/runc/$ns" delete --force "$id" >/dev/null 2>&1 || true
		fi
	done <"$W/containers"
	stop_all container_procs
	fifos=$(our_fifo_dirs)
	stop_all our_shims
	# shellcheck disable=SC2086 # one dir per word
	if [[ -n $fifos ]]; then rm -rf $fifos; fi
	for id in $(our_mounts | sort -r); do umount "$id" 2>/dev/null || umount -l "$id"; done
	# Empty leftovers only: rmdir refuses anything still in use.
	while read -r ns id; do rmdir /sys/fs/cgroup/{,*/}"$ns/$id" 2>/dev/null || true; done <"$W/containers"
	for ns in $(our_namespaces); do rmdir "/run/containerd/runc/$ns" /sys/fs/cgroup/{,*/}"$ns" 2>/dev/null || true; done
	[[ -z $(our_mounts) ]] || die "still mounted, not removing $W: $(our_mounts)"
	find "$W" -mindepth 1 -maxdepth 1 ! -name containerd.log ! -name containers -exec rm -rf {} +
}

cmd_leftovers() {
	local out pid ns id
	out=$(
		if pid=$(our_pid); then echo "containerd pid $pid"; fi
		for pid in $(our_shims); do echo "shim pid $pid: $(tr '\0' ' ' 2>/dev/null </proc/"$pid"/cmdline)"; done
		for pid in $(container_procs); do echo "container pid $pid: $(tr '\0' ' ' 2>/dev/null </proc/"$pid"/cmdline)"; done
		for id in $(our_mounts); do echo "mount $id"; done
		while read -r ns id; do
			if [[ -e /run/containerd/runc/$ns/$id ]]; then echo "runc state /run/containerd/runc/$ns/$id"; fi
		done < <(known_containers | sort -u)
		for id in "$W"/*; do
			case ${id##*/} in containerd.log | containers | '*') ;; *) echo "state $id" ;; esac
		done
	)
	[[ -z $out ]] || {
		echo "$out"
		return 1
	}
}

cmd_env() {
	printf 'export CONTAINERD_ADDRESS=%q CONTAINERD_NAMESPACE=%q FABRICKS_HARNESS_WORK=%q CTR=%q\n' \
		"$SOCK" "${CONTAINERD_NAMESPACE:-$NS}" "$W" "$BIN/ctr"
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
if [[ ${1:-} == 1.6 || ${1:-} == 2 ]]; then
	f=$1
	shift
fi
flavour "$f"
[[ $cmd == ctr || $cmd == pause-image || $# == 0 ]] || usage
case $cmd in
up) cmd_up ;;
down) cmd_down ;;
leftovers) cmd_leftovers ;;
env) cmd_env ;;
install-shim) cmd_install_shim ;;
ctr) c "$@" ;;
pause-image) cmd_pause_image "$@" ;;
*) usage ;;
esac
