#!/usr/bin/env bash
# A native linux/amd64 OCI image archive holding Debian's static busybox (/bin/sh, wget, sleep…),
# for the pods the Kubernetes cases run next to Fabricks pods (a client by pod IP). There is no
# docker hub here: the binary comes from the busybox-static package (installed if missing).
#
# usage: busybox-image.sh OUT.tar REF
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: busybox-image.sh OUT.tar REF}
ref=${2:?usage: busybox-image.sh OUT.tar REF}
if [[ ! -x /bin/busybox ]] || ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/tmp"
cp /bin/busybox "$tmp/rootfs/bin/busybox"
for a in sh wget sleep cat ls echo; do ln -s busybox "$tmp/rootfs/bin/$a"; done
"$HERE/rootfs-image.sh" "$out" "$ref" "$tmp/rootfs" '["/bin/sh"]'
