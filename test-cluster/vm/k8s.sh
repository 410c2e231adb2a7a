#!/usr/bin/env bash
# A single-node Kubernetes cluster in the node VM (vm.sh): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet (systemd cgroup driver, containerd's CRI) and
# kube-proxy, each a systemd unit in the guest, all from one binary built from the Go module
# proxy (kube/: k8s.io/kubernetes $KUBE_VERSION). Certificates come from openssl on the host;
# the host's kubeconfig talks to the API server through a forwarded 127.0.0.1 port.
# Run without arguments for usage.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS=${FABRICKS_TOOLS:-$HOME/.cache/fabricks/tools}
RUN=$(realpath -m "${FABRICKS_VM_DIR:-/tmp/fabricks-vm}")
export FABRICKS_VM_DIR=$RUN
VM=$HERE/vm.sh
readonly KUBE_VERSION=v1.35.4 NODE=fabricks-node NODE_IP=10.0.2.15
readonly SERVICE_CIDR=10.96.0.0/12 API_SERVICE_IP=10.96.0.1 POD_CIDR=10.244.0.0/24
KUBECONFIG_HOST=$RUN/kubeconfig

usage() {
	cat <<EOF
usage: $0 COMMAND [ARGS...]
  build          build the kube binary ($KUBE_VERSION, all components) unless cached; prints its path
  up             boot the VM (vm.sh up, API port forwarded), install and start the control plane
                 and the node, wait for the node to be Ready; writes \$FABRICKS_VM_DIR/kubeconfig
  kubectl ARGS   kubectl $KUBE_VERSION (the kube binary) on that kubeconfig
  env            shell exports: KUBECONFIG, FABRICKS_KUBE (the kube binary)
  down           vm.sh down
EOF
	exit 2
}

die() {
	echo "k8s: $*" >&2
	exit 1
}
log() { echo "k8s: $*" >&2; }

# --- the binary --------------------------------------------------------------------------

