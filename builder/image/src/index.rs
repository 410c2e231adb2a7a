//! The image index a pushed tag points to: which entries it lists, and which entry a wasm
//! runtime takes from it.
//!
//! A node's CRI pulls only what matches its own platform (`linux/amd64`…): an index that lists
//! the module under `wasi/wasm` alone gives "no match for platform in manifest". So a wasm
//! image is also listed under each node platform asked for. How depends on the layer:
//! - a tar layer gets a manifest of its own per node platform, whose config is the wasm config
//!   with only `os`/`architecture` changed. containerd 2.x unpacks a layer only when the
//!   config's platform is the node's; the shim recognises the module by its bytes.
//! - a wasm layer is never unpacked, and containerd requires its config to list no
//!   `diff_ids`, so the wasm manifest itself is listed again.
//!
//! Runtimes other than Fabricks that pull such an entry get the module, which they cannot
//! execute; the annotation [`ANNOTATION_MODULE_PLATFORM`] says what it is.

use crate::blob::Blob;
use crate::json;
use anyhow::{Context, Result};
use oci_spec::image::{Arch, Descriptor, ImageIndex, ImageIndexBuilder, MediaType, Platform};
use std::collections::{BTreeMap, HashMap};

/// On node-platform entries: the platform of the module they carry (`wasi/wasm`).
pub const ANNOTATION_MODULE_PLATFORM: &str = "fabricks.io/module-platform";

/// One manifest of a tag's index: its descriptor (platform, annotations), its bytes, and the
/// config it needs beyond the image's own (a node-platform copy), if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub descriptor: Descriptor,
    pub manifest: Blob,
    pub config: Option<Blob>,
}

/// How an index entry relates to wasm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    /// Its platform's architecture is `wasm` (`wasi/wasm`, `wasip1/wasm`, `wasip2/wasm`).
    Wasm,
    /// A node-platform entry that carries a wasm image ([`ANNOTATION_MODULE_PLATFORM`]).
    WasmForNodes,
    /// Anything else.
    Other,
}

impl EntryKind {
    pub fn of(entry: &Descriptor) -> EntryKind {
        let platform_is_wasm = entry.platform().as_ref().is_some_and(|p| *p.architecture() == Arch::Wasm);
        let carries_wasm = entry.annotations().as_ref().is_some_and(|a| a.contains_key(ANNOTATION_MODULE_PLATFORM));
        match (platform_is_wasm, carries_wasm) {
            (true, _) => EntryKind::Wasm,
            (false, true) => EntryKind::WasmForNodes,
            (false, false) => EntryKind::Other,
        }
    }
}

/// The index's entries in the order a wasm runtime takes them: wasm entries, then
/// node-platform entries carrying wasm, then the rest, each group in index order. The shim
/// takes the first one containerd's content store holds (a CRI pull fetches only the node's
/// platform); `fabricks run` takes [`wasm_manifest`].
pub fn by_preference(index: &ImageIndex) -> Vec<&Descriptor> {
    let mut entries: Vec<&Descriptor> = index.manifests().iter().collect();
    entries.sort_by_key(|entry| EntryKind::of(entry));
    entries
}

/// The entry to take a wasm image from: the first of [`by_preference`] unless it is
/// [`EntryKind::Other`]. The error is the platforms the index lists instead
/// (`linux/amd64, linux/arm64`, or `none`).
pub fn wasm_manifest(index: &ImageIndex) -> std::result::Result<&Descriptor, String> {
    match by_preference(index).first() {
        Some(entry) if EntryKind::of(entry) != EntryKind::Other => Ok(entry),
        _ => Err(platforms(index)),
    }
}

