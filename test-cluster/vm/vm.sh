#!/usr/bin/env bash
# The Kubernetes node VM: a Debian 12 guest with systemd, cgroup v2, containerd 2.x, runc and a
# CNI bridge, booted with qemu (KVM, else TCG). Run without arguments for usage.
#
# The image is built from Debian's packages (debootstrap, linux-image-amd64) plus the harness's
# containerd, and cached under $FABRICKS_VM_CACHE keyed by a hash of everything that goes into
# it. A running VM lives in $FABRICKS_VM_DIR: its disk is a qcow2 overlay over the cached image
# (the image itself is never written), qemu's pid, serial log and forwarded ports; `down` powers
# the guest off and removes all of it. The host gets in over ssh (a key made with the image) on
# a forwarded 127.0.0.1 port; the guest reaches nothing but what qemu forwards to it (restrict=on):
# the host's registry as 10.0.2.100:5000.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TC=$(dirname "$HERE")
TOOLS=${FABRICKS_TOOLS:-$HOME/.cache/fabricks/tools}
CACHE=${FABRICKS_VM_CACHE:-$HOME/.cache/fabricks/vm}
RUN=$(realpath -m "${FABRICKS_VM_DIR:-/tmp/fabricks-vm}")
readonly CTRD2_VERSION=2.4.2 # the harness's (harness.sh builds it into $TOOLS)
CTRD2_BIN=$TOOLS/containerd-$CTRD2_VERSION/bin
# Guest side of the registry forward: qemu relays connections to it to the host's registry.
readonly GUEST_REGISTRY=10.0.2.100:5000
MEM=${FABRICKS_VM_MEMORY:-4096} CPUS=${FABRICKS_VM_CPUS:-2}

usage() {
	cat <<EOF
usage: $0 COMMAND [ARGS...]
  install            apt packages: qemu-system-x86, qemu-utils, debootstrap, netcat-openbsd; containerd $CTRD2_VERSION (harness)
  image              build the image unless cached; prints its directory
  up [PORT...]       boot a VM from the image in \$FABRICKS_VM_DIR ($RUN); each PORT (a guest TCP
                     port) is forwarded from a free 127.0.0.1 port (22 always is); waits for ssh
                     \$FABRICKS_VM_REGISTRY=HOST:PORT: the host registry the guest sees as $GUEST_REGISTRY
                     \$FABRICKS_VM_DATA_DISK=FILE: a raw disk image attached read-only as /dev/vdb
                     \$FABRICKS_VM_ACCEL=auto|kvm|tcg (auto: KVM if it boots the kernel, else TCG)
  kvm                exit 0 if KVM may run the VM here (nothing built or booted), else print why
                     not (no /dev/kvm; kvm_pvm without VMX/SVM) and exit 1
  probe              print the accelerator the VM gets here: kvm, or tcg (kvm ruled it out, or a
                     KVM under which a guest kernel does not even print its banner in time)
  port GUESTPORT     the host port forwarded to GUESTPORT
  ssh [CMD...]       run CMD in the guest as root (a login shell without CMD)
  push SRC... DEST   copy host files/dirs into guest dir DEST (tar over ssh)
  env                shell exports: FABRICKS_VM_SSH_PORT, FABRICKS_VM_DIR
  down               power the guest off (qemu killed if it does not stop), remove the run dir
  status             exit 0 if the VM of \$FABRICKS_VM_DIR runs
  leftovers          print our qemu, run dir and listening forwards still present; exit 1 if any
EOF
	exit 2
}

die() {
	echo "vm: $*" >&2
	exit 1
}
log() { echo "vm: $*" >&2; }

