//! Publishing to a registry: `fabricks push ARCHIVE` and `fabricks build --push`. Blobs the
//! registry lacks, then the manifests by digest, then the image index under the tag, last, so
//! a failed push never leaves a tag naming missing content.

use crate::auth;
use crate::cli::{PushArgs, RegistryArgs};
use crate::registry::{self, Registry};
use anyhow::{Context, Result};
use fabricks_image::{Blob, Destination, Image, Published, Publisher, Reference, Transfer};
use serde::Serialize;
use std::collections::HashSet;

/// What a push did, as `--json` prints it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PushReport {
    pub reference: String,
    /// Digest of the image index the tag points to.
    pub digest: String,
    pub manifest_digest: String,
    pub uploaded_bytes: u64,
    pub uploaded_blobs: usize,
    pub skipped_blobs: usize,
}

impl PushReport {
    pub fn new(image: &Image, published: &Published) -> PushReport {
        let transfer = published.transfer.unwrap_or_default();
        PushReport {
            reference: published.destination.to_string(),
            digest: published.digest.to_string(),
            manifest_digest: image.manifest_blob().digest().to_string(),
            uploaded_bytes: transfer.uploaded_bytes,
            uploaded_blobs: transfer.uploaded_blobs,
            skipped_blobs: transfer.skipped_blobs,
        }
    }

    pub fn print(&self, json: bool) -> Result<()> {
        if json {
            println!("{}", serde_json::to_string(self)?);
        } else {
            println!("pushed: {}", self.reference);
            println!("digest: {}", self.digest);
        }
        Ok(())
    }
}

pub fn push_command(args: PushArgs) -> Result<()> {
    let reference: Reference =
        args.reference.parse().with_context(|| format!("the push target {:?}", args.reference))?;
    let mut image = fabricks_image::read_archive_file(&args.image)?;
    image.list_for_nodes(&args.index.platforms()?)?;
    let mut publisher = RegistryPublisher::new(reference, &args.registry)?;
    let published = publisher.publish(&image)?;
    PushReport::new(&image, &published[0]).print(args.json)
}

/// Pushes images to one tag of a registry.
pub struct RegistryPublisher {
    registry: Registry,
    target: Reference,
}

impl RegistryPublisher {
    /// For `target`, with the credentials the flags, environment or docker config give.
    pub fn new(target: Reference, args: &RegistryArgs) -> Result<RegistryPublisher> {
        let credentials = auth::credentials(target.registry(), &args.auth_flags())?;
        let registry = Registry::new(&target, args.insecure, credentials);
        Ok(RegistryPublisher { registry, target })
    }
}

impl Publisher for RegistryPublisher {
    fn publish(&mut self, image: &Image) -> Result<Vec<Published>> {
        let runtime = registry::runtime()?;
        let upload = registry::Upload::new(&self.registry, &self.target);
        let (digest, transfer) = runtime.block_on(async {
            upload.authenticate().await?;
            push(&upload, image).await
        })?;
        log::info!("{digest} is {}", self.target);
        Ok(vec![Published {
            destination: Destination::Registry(self.target.to_string()),
            digest,
            transfer: Some(transfer),
        }])
    }
}

/// What a push needs from a registry (the unit tests' seam; [`registry::Upload`] is the real
/// one, which names the registry and the step in its errors).
pub(crate) trait Uploads {
    /// Says whether the repository has the blob; sets up auth on first use.
    async fn has_blob(&self, blob: &Blob) -> Result<bool>;
    async fn put_blob(&self, blob: &Blob) -> Result<()>;
    /// A manifest by its digest.
    async fn put_manifest(&self, manifest: &Blob) -> Result<()>;
    /// The index, under the tag.
    async fn put_index(&self, index: &Blob) -> Result<()>;
}

