//! The image index a pushed tag points to, and the node-platform entries in it.
//!
//! A node's CRI pulls only what matches its own platform (`linux/amd64`…): an
//! index that lists the module under `wasi/wasm` alone gives "no match for
//! platform in manifest". So a wasm image is also listed under each node
//! platform asked for. How depends on the layer:
//! - a tar layer gets a manifest of its own per node platform, whose config is
//!   the wasm config with only `os`/`architecture` changed. containerd 2.x
//!   unpacks a layer only when the config's platform is the node's; the shim
//!   recognises the module by its bytes, not by the config.
//! - a wasm layer is never unpacked, and containerd requires its config to
//!   list no `diff_ids`, so the `wasi/wasm` manifest itself is listed again.
//!
//! Runtimes other than Fabricks that pull such an entry get the module, which
//! they cannot execute; the annotation [`ANNOTATION_MODULE`] says what it is.

use crate::oci_archive::PushableImage;
use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use fabricks_image::oci_spec::image::{Arch, Descriptor, MediaType, Os, Platform, PlatformBuilder};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};

/// On node-platform entries: the platform of the module they carry.
pub const ANNOTATION_MODULE: &str = "fabricks.io/module-platform";

/// The node platforms listed unless --node-platform says otherwise.
const DEFAULT_NODE_PLATFORMS: &str = "linux/amd64,linux/arm64";

#[derive(Debug, Clone, Args)]
pub struct IndexArgs {
    /// Node platforms (OS/ARCH, comma-separated or repeated) under which the
    /// tag's index also lists the image, so that a Kubernetes node's CRI,
    /// which pulls only its own platform, finds it; `none` lists wasi/wasm only.
    #[arg(long = "node-platform", value_name = "OS/ARCH", value_delimiter = ',', default_value = DEFAULT_NODE_PLATFORMS)]
    pub node_platforms: Vec<String>,
}

/// One manifest of the index: its descriptor (with platform), its bytes, and
/// any blob it needs beyond the image's own.
#[derive(Debug, Clone)]
pub struct Entry {
    pub descriptor: Descriptor,
    pub manifest: Vec<u8>,
    pub extra_blob: Option<(Descriptor, Vec<u8>)>,
}

impl IndexArgs {
    /// The platforms asked for, checked: `none` gives none.
    pub fn platforms(&self) -> Result<Vec<Platform>> {
        if self.node_platforms.iter().any(|p| p == "none") {
            ensure!(self.node_platforms.len() == 1, "--node-platform none cannot be combined with platforms");
            return Ok(Vec::new());
        }
        self.node_platforms.iter().map(|p| parse_platform(p)).collect()
    }
}

fn parse_platform(text: &str) -> Result<Platform> {
    let Some((os, arch)) = text.split_once('/') else {
        bail!("node platform {text:?} is not OS/ARCH, e.g. linux/amd64");
    };
    ensure!(
        !os.is_empty() && !arch.is_empty() && !arch.contains('/'),
        "node platform {text:?} is not OS/ARCH, e.g. linux/amd64"
    );
    Ok(PlatformBuilder::default().os(Os::from(os)).architecture(Arch::from(arch)).build()?)
}

/// The image's own manifest first, then one entry per node platform (none for
/// an image that is already for a node platform, i.e. a native one).
pub fn entries(image: &PushableImage, node_platforms: &[Platform]) -> Result<Vec<Entry>> {
    let own =
        Entry { descriptor: image.manifest_descriptor.clone(), manifest: image.manifest.clone(), extra_blob: None };
    let is_wasm = own.descriptor.platform().as_ref().is_some_and(|p| *p.architecture() == Arch::Wasm);
    let mut entries = vec![own.clone()];
    if !is_wasm {
        return Ok(entries);
    }
    let (config_descriptor, config) = &image.blobs[0];
    let has_diff_ids = has_diff_ids(config)?;
    for platform in node_platforms {
        let mut entry = match has_diff_ids {
            true => node_manifest(image, config_descriptor, config, platform)?,
            false => own.clone(),
        };
        entry.descriptor.set_platform(Some(platform.clone()));
        entry.descriptor.set_annotations(Some(HashMap::from([(ANNOTATION_MODULE.to_owned(), "wasi/wasm".to_owned())])));
        entries.push(entry);
    }
    Ok(entries)
}

fn has_diff_ids(config: &[u8]) -> Result<bool> {
    let config: serde_json::Value = serde_json::from_slice(config).context("parsing the image config")?;
    Ok(config["rootfs"]["diff_ids"].as_array().is_some_and(|ids| !ids.is_empty()))
}

/// The image's manifest with a copy of its config that names `platform`.
fn node_manifest(
    image: &PushableImage,
    config_descriptor: &Descriptor,
    config: &[u8],
    platform: &Platform,
) -> Result<Entry> {
    let mut config: serde_json::Value = serde_json::from_slice(config).context("parsing the image config")?;
    config["os"] = platform.os().to_string().into();
    config["architecture"] = platform.architecture().to_string().into();
    // serde_json's maps are sorted: the same image gives the same bytes.
    let config = serde_json::to_vec(&config)?;
    let config_descriptor = descriptor_for(config_descriptor.media_type().clone(), &config);

    let mut manifest: serde_json::Value =
        serde_json::from_slice(&image.manifest).context("parsing the image manifest")?;
    manifest["config"] = serde_json::to_value(&config_descriptor)?;
    let manifest = serde_json::to_vec(&manifest)?;
    Ok(Entry {
        descriptor: descriptor_for(MediaType::ImageManifest, &manifest),
        manifest,
        extra_blob: Some((config_descriptor, config)),
    })
}

