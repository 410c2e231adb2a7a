//! Reading an image-layout archive (as `fabricks build` writes it) back into
//! the blobs a registry push needs.

use anyhow::{bail, ensure, Context, Result};
use fabricks_image::oci_spec::image::{Arch, Descriptor, ImageIndex, ImageManifest, Os, Platform, PlatformBuilder};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

/// An image as a registry holds it: blobs (config, layers), the manifest's
/// bytes, and the descriptor an index lists it by.
#[derive(Debug, Clone)]
pub struct PushableImage {
    /// The manifest's descriptor with its platform, without archive-only annotations.
    pub manifest_descriptor: Descriptor,
    pub manifest: Vec<u8>,
    /// Annotations of the manifest, repeated on the index.
    pub annotations: BTreeMap<String, String>,
    /// Config first, then the layers.
    pub blobs: Vec<(Descriptor, Vec<u8>)>,
}

impl PushableImage {
    pub fn from_image(image: &fabricks_image::WasmImage) -> PushableImage {
        PushableImage {
            manifest_descriptor: image.manifest_descriptor(),
            manifest: image.manifest_blob().data().to_vec(),
            annotations: image.manifest().annotations().clone().unwrap_or_default().into_iter().collect(),
            blobs: [image.config_blob(), image.layer_blob()]
                .into_iter()
                .map(|b| (b.descriptor().clone(), b.data().to_vec()))
                .collect(),
        }
    }

    /// Reads an OCI image-layout tar (plain or gzip) holding one image.
    pub fn read_archive(path: &Path) -> Result<PushableImage> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening the image archive {}", path.display()))?;
        let mut reader = std::io::BufReader::new(file);
        let mut magic = [0u8; 2];
        let gzip = reader.read(&mut magic).map(|n| n == 2 && magic == [0x1f, 0x8b]).unwrap_or(false);
        let file = std::fs::File::open(path)?;
        let entries = if gzip { read_entries(flate2::read::GzDecoder::new(file)) } else { read_entries(file) }
            .with_context(|| format!("reading the image archive {}", path.display()))?;
        from_entries(&entries)
            .with_context(|| format!("{} is not a single-image OCI image-layout archive", path.display()))
    }
}

fn read_entries<R: Read>(reader: R) -> Result<HashMap<String, Vec<u8>>> {
    let mut archive = tar::Archive::new(reader);
    let mut files = HashMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.to_string_lossy().trim_start_matches("./").to_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        files.insert(name, data);
    }
    Ok(files)
}

fn from_entries(files: &HashMap<String, Vec<u8>>) -> Result<PushableImage> {
    let index = files.get("index.json").context("no index.json")?;
    let index: ImageIndex = serde_json::from_slice(index).context("parsing index.json")?;
    let [descriptor] = index.manifests().as_slice() else {
        bail!("index.json lists {} manifests; push needs exactly one", index.manifests().len());
    };
    let blob = |d: &Descriptor| -> Result<Vec<u8>> {
        let digest = d.digest();
        let path = format!("blobs/{}/{}", digest.algorithm(), digest.digest());
        let data = files.get(&path).with_context(|| format!("missing blob {path}"))?;
        ensure!(
            data.len() as u64 == d.size(),
            "blob {path} has {} bytes, its descriptor says {}",
            data.len(),
            d.size()
        );
        Ok(data.clone())
    };
    let manifest_bytes = blob(descriptor)?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).context("parsing the image manifest")?;
    let config = blob(manifest.config())?;
    let platform = platform_of(&config)?;
    let mut blobs = vec![(manifest.config().clone(), config)];
    for layer in manifest.layers() {
        blobs.push((layer.clone(), blob(layer)?));
    }
    let mut manifest_descriptor = descriptor.clone();
    manifest_descriptor.set_annotations(None);
    if manifest_descriptor.platform().is_none() {
        manifest_descriptor.set_platform(Some(platform));
    }
    Ok(PushableImage {
        manifest_descriptor,
        manifest: manifest_bytes,
        annotations: manifest.annotations().clone().unwrap_or_default().into_iter().collect(),
        blobs,
    })
}

/// The platform an image's config names (`os`, `architecture`).
fn platform_of(config: &[u8]) -> Result<Platform> {
    let config: serde_json::Value = serde_json::from_slice(config).context("parsing the image config")?;
    let field = |name: &str| -> Result<String> {
        Ok(config[name].as_str().with_context(|| format!("the image config has no {name}"))?.to_owned())
    };
    Ok(PlatformBuilder::default()
        .os(Os::from(field("os")?.as_str()))
        .architecture(Arch::from(field("architecture")?.as_str()))
        .build()?)
}