/// Blobs first (the ones the registry has are skipped), then every manifest once, then the
/// index under the tag. Returns the index digest and what moved.
pub(crate) async fn push(
    registry: &impl Uploads,
    image: &Image,
) -> Result<(fabricks_image::oci_spec::image::Digest, Transfer)> {
    let mut transfer = Transfer::default();
    for blob in image.blobs() {
        if registry.has_blob(blob).await? {
            log::info!("blob {} ({}) exists, skipped", blob.digest(), size(blob.data().len()));
            transfer.skipped_blobs += 1;
            continue;
        }
        registry.put_blob(blob).await?;
        log::info!("blob {} ({}) uploaded", blob.digest(), size(blob.data().len()));
        transfer.uploaded_bytes += blob.data().len() as u64;
        transfer.uploaded_blobs += 1;
    }
    let mut pushed = HashSet::new();
    for entry in image.entries() {
        if pushed.insert(entry.manifest.digest().clone()) {
            registry.put_manifest(&entry.manifest).await?;
            log::info!("manifest {} pushed", entry.manifest.digest());
        }
    }
    let index = image.index()?;
    registry.put_index(&index).await?;
    log::info!("index {} pushed", index.digest());
    Ok((index.digest().clone(), transfer))
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabricks_image::oci_spec::image::{Arch, Os, PlatformBuilder};
    use fabricks_image::{ImageOptions, LayerKind, Payload};
    use std::sync::Mutex;

    /// A registry as a list of what was asked of it, holding some blobs already.
    #[derive(Default)]
    struct Recording {
        has: HashSet<String>,
        calls: Mutex<Vec<String>>,
    }

    impl Recording {
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
        fn record(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }
    }

    impl Uploads for Recording {
        async fn has_blob(&self, blob: &Blob) -> Result<bool> {
            Ok(self.has.contains(&blob.digest().to_string()))
        }
        async fn put_blob(&self, blob: &Blob) -> Result<()> {
            self.record(format!("blob {}", blob.digest()));
            Ok(())
        }
        async fn put_manifest(&self, manifest: &Blob) -> Result<()> {
            self.record(format!("manifest {}", manifest.digest()));
            Ok(())
        }
        async fn put_index(&self, index: &Blob) -> Result<()> {
            self.record(format!("index {}", index.digest()));
            Ok(())
        }
    }

    fn image(layer: LayerKind) -> Image {
        let mut options = ImageOptions::new("localhost/x:1".parse().unwrap());
        options.layer = layer;
        options.created = Some(0);
        options.node_platforms = ["amd64", "arm64"]
            .map(|arch| PlatformBuilder::default().os(Os::Linux).architecture(Arch::from(arch)).build().unwrap())
            .to_vec();
        Image::build(&Payload::file("/x.wasm", b"\0asm\x01\0\0\0".to_vec()), &options).unwrap()
    }

    fn run(registry: &Recording, image: &Image) -> (String, Transfer) {
        let (digest, transfer) = registry::runtime().unwrap().block_on(push(registry, image)).unwrap();
        (digest.to_string(), transfer)
    }

    #[test]
    fn blobs_then_each_manifest_once_then_the_index_last() {
        let image = image(LayerKind::Tar);
        let registry = Recording::default();
        let (digest, transfer) = run(&registry, &image);
        let calls = registry.calls();
        // config, layer, two node configs; the own manifest and two node manifests; the index.
        assert_eq!(calls.len(), 4 + 3 + 1, "{calls:#?}");
        assert!(calls[..4].iter().all(|c| c.starts_with("blob ")), "{calls:#?}");
        assert!(calls[4..7].iter().all(|c| c.starts_with("manifest ")), "{calls:#?}");
        assert_eq!(calls[7], format!("index {digest}"));
        assert_eq!(digest, image.index().unwrap().digest().to_string());
        assert_eq!((transfer.uploaded_blobs, transfer.skipped_blobs), (4, 0));
        let bytes: usize = image.blobs().iter().map(|b| b.data().len()).sum();
        assert_eq!(transfer.uploaded_bytes, bytes as u64);
    }

    #[test]
    fn a_wasm_layer_pushes_its_one_manifest_once() {
        let image = image(LayerKind::Wasm);
        let registry = Recording::default();
        run(&registry, &image);
        let manifests: Vec<String> = registry.calls().into_iter().filter(|c| c.starts_with("manifest")).collect();
        assert_eq!(manifests, [format!("manifest {}", image.manifest_blob().digest())]);
    }

    #[test]
    fn blobs_the_registry_has_are_skipped() {
        let image = image(LayerKind::Tar);
        let layer = image.layers()[0].digest().to_string();
        let registry = Recording { has: HashSet::from([layer.clone()]), ..Recording::default() };
        let (_, transfer) = run(&registry, &image);
        assert_eq!((transfer.uploaded_blobs, transfer.skipped_blobs), (3, 1));
        assert!(!registry.calls().contains(&format!("blob {layer}")));
    }

    #[test]
    fn the_report_names_the_tag_index_and_manifest() {
        let image = image(LayerKind::Tar);
        let published = Published {
            destination: Destination::Registry("127.0.0.1:5000/a/b:c".into()),
            digest: image.index().unwrap().digest().clone(),
            transfer: Some(Transfer { uploaded_bytes: 7, uploaded_blobs: 1, skipped_blobs: 3 }),
        };
        let report = PushReport::new(&image, &published);
        assert_eq!(report.reference, "127.0.0.1:5000/a/b:c");
        assert_eq!(report.manifest_digest, image.manifest_blob().digest().to_string());
        assert_eq!((report.uploaded_bytes, report.skipped_blobs), (7, 3));
    }
}