fn descriptor_for(media_type: MediaType, data: &[u8]) -> Descriptor {
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
    Descriptor::new(
        media_type,
        data.len() as u64,
        digest.parse::<fabricks_image::oci_spec::image::Digest>().expect("a sha256 digest parses"),
    )
}

/// The index the tag points to: every entry, and the manifest's annotations.
/// Keys are sorted (serde_json's map), so the same image always gives the
/// same index digest.
pub fn index_bytes(entries: &[Entry], annotations: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let manifests = entries
        .iter()
        .map(|e| serde_json::to_value(&e.descriptor))
        .collect::<Result<Vec<_>, _>>()
        .context("encoding the manifest descriptors")?;
    let mut index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageIndex.to_string(),
        "manifests": manifests,
    });
    if !annotations.is_empty() {
        index["annotations"] = serde_json::to_value(annotations)?;
    }
    Ok(serde_json::to_vec(&index)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabricks_image::{ImageOptions, LayerKind, WasmImage};

    fn image(layer: LayerKind) -> PushableImage {
        let mut options = ImageOptions::new("localhost/x:1".parse().unwrap(), "/x.wasm");
        options.layer = layer;
        options.created = Some(0);
        PushableImage::from_image(&WasmImage::build(b"\0asm\x01\0\0\0", &options).unwrap())
    }

    fn node_platforms() -> Vec<Platform> {
        IndexArgs { node_platforms: vec!["linux/amd64".into(), "linux/arm64".into()] }.platforms().unwrap()
    }

    fn json(data: &[u8]) -> serde_json::Value {
        serde_json::from_slice(data).unwrap()
    }

    #[test]
    fn a_tar_layer_gets_a_manifest_per_node_platform_with_that_platform_in_its_config() {
        let image = image(LayerKind::Tar);
        let entries = entries(&image, &node_platforms()).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].descriptor, image.manifest_descriptor);
        let own = json(&image.manifest);
        for (entry, arch) in entries[1..].iter().zip(["amd64", "arm64"]) {
            let platform = entry.descriptor.platform().clone().unwrap();
            assert_eq!(platform.architecture().to_string(), arch);
            let manifest = json(&entry.manifest);
            assert_eq!(manifest["layers"], own["layers"], "the layer is shared");
            let (config_descriptor, config) = entry.extra_blob.clone().unwrap();
            assert_eq!(manifest["config"]["digest"], config_descriptor.digest().to_string());
            let config = json(&config);
            assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some(arch)));
            assert_eq!(config["rootfs"], json(&image.blobs[0].1)["rootfs"]);
            assert_eq!(
                entry.descriptor.digest().to_string(),
                format!("sha256:{}", hex::encode(Sha256::digest(&entry.manifest)))
            );
            assert_eq!(entry.descriptor.annotations().clone().unwrap()[ANNOTATION_MODULE], "wasi/wasm");
        }
    }

    #[test]
    fn a_wasm_layer_lists_its_own_manifest_again() {
        let image = image(LayerKind::Wasm);
        let entries = entries(&image, &node_platforms()).unwrap();
        assert_eq!(entries.len(), 3);
        for entry in &entries[1..] {
            assert_eq!(entry.descriptor.digest(), image.manifest_descriptor.digest());
            assert!(entry.extra_blob.is_none());
        }
    }

    #[test]
    fn none_lists_wasi_wasm_only_and_bad_platforms_are_refused() {
        let none = IndexArgs { node_platforms: vec!["none".into()] }.platforms().unwrap();
        assert_eq!(entries(&image(LayerKind::Tar), &none).unwrap().len(), 1);
        for bad in ["amd64", "linux/", "linux/amd64/v8/x"] {
            let err = IndexArgs { node_platforms: vec![bad.into()] }.platforms().unwrap_err();
            assert!(err.to_string().contains("OS/ARCH"), "{bad}: {err}");
        }
        let err = IndexArgs { node_platforms: vec!["none".into(), "linux/amd64".into()] }.platforms().unwrap_err();
        assert!(err.to_string().contains("cannot be combined"), "{err}");
    }

    #[test]
    fn the_index_is_stable_and_lists_every_entry() {
        let image = image(LayerKind::Tar);
        let entries = entries(&image, &node_platforms()).unwrap();
        let a = index_bytes(&entries, &image.annotations).unwrap();
        assert_eq!(a, index_bytes(&entries, &image.annotations).unwrap());
        let index = json(&a);
        assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
        let platforms: Vec<String> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap())
            })
            .collect();
        assert_eq!(platforms, ["wasi/wasm", "linux/amd64", "linux/arm64"]);
    }
}
