#!/usr/bin/env bash
# Builds the node VM's image into OUT (called by vm.sh image, which caches OUT keyed by a hash of
# this file and its inputs): a debootstrap rootfs configured as a Kubernetes node without
# Kubernetes (systemd, cgroup v2, containerd 2.x with runc, CNI bridge, ssh), written into an
# ext4 image by mke2fs -d (no loop mounts), plus the kernel, initrd and ssh identity it boots with.
#
# usage: image.sh OUT        env: FABRICKS_VM_MIRROR, FABRICKS_VM_CACHE, FABRICKS_TOOLS
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TC=$(dirname "$HERE")
TOOLS=${FABRICKS_TOOLS:-$HOME/.cache/fabricks/tools}
MIRROR=${FABRICKS_VM_MIRROR:-http://deb.debian.org/debian}
CACHE=${FABRICKS_VM_CACHE:-$HOME/.cache/fabricks/vm}
readonly SUITE=bookworm CTRD2_VERSION=2.4.2
CTRD2_BIN=$TOOLS/containerd-$CTRD2_VERSION/bin
# Packages beyond debootstrap's minbase: the node's OS, containerd's runc and CNI plugins,
# kube-proxy's iptables/conntrack, D-Bus (runc's and kubelet's systemd cgroup driver talk to
# systemd over it), ssh for the host, curl and ping for checks from the node.
readonly PACKAGES=systemd,systemd-sysv,dbus,udev,kmod,linux-image-amd64,openssh-server,iproute2,iptables,conntrack,runc,containernetworking-plugins,procps,curl,iputils-ping,psmisc

die() {
	echo "vm image: $*" >&2
	exit 1
}
log() { echo "vm image: $*" >&2; }

quiet() {
	local out rc=0
	out=$(mktemp)
	"$@" >"$out" 2>&1 || rc=$?
	((rc == 0)) || tail -n 40 "$out" >&2
	rm -f "$out"
	return "$rc"
}

# build_image OUT: rootfs with debootstrap, configured for the node, into OUT/rootfs.img (ext4
# filled by mke2fs -d: no loop mounts) plus OUT/vmlinuz, OUT/initrd.img and the ssh identity.
build_image() {
	local out=$1 root t0=$SECONDS
	mkdir -p "$out"
	root=$(mktemp -d /tmp/fabricks-vm-rootfs.XXXXXX)
	# shellcheck disable=SC2064 # expanded now: the dir of this build
	trap "umount_under '$root'; rm -rf '$root'" EXIT
	base_rootfs "$root"
	ssh-keygen -q -t ed25519 -N '' -C fabricks-vm -f "$out/id_ed25519"
	configure_rootfs "$root" "$out"
	# The one kernel linux-image-amd64 installed, and the initrd made for it.
	cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
	cp "$root"/boot/initrd.img-* "$out/initrd.img"
	# The guest's host key, so ssh checks it (HostKeyAlias: whatever port it is forwarded to).
	printf 'fabricks-vm %s\n' "$(cut -d' ' -f1,2 "$root/etc/ssh/ssh_host_ed25519_key.pub")" >"$out/known_hosts"
	# Sparse: 8 GiB of room for images and logs, ~1 GiB used.
	quiet mke2fs -q -t ext4 -L fabricks-node -d "$root" "$out/rootfs.img" 8G || die "mke2fs failed"
	log "image built in $((SECONDS - t0)) s: $out"
}

# base_rootfs DIR: debootstrap's result in DIR, from its own cache (keyed by suite, mirror and
# packages: the slow, download-bound part, which changes less often than the configuration).
base_rootfs() {
	local root=$1 key tarball t0=$SECONDS
	key=$(echo "$SUITE $MIRROR $PACKAGES" | sha256sum | cut -c1-16)
	tarball=$CACHE/debootstrap-$SUITE-$key.tar.zst
	if [[ -s $tarball ]]; then
		log "rootfs from $tarball"
		tar --zstd -xpf "$tarball" -C "$root" --numeric-owner --xattrs --xattrs-include='*'
		return
	fi
	log "debootstrap $SUITE into $root (minbase + ${PACKAGES//,/ })"
	quiet debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" ||
		die "debootstrap failed (log above)"
	log "debootstrap: $((SECONDS - t0)) s"
	mkdir -p "$CACHE"
	rm -f "$CACHE/debootstrap-$SUITE-"*.tar.zst
	tar --zstd -cpf "$tarball.partial" -C "$root" --numeric-owner --xattrs --xattrs-include='*' .
	mv "$tarball.partial" "$tarball"
}

umount_under() {
	local m
	awk -v p="$1/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
}

# put FILE MODE: stdin into FILE (a path inside the rootfs being configured).
put() {
	mkdir -p "$(dirname "$1")"
	cat >"$1"
	chmod "$2" "$1"
}

configure_rootfs() {
	local r=$1 out=$2
	echo fabricks-node | put "$r/etc/hostname" 644
	printf '127.0.0.1 localhost\n127.0.1.1 fabricks-node\n::1 localhost ip6-localhost ip6-loopback\n' | put "$r/etc/hosts" 644
	echo '/dev/vda / ext4 rw,discard,errors=remount-ro 0 1' | put "$r/etc/fstab" 644
	# A fresh machine id on every boot of the (read-only) image's overlay.
	: >"$r/etc/machine-id"
	rm -f "$r/var/lib/dbus/machine-id"
	# qemu's user network: a fixed address, no gateway (restrict=on routes nothing anyway), so
	# nothing in the guest even tries to reach beyond the host's forwards; slirp's DNS for names.
	put "$r/etc/systemd/network/10-eth0.network" 644 <<EOF
[Match]
Name=eth0

[Network]
Address=10.0.2.15/24
DNS=10.0.2.3
LinkLocalAddressing=no
IPv6AcceptRA=no
EOF
	echo 'nameserver 10.0.2.3' | put "$r/etc/resolv.conf" 644
	# A blackhole default route: kubelet and kube-proxy look for one, and locally sent packets
	# to Service IPs need a route before kube-proxy's DNAT picks the real one.
	put "$r/etc/systemd/network/10-eth0.network.d/blackhole.conf" 644 <<EOF
[Route]
Type=blackhole
Destination=0.0.0.0/0
EOF
	install -d -m 700 "$r/root/.ssh"
	put "$r/root/.ssh/authorized_keys" 600 <"$out/id_ed25519.pub"
	put "$r/etc/ssh/sshd_config.d/fabricks.conf" 644 <<EOF
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF
	# Kubernetes networking: bridged pod traffic through iptables, forwarding on.
	printf 'overlay\nbr_netfilter\n' | put "$r/etc/modules-load.d/kubernetes.conf" 644
	put "$r/etc/sysctl.d/90-kubernetes.conf" 644 <<EOF
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
EOF
	containerd_files "$r"
	cni_files "$r"
	# Boot to multi-user quickly: no timers that download or scrub.
	rm -f "$r"/etc/systemd/system/timers.target.wants/*
	ln -sf /lib/systemd/system/multi-user.target "$r/etc/systemd/system/default.target"
	chroot "$r" systemctl enable --quiet systemd-networkd ssh containerd fabricks-pause-image 2>/dev/null ||
		die "systemctl enable in the rootfs failed"
	chroot "$r" systemctl mask --quiet systemd-networkd-wait-online 2>/dev/null || true
	rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
}

# containerd 2.x as a node has it: the binaries, a systemd unit that leaves the shims (and so
# the pods) alone when containerd restarts, `containerd config default` with what a kubelet
# node sets (runc with SystemdCgroup, the pinned sandbox image, registry hosts, Debian's CNI
# plugins), and the sandbox image imported at boot (there is no registry.k8s.io here).
containerd_files() {
	local r=$1 cmd cfg
	for cmd in containerd ctr containerd-shim-runc-v2; do install -m 755 "$CTRD2_BIN/$cmd" "$r/usr/local/bin/$cmd"; done
	put "$r/etc/systemd/system/containerd.service" 644 <<EOF
[Unit]
Description=containerd container runtime
After=network.target local-fs.target dbus.service

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/containerd
Type=notify
# Shims (and their pods) outlive a restart of containerd.
KillMode=process
Delegate=yes
Restart=always
RestartSec=2
LimitNOFILE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
EOF
	mkdir -p "$r/etc/containerd"
	cfg=$("$CTRD2_BIN/containerd" config default)
	cfg=$(edit "$cfg" "^      sandbox = .*" "      sandbox = 'localhost/fabricks/pause:3'")
	cfg=$(edit "$cfg" "^      config_path = ''$" "      config_path = '/etc/containerd/certs.d'" 1)
	cfg=$(edit "$cfg" "^            SystemdCgroup = false$" "            SystemdCgroup = true")
	cfg=$(edit "$cfg" "^      bin_dirs = .*" "      bin_dirs = ['/usr/lib/cni']")
	printf '%s\n' "$cfg" | put "$r/etc/containerd/config.toml" 644
	mkdir -p "$r/etc/containerd/certs.d" "$r/opt/fabricks"
	"$TC/harness.sh" pause-image "$r/opt/fabricks/pause.tar" localhost/fabricks/pause:3 >/dev/null
	put "$r/etc/systemd/system/fabricks-pause-image.service" 644 <<EOF
[Unit]
Description=Import the sandbox image into containerd's k8s.io namespace
Requires=containerd.service
After=containerd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/bin/ctr -n k8s.io images import /opt/fabricks/pause.tar

[Install]
WantedBy=multi-user.target
EOF
}

# edit TEXT REGEX LINE [NTH]: TEXT with the NTH (default: the only) line matching REGEX
# replaced by LINE; dies if there is no such line (or, without NTH, more than one): the
# default config of this containerd is not the one this was written for.
edit() {
	local n
	n=$(grep -c -- "$2" <<<"$1" || true)
	if [[ -z ${4:-} ]] && ((n != 1)) || ((n < ${4:-1})); then
		die "containerd config default has $n lines matching /$2/"
	fi
	awk -v re="$2" -v line="$3" -v nth="${4:-1}" '$0 ~ re && ++seen == nth { print line; next } { print }' <<<"$1"
}

cni_files() {
	local r=$1
	# The node's pod network: one bridge, host-local IPAM on the node's podCIDR.
	put "$r/etc/cni/net.d/10-fabricks-node.conflist" 644 <<EOF
{
  "cniVersion": "1.0.0",
  "name": "fabricks-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.244.0.0/24", "gateway": "10.244.0.1" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
}

build_image "${1:?usage: image.sh OUT}"
