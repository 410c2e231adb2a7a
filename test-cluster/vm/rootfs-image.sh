#!/usr/bin/env bash
# A native linux/amd64 OCI image archive of a root filesystem directory, one layer, for the
# runc pods the Kubernetes cases run next to Fabricks pods (there is no docker hub here).
#
# usage: rootfs-image.sh OUT.tar REF ROOTFS ENTRYPOINT-JSON
#   e.g. rootfs-image.sh busybox.tar localhost:5000/test/busybox:1 rootfs '["/bin/sh"]'
set -euo pipefail
usage="usage: rootfs-image.sh OUT.tar REF ROOTFS ENTRYPOINT-JSON"
out=$(realpath -m "${1:?$usage}")
ref=${2:?$usage}
rootfs=${3:?$usage}
entrypoint=${4:?$usage}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/oci/blobs/sha256"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$tmp/layer" .

# blob FILE: into the layout's blobs; sets DIGEST and DESC (a descriptor's digest and size).
blob() {
	DIGEST=sha256:$(sha256sum "$1" | cut -d' ' -f1)
	DESC=$(printf '"digest": "%s", "size": %d' "$DIGEST" "$(stat -c %s "$1")")
	mv "$1" "$tmp/oci/blobs/sha256/${DIGEST#sha256:}"
}
blob "$tmp/layer"
layer=$DESC
printf '{"architecture": "amd64", "os": "linux", "config": {"Entrypoint": %s, "Env": ["PATH=/bin"]}, "rootfs": {"type": "layers", "diff_ids": ["%s"]}}' \
	"$entrypoint" "$DIGEST" >"$tmp/config"
blob "$tmp/config"
config=$DESC
printf '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"mediaType": "application/vnd.oci.image.config.v1+json", %s}, "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", %s}]}' \
	"$config" "$layer" >"$tmp/manifest"
blob "$tmp/manifest"
printf '{"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", %s, "platform": {"architecture": "amd64", "os": "linux"}, "annotations": {"org.opencontainers.image.ref.name": "%s"}}]}' \
	"$DESC" "${ref##*:}" >"$tmp/oci/index.json"
echo '{"imageLayoutVersion": "1.0.0"}' >"$tmp/oci/oci-layout"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tmp/oci" -cf "$out" oci-layout index.json blobs
