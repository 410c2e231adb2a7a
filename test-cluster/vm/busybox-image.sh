#!/usr/bin/env bash
# A native linux/amd64 OCI image archive holding Debian's static busybox (/bin/sh, wget, sleep…),
# for the pods the Kubernetes cases run next to Fabricks pods (a client by pod IP). There is no
# docker hub here: the binary comes from the busybox-static package (installed if missing).
#
# usage: busybox-image.sh OUT.tar REF
set -euo pipefail
out=$(realpath -m "${1:?usage: busybox-image.sh OUT.tar REF}")
ref=${2:?usage: busybox-image.sh OUT.tar REF}
if [[ ! -x /bin/busybox ]] || ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/tmp" "$tmp/oci/blobs/sha256"
cp /bin/busybox "$tmp/rootfs/bin/busybox"
for a in sh wget sleep cat ls echo; do ln -s busybox "$tmp/rootfs/bin/$a"; done
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tmp/rootfs" -cf "$tmp/layer" bin tmp

# blob FILE: into the layout's blobs; sets DIGEST and DESC (a descriptor's digest and size).
blob() {
	DIGEST=sha256:$(sha256sum "$1" | cut -d' ' -f1)
	DESC=$(printf '"digest": "%s", "size": %d' "$DIGEST" "$(stat -c %s "$1")")
	mv "$1" "$tmp/oci/blobs/sha256/${DIGEST#sha256:}"
}
blob "$tmp/layer"
layer=$DESC
printf '{"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/bin/sh"], "Env": ["PATH=/bin"]}, "rootfs": {"type": "layers", "diff_ids": ["%s"]}}' \
	"$DIGEST" >"$tmp/config"
blob "$tmp/config"
config=$DESC
printf '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"mediaType": "application/vnd.oci.image.config.v1+json", %s}, "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", %s}]}' \
	"$config" "$layer" >"$tmp/manifest"
blob "$tmp/manifest"
printf '{"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", %s, "platform": {"architecture": "amd64", "os": "linux"}, "annotations": {"org.opencontainers.image.ref.name": "%s"}}]}' \
	"$DESC" "${ref##*:}" >"$tmp/oci/index.json"
echo '{"imageLayoutVersion": "1.0.0"}' >"$tmp/oci/oci-layout"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tmp/oci" -cf "$out" oci-layout index.json blobs