/// `os/arch` of every entry, comma-separated (`none` for an empty index).
pub fn platforms(index: &ImageIndex) -> String {
    let names: Vec<String> = index
        .manifests()
        .iter()
        .map(|entry| match entry.platform() {
            Some(p) => format!("{}/{}", p.os(), p.architecture()),
            None => "?/?".to_owned(),
        })
        .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// The entries a wasm image is listed under for `platforms`, after its own (see the module
/// docs). `own` is the image's manifest descriptor, `config` its config blob.
pub(crate) fn node_entries(
    own: &IndexEntry,
    config: &Blob,
    has_diff_ids: bool,
    platforms: &[Platform],
) -> Result<Vec<IndexEntry>> {
    platforms
        .iter()
        .map(|platform| {
            let mut entry = match has_diff_ids {
                true => node_manifest(own, config, platform)?,
                false => own.clone(),
            };
            entry.descriptor.set_platform(Some(platform.clone()));
            entry.descriptor.set_annotations(Some(HashMap::from([(
                ANNOTATION_MODULE_PLATFORM.to_owned(),
                "wasi/wasm".to_owned(),
            )])));
            Ok(entry)
        })
        .collect()
}

/// The image's manifest with a copy of its config that names `platform`.
fn node_manifest(own: &IndexEntry, config: &Blob, platform: &Platform) -> Result<IndexEntry> {
    let mut copy: serde_json::Value = serde_json::from_slice(config.data()).context("parsing the image config")?;
    copy["os"] = platform.os().to_string().into();
    copy["architecture"] = platform.architecture().to_string().into();
    let copy = Blob::new(config.media_type().clone(), json::canonical(&copy)?);

    let mut manifest: serde_json::Value =
        serde_json::from_slice(own.manifest.data()).context("parsing the image manifest")?;
    manifest["config"] = serde_json::to_value(copy.descriptor())?;
    let manifest = Blob::new(own.manifest.media_type().clone(), json::canonical(&manifest)?);
    Ok(IndexEntry { descriptor: manifest.descriptor().clone(), manifest, config: Some(copy) })
}

/// The index a tag points to: every entry, and `annotations` (the manifest's). Sorted JSON:
/// the same image always gives the same index digest.
pub(crate) fn index_blob(entries: &[IndexEntry], annotations: &BTreeMap<String, String>) -> Result<Blob> {
    let mut index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(entries.iter().map(|e| e.descriptor.clone()).collect::<Vec<_>>());
    if !annotations.is_empty() {
        index = index.annotations(annotations.clone().into_iter().collect::<HashMap<_, _>>());
    }
    let index = index.build().context("assembling the image index")?;
    Ok(Blob::new(MediaType::ImageIndex, json::canonical(&index)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: serde_json::Value) -> ImageIndex {
        let size = 2;
        let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let manifests: Vec<serde_json::Value> = entries
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut e = e.clone();
                e["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
                e["size"] = (size + i).into();
                e["digest"] = digest.into();
                e
            })
            .collect();
        serde_json::from_value(serde_json::json!({"schemaVersion": 2, "manifests": manifests})).unwrap()
    }

    #[test]
    fn wasm_entries_come_first_then_the_node_entries_that_carry_wasm() {
        let index = index(serde_json::json!([
            {"platform": {"os": "linux", "architecture": "amd64"}},
            {"platform": {"os": "linux", "architecture": "arm64"}, "annotations": {ANNOTATION_MODULE_PLATFORM: "wasi/wasm"}},
            {"platform": {"os": "wasi", "architecture": "wasm"}},
        ]));
        let sizes: Vec<u64> = by_preference(&index).iter().map(|d| d.size()).collect();
        assert_eq!(sizes, [4, 3, 2]);
        assert_eq!(wasm_manifest(&index).unwrap().size(), 4);
    }

    #[test]
    fn a_node_entry_carrying_wasm_is_taken_when_no_wasm_entry_is_listed() {
        let index = index(serde_json::json!([
            {"platform": {"os": "linux", "architecture": "amd64"}},
            {"platform": {"os": "linux", "architecture": "arm64"}, "annotations": {ANNOTATION_MODULE_PLATFORM: "wasi/wasm"}},
        ]));
        assert_eq!(wasm_manifest(&index).unwrap().size(), 3);
    }

    #[test]
    fn an_index_without_wasm_names_its_platforms() {
        let linux = index(serde_json::json!([{"platform": {"os": "linux", "architecture": "amd64"}}, {}]));
        assert_eq!(wasm_manifest(&linux).unwrap_err(), "linux/amd64, ?/?");
        assert_eq!(wasm_manifest(&index(serde_json::json!([]))).unwrap_err(), "none");
    }
}