ldflags() {
	local p minor=${KUBE_VERSION#v1.} s="-s -w"
	minor=${minor%%.*}
	# What `make` would stamp: kubelet reports it as the node's version, kubectl as the client's.
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		s+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
		s+=" -X $p.buildDate=1970-01-01T00:00:00Z"
	done
	echo "$s"
}

kube_bin() {
	local h
	h=$({
		cat "$HERE"/kube/go.mod "$HERE"/kube/go.sum "$HERE"/kube/*.go
		go env GOVERSION
		ldflags
	} | sha256sum | cut -c1-16)
	echo "$TOOLS/kube-$KUBE_VERSION-$h/kube"
}

cmd_build() {
	local bin t0=$SECONDS
	command -v go >/dev/null || die "building Kubernetes needs go"
	bin=$(kube_bin)
	mkdir -p "${bin%/*}"
	# One build at a time (test-all.sh starts one early in the background; the suite's waits).
	exec 9>"${bin%/*}/.lock"
	flock 9
	if [[ ! -x $bin ]]; then
		log "building $KUBE_VERSION (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl) into $bin"
		(cd "$HERE/kube" && GOFLAGS=-buildvcs=false nice -n "${FABRICKS_KUBE_NICE:-10}" \
			go build -trimpath -ldflags "$(ldflags)" -o "$bin.partial" .) || die "go build failed"
		mv "$bin.partial" "$bin"
		log "built in $((SECONDS - t0)) s"
	fi
	exec 9>&-
	echo "$bin"
}

# --- certificates and kubeconfigs (on the host) -------------------------------------------

# shellcheck source=lib/kube-pki.sh
source "$HERE/../lib/kube-pki.sh"

pki() {
	PKI=$RUN/pki
	pki_ca fabricks-vm-ca
	pki_cert apiserver kube-apiserver '' \
		"DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$NODE,IP:$API_SERVICE_IP,IP:$NODE_IP,IP:127.0.0.1"
	pki_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
	pki_cert admin kubernetes-admin system:masters
	pki_cert controller-manager system:kube-controller-manager
	pki_cert scheduler system:kube-scheduler
	pki_cert kubelet "system:node:$NODE" system:nodes
	pki_cert kube-proxy system:kube-proxy
}

# kubeconfig NAME SERVER: a kubeconfig for the client cert NAME (certificates inlined).
kubeconfig() { pki_kubeconfig fabricks-vm "$1" "$2"; }

# --- what goes into the guest --------------------------------------------------------------

# unit NAME AFTER EXEC...: a systemd unit running /usr/local/bin/NAME ARGS.
unit() {
	local name=$1 after=$2
	shift 2
	cat <<EOF
[Unit]
Description=Kubernetes $name ($KUBE_VERSION, test-cluster/vm)
After=network-online.target $after
Wants=$after

[Service]
ExecStart=/usr/local/bin/$name $*
Restart=always
RestartSec=2
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
EOF
}

# The guest's /etc/kubernetes, /var/lib/kubelet config and units, staged in $RUN/guest.
stage_guest() {
	local g=$RUN/guest k=/etc/kubernetes p=/etc/kubernetes/pki local_api=https://127.0.0.1:6443 n
	rm -rf "$g"
	mkdir -p "$g/etc/kubernetes/pki" "$g/etc/systemd/system" "$g/var/lib/kubelet" "$g/var/lib/kube-proxy"
	cp "$PKI"/{ca.crt,apiserver.crt,apiserver.key,apiserver-kubelet-client.crt,apiserver-kubelet-client.key,sa.key,sa.pub,ca.key} "$g$p/"
	for n in admin controller-manager scheduler kube-proxy kubelet; do
		kubeconfig "$n" "$local_api" >"$g$k/$n.conf"
	done
	# A throwaway single-member etcd on an emulated disk: no fsync, and timeouts for a slow guest.
	unit etcd '' --name "$NODE" --data-dir /var/lib/etcd --listen-client-urls http://127.0.0.1:2379 \
		--advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
		--initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster "$NODE=http://127.0.0.1:2380" \
		--listen-metrics-urls http://127.0.0.1:2381 --unsafe-no-fsync --heartbeat-interval 500 --election-timeout 5000 \
		>"$g/etc/systemd/system/etcd.service"
	unit kube-apiserver etcd.service --etcd-servers=http://127.0.0.1:2379 --advertise-address=$NODE_IP \
		--secure-port=6443 --service-cluster-ip-range=$SERVICE_CIDR --allow-privileged=true \
		--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
		--client-ca-file=$p/ca.crt --tls-cert-file=$p/apiserver.crt --tls-private-key-file=$p/apiserver.key \
		--kubelet-client-certificate=$p/apiserver-kubelet-client.crt --kubelet-client-key=$p/apiserver-kubelet-client.key \
		--kubelet-preferred-address-types=InternalIP,Hostname \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file=$p/sa.pub --service-account-signing-key-file=$p/sa.key \
		>"$g/etc/systemd/system/kube-apiserver.service"
	unit kube-controller-manager kube-apiserver.service --kubeconfig=$k/controller-manager.conf \
		--authentication-kubeconfig=$k/controller-manager.conf --authorization-kubeconfig=$k/controller-manager.conf \
		--bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
		--cluster-signing-cert-file=$p/ca.crt --cluster-signing-key-file=$p/ca.key --root-ca-file=$p/ca.crt \
		--service-account-private-key-file=$p/sa.key --service-cluster-ip-range=$SERVICE_CIDR \
		>"$g/etc/systemd/system/kube-controller-manager.service"
	unit kube-scheduler kube-apiserver.service --kubeconfig=$k/scheduler.conf --leader-elect=false \
		--authentication-kubeconfig=$k/scheduler.conf --authorization-kubeconfig=$k/scheduler.conf \
		--bind-address=127.0.0.1 >"$g/etc/systemd/system/kube-scheduler.service"
	unit kubelet "containerd.service fabricks-pause-image.service" --config=/var/lib/kubelet/config.yaml \
		--kubeconfig=$k/kubelet.conf --node-ip=$NODE_IP --hostname-override=$NODE \
		>"$g/etc/systemd/system/kubelet.service"
	unit kube-proxy kube-apiserver.service --config=/var/lib/kube-proxy/config.yaml \
		>"$g/etc/systemd/system/kube-proxy.service"
	cat >"$g/var/lib/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $p/ca.crt }
authorization: { mode: Webhook }
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podCIDR: $POD_CIDR
failSwapOn: true
serializeImagePulls: false
# An 8 GiB disk: image garbage collection must not start at once.
imageGCHighThresholdPercent: 95
evictionHard: { memory.available: 100Mi, nodefs.available: 5%, imagefs.available: 5% }
EOF
	cat >"$g/var/lib/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE
clientConnection: { kubeconfig: $k/kube-proxy.conf }
conntrack: { maxPerCore: 0 }
EOF
}

# The kube binary on an ext4 disk image of its own (made once, beside it): the VM mounts it
# read-only, which is much faster than copying 180 MB through ssh into an emulated guest.
kube_disk() {
	local bin=$1 disk=${1%/*}/kube.ext4 d
	if [[ ! -s $disk ]]; then
		d=$(mktemp -d)
		cp "$bin" "$d/kube"
		mke2fs -q -t ext4 -L kube -d "$d" "$disk.partial" "$(($(stat -c %s "$bin") / 1048576 + 64))M" >/dev/null
		rm -rf "$d"
		mv "$disk.partial" "$disk"
	fi
	echo "$disk"
}

# The kube binary as every component's name in the guest's /usr/local/bin.
install_binary() {
	local c cmds='mkdir -p /opt/kube && mount -o ro /dev/vdb /opt/kube'
	for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
		cmds+=" && ln -sf /opt/kube/kube /usr/local/bin/$c"
	done
	# Mounted again at every boot, before the units start.
	cmds+=" && echo '/dev/vdb /opt/kube ext4 ro,nofail 0 0' >>/etc/fstab"
	"$VM" ssh "$cmds"
}

kctl() { "$(kube_bin)" kubectl --kubeconfig "$KUBECONFIG_HOST" "$@"; }

cmd_up() {
	local bin t0=$SECONDS limit
	bin=$(kube_bin)
	[[ -x $bin ]] || die "no kube binary: run $0 build"
	FABRICKS_VM_DATA_DISK=$(kube_disk "$bin") "$VM" up 6443
	pki
	stage_guest
	install_binary
	"$VM" push "$RUN/guest/etc" "$RUN/guest/var" /
	"$VM" ssh 'systemctl daemon-reload && systemctl enable --now etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy' ||
		die "starting the units failed"
	kubeconfig admin "https://127.0.0.1:$("$VM" port 6443)" >"$KUBECONFIG_HOST"
	# Under TCG (vm.sh's fallback) the control plane takes many minutes to start.
	limit=180
	[[ $(cat "$RUN/accel") == kvm ]] || limit=1500
	for _ in $(seq 1 "$limit"); do
		if [[ $(kctl get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; then
			log "node $NODE Ready $((SECONDS - t0)) s after boot began"
			return 0
		fi
		sleep 1
	done
	kctl get nodes -o wide >&2 || true
	"$VM" ssh 'systemctl --no-pager --failed; journalctl --no-pager -n 40 -u kubelet' >&2 || true
	die "node $NODE not Ready after $limit s"
}

cmd_env() {
	echo "export KUBECONFIG=$KUBECONFIG_HOST"
	echo "export FABRICKS_KUBE=$(kube_bin)"
}

cmd=${1:-}
[[ -n $cmd ]] || usage
shift
case $cmd in
build) cmd_build ;;
up) cmd_up ;;
kubectl) kctl "$@" ;;
env) cmd_env ;;
down) "$VM" down ;;
*) usage ;;
esac