quiet() {
	local out rc=0
	out=$(mktemp)
	"$@" >"$out" 2>&1 || rc=$?
	((rc == 0)) || tail -n 40 "$out" >&2
	rm -f "$out"
	return "$rc"
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

cmd_install() {
	apt_install qemu-system-x86 qemu-utils debootstrap netcat-openbsd e2fsprogs openssh-client musl-tools gcc libc6-dev
	[[ -x $CTRD2_BIN/containerd ]] || "$TC/harness.sh" install 2
}

# --- the image ---------------------------------------------------------------------------

# The cache key: the image builder, the pause source and the containerd binaries that go in.
image_key() {
	{
		cat "$HERE/image.sh" "$TC/images/pause.c"
		echo "${FABRICKS_VM_MIRROR:-}"
		sha256sum "$CTRD2_BIN"/{containerd,ctr,containerd-shim-runc-v2} | cut -d' ' -f1
	} | sha256sum | cut -c1-16
}

image_dir() { echo "$CACHE/debian12-$(image_key)"; }

cmd_image() {
	local dir
	[[ -x $CTRD2_BIN/containerd ]] || die "no containerd $CTRD2_VERSION in $CTRD2_BIN: run $0 install"
	dir=$(image_dir)
	mkdir -p "$CACHE"
	# One build at a time (test-all.sh starts one early in the background; the suite's waits).
	exec 9>"$CACHE/.lock"
	flock 9
	if [[ -e $dir/.complete ]]; then
		exec 9>&-
		echo "$dir"
		return
	fi
	command -v debootstrap >/dev/null || die "no debootstrap: run $0 install"
	rm -rf "$dir.partial"
	mkdir -p "$dir.partial"
	"$HERE/image.sh" "$dir.partial"
	: >"$dir.partial/.complete"
	rm -rf "$dir"
	mv "$dir.partial" "$dir"
	# Older images of other keys are garbage.
	find "$CACHE" -mindepth 1 -maxdepth 1 -name 'debian12-*' ! -path "$dir" -exec rm -rf {} +
	exec 9>&- # qemu must not inherit the lock
	echo "$dir"
}

# --- a running VM ------------------------------------------------------------------------

# Prints qemu's pid if the recorded one is still our qemu (its -name names our run dir).
qemu_pid() {
	local pid cmd
	pid=$(cat "$RUN/qemu.pid" 2>/dev/null) || return 1
	cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
	[[ $cmd == *"-name fabricks-vm,debug-threads=on -pidfile $RUN/qemu.pid "* ]] && echo "$pid"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ssh_opts() {
	local img
	img=$(cat "$RUN/image")
	SSH_OPTS=(-i "$img/id_ed25519" -o IdentitiesOnly=yes -o UserKnownHostsFile="$img/known_hosts"
		-o HostKeyAlias=fabricks-vm -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR
		-o ConnectTimeout=5 -o ServerAliveInterval=5 -o ServerAliveCountMax=6 -p "$(cmd_port 22)")
}

cmd_port() {
	awk -v g="$1" '$1 == g { print $2; found = 1 } END { exit !found }' "$RUN/ports" 2>/dev/null ||
		die "guest port $1 is not forwarded (or no VM in $RUN)"
}

cmd_ssh() {
	ssh_opts
	if (($#)); then
		ssh "${SSH_OPTS[@]}" root@127.0.0.1 -- "$@"
	else
		ssh -t "${SSH_OPTS[@]}" root@127.0.0.1
	fi
}

cmd_push() {
	(($# >= 2)) || usage
	local dest=${!#} srcs=("${@:1:$#-1}") s args=()
	for s in "${srcs[@]}"; do args+=(-C "$(dirname "$s")" "$(basename "$s")"); done
	tar -c "${args[@]}" | cmd_ssh "mkdir -p '$dest' && tar -x --no-same-owner -C '$dest'"
}

# start_qemu kvm|tcg: qemu daemonized on the run dir's overlay, with the forwards in $FWD.
start_qemu() {
	local img accel
	img=$(cat "$RUN/image")
	if [[ $1 == kvm ]]; then accel=(-accel kvm -cpu host); else accel=(-accel "tcg,thread=multi" -cpu max); fi
	rm -f "$RUN/disk.qcow2" "$RUN/serial.log"
	qemu-img create -q -f qcow2 -b "$img/rootfs.img" -F raw "$RUN/disk.qcow2"
	qemu-system-x86_64 -name fabricks-vm,debug-threads=on -pidfile "$RUN/qemu.pid" -daemonize \
		"${accel[@]}" -machine q35 -smp "$CPUS" -m "$MEM" \
		-kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
		-append "root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.unified_cgroup_hierarchy=1" \
		-drive "file=$RUN/disk.qcow2,if=virtio,format=qcow2,discard=unmap" "${DATA[@]}" \
		-netdev "user,id=n0,restrict=on$FWD" -device virtio-net-pci,netdev=n0 \
		-device virtio-rng-pci -display none -vga none \
		-serial "file:$RUN/serial.log" -monitor "unix:$RUN/monitor.sock,server,nowait" ||
		die "qemu did not start"
	qemu_pid >/dev/null || die "qemu exited at once (see $RUN/serial.log)"
	echo "$1" >"$RUN/accel"
}

# Whether KVM can run the VM here, from what the host says without building or booting
# anything: exit 1 with the reason when it cannot; exit 0 when it may (the boot probe decides).
# Seen on this machine kind: /dev/kvm is kvm_pvm (pagetable-based virtualization, for nested
# hosts without VMX/SVM), under which a stock kernel crawls (it clears its bss at ~1.4 MB/s and
# prints nothing for minutes, with or without hugepages, compressed or PVH-booted).
cmd_kvm() {
	local modules
	modules=$(cd /sys/module && echo kvm*)
	if [[ ! -e /dev/kvm ]]; then
		echo "no /dev/kvm"
		return 1
	fi
	if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
		echo "/dev/kvm is not read-writable for $(id -un)"
		return 1
	fi
	if ! grep -qwE 'vmx|svm' /proc/cpuinfo && [[ -d /sys/module/kvm_pvm ]]; then
		echo "/dev/kvm is kvm_pvm (pagetable-based virtualization) and the CPU has no VMX/SVM: a stock kernel crawls under it (modules: $modules)"
		return 1
	fi
	echo "/dev/kvm present (modules: $modules; CPU flags: $(grep -owE 'vmx|svm' /proc/cpuinfo | sort -u | tr '\n' ' '))"
}

# Which accelerator the VM can use here: kvm when cmd_kvm does not rule it out and a guest
# kernel under it prints its banner in time (a kernel and initrd only, 256 MiB, no disk), else
# tcg (the reason on stderr).
cmd_probe() {
	local img dir pid i why
	if ! why=$(cmd_kvm); then
		log "$why"
		echo tcg
		return
	fi
	img=$(cmd_image)
	dir=$(mktemp -d /tmp/fabricks-vm-probe.XXXXXX)
	qemu-system-x86_64 -name fabricks-vm-probe -pidfile "$dir/qemu.pid" -daemonize -accel kvm -cpu host \
		-m 256 -kernel "$img/vmlinuz" -initrd "$img/initrd.img" -append "console=ttyS0 panic=-1" -no-reboot \
		-display none -vga none -nodefaults -serial "file:$dir/serial.log" || {
		rm -rf "$dir"
		echo tcg
		return
	}
	pid=$(cat "$dir/qemu.pid")
	for ((i = 0; i < ${FABRICKS_VM_KVM_PROBE:-45} * 2; i++)); do
		grep -q 'Linux version' "$dir/serial.log" 2>/dev/null && break
		sleep 0.5
	done
	kill "$pid" 2>/dev/null || true
	if grep -q 'Linux version' "$dir/serial.log" 2>/dev/null; then
		echo kvm
	else
		log "KVM is present but a guest kernel did not print its first message in ${FABRICKS_VM_KVM_PROBE:-45} s (modules: $(cd /sys/module && echo kvm*))"
		echo tcg
	fi
	for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	rm -rf "$dir"
}

cmd_up() {
	local accel port guest t0=$SECONDS p limit
	if qemu_pid >/dev/null; then die "a VM already runs in $RUN: $0 down first"; fi
	rm -rf "$RUN"
	mkdir -p "$RUN"
	cmd_image >"$RUN/image"
	case ${FABRICKS_VM_ACCEL:-auto} in
	auto) accel=$(cmd_probe) ;;
	kvm | tcg) accel=$FABRICKS_VM_ACCEL ;;
	*) die "FABRICKS_VM_ACCEL must be auto, kvm or tcg" ;;
	esac
	FWD='' DATA=()
	# A read-only data disk (/dev/vdb): big files reach the guest without ssh's crypto.
	if [[ -n ${FABRICKS_VM_DATA_DISK:-} ]]; then
		DATA=(-drive "file=$(realpath "$FABRICKS_VM_DATA_DISK"),if=virtio,format=raw,readonly=on")
	fi
	for guest in 22 "$@"; do
		[[ $guest =~ ^[0-9]+$ ]] || die "not a port: $guest"
		port=$(free_port)
		echo "$guest $port" >>"$RUN/ports"
		FWD+=",hostfwd=tcp:127.0.0.1:$port-:$guest"
	done
	if [[ -n ${FABRICKS_VM_REGISTRY:-} ]]; then
		# A connection to the guest-side address runs nc to the host's registry (restrict=on
		# allows only such explicit forwards).
		FWD+=",guestfwd=tcp:$GUEST_REGISTRY-cmd:nc ${FABRICKS_VM_REGISTRY%:*} ${FABRICKS_VM_REGISTRY##*:}"
	fi
	start_qemu "$accel"
	if [[ $accel == tcg ]]; then
		log "WARNING: the VM runs under TCG (software emulation): everything in it is much slower"
	fi
	p=$(qemu_pid)
	log "qemu pid $p (${accel^^}), ssh on 127.0.0.1:$(cmd_port 22)"
	limit=120
	[[ $accel == kvm ]] || limit=900
	for _ in $(seq 1 "$limit"); do
		if cmd_ssh true 2>/dev/null; then
			log "guest answers ssh after $((SECONDS - t0)) s"
			return 0
		fi
		qemu_pid >/dev/null || break
		sleep 1
	done
	tail -n 30 "$RUN/serial.log" >&2 || true
	cmd_down
	die "the guest did not answer ssh (serial console above)"
}

cmd_down() {
	local pid
	if pid=$(qemu_pid); then
		# An orderly poweroff first (systemd stops kubelet, containerd and the pods), then ACPI,
		# then the kill.
		timeout 30 "$0" ssh systemctl poweroff >/dev/null 2>&1 || true
		for _ in $(seq 1 60); do
			kill -0 "$pid" 2>/dev/null || break
			if ((_ == 30)); then echo system_powerdown | nc -q1 -U "$RUN/monitor.sock" >/dev/null 2>&1 || true; fi
			sleep 1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "the guest did not power off in 60 s: killing qemu $pid"
			kill "$pid"
			sleep 1
			kill -9 "$pid" 2>/dev/null || true
		fi
	fi
	rm -rf "$RUN"
}

cmd_status() { qemu_pid >/dev/null; }

cmd_env() {
	echo "export FABRICKS_VM_DIR=$RUN"
	echo "export FABRICKS_VM_SSH_PORT=$(cmd_port 22)"
}

cmd_leftovers() {
	local found=0 p cmd
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		if [[ $cmd == qemu-system-x86_64\ * && $cmd == *"-pidfile $RUN/qemu.pid "* ]]; then
			echo "qemu pid ${p#/proc/}"
			found=1
		fi
	done
	if [[ -e $RUN ]]; then
		echo "run dir $RUN"
		found=1
	fi
	((!found))
}

cmd=${1:-}
[[ -n $cmd ]] || usage
shift
case $cmd in
install) cmd_install ;;
image) cmd_image ;;
up) cmd_up "$@" ;;
port) cmd_port "${1:?usage: port GUESTPORT}" ;;
ssh) cmd_ssh "$@" ;;
push) cmd_push "$@" ;;
env) cmd_env ;;
down) cmd_down ;;
status) cmd_status ;;
probe) cmd_probe ;;
kvm) cmd_kvm ;;
leftovers) cmd_leftovers ;;
*) usage ;;
esac
