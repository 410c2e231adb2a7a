//! One reader for images wherever they are: an image-layout archive
//! ([`crate::archive::ArchiveSource`]) or a registry (the CLI's source over `oci-client`). A
//! [`Source`] hands out documents and blobs; [`read_image`] resolves index → manifest → config
//! → layers, checks every blob against its descriptor and returns an [`Image`].

use crate::blob::Blob;
use crate::config::ImageConfig;
use crate::index::{self, EntryKind};
use crate::{media, Image, Reference};
use anyhow::{bail, ensure, Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

/// Where images are read from.
pub trait Source {
    /// The document at the top (a registry's tag, an archive's `index.json`): its bytes and,
    /// when the source says, its media type.
    fn top(&mut self) -> Result<(Option<String>, Vec<u8>)>;
    /// A manifest or index an index lists.
    fn manifest(&mut self, descriptor: &Descriptor) -> Result<Vec<u8>>;
    /// A config or layer blob.
    fn blob(&mut self, descriptor: &Descriptor) -> Result<Vec<u8>>;
}

/// Which image to take from an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Any image: the index's only entry, else its wasm one ([`index::wasm_manifest`]). What a
    /// push of an archive takes, native images included.
    Any,
    /// A wasm image, refused otherwise before its layers are fetched: what `fabricks run` takes.
    Wasm,
}

/// Indexes nested deeper than this are refused (an archive of `ctr export` has one level).
const MAX_DEPTH: usize = 3;

/// Reads the image `source` names, as `reference`.
pub fn read_image(source: &mut dyn Source, reference: Reference, want: Want) -> Result<Image> {
    let (media_type, mut document) = source.top()?;
    let mut media_type = media_type.unwrap_or_else(|| declared_media_type(&document));
    let mut entry: Option<Descriptor> = None;
    for _ in 0..MAX_DEPTH {
        if !media::is_index(&media_type) {
            break;
        }
        let index: ImageIndex = serde_json::from_slice(&document).context("parsing the image index")?;
        let chosen = choose(&index, want).map_err(|why| anyhow::anyhow!("{reference} {why}"))?.clone();
        document = Blob::verified(&chosen, source.manifest(&chosen)?)?.data().to_vec();
        media_type = chosen.media_type().to_string();
        entry = Some(chosen);
    }
    ensure!(!media::is_index(&media_type), "{reference}: image indexes nested more than {MAX_DEPTH} deep");
    ensure!(
        media::MANIFEST_TYPES.contains(&media_type.as_str()),
        "{reference}: the registry or archive sent a {media_type:?} document, not an image manifest ({})",
        media::MANIFEST_TYPES.join(", ")
    );
    let manifest_blob = match &entry {
        Some(descriptor) => Blob::verified(descriptor, document)?,
        None => Blob::new(MediaType::from(media_type.as_str()), document),
    };
    let manifest = ImageManifest::from_reader(manifest_blob.data()).context("parsing the image manifest")?;
    let config_blob = Blob::verified(manifest.config(), source.blob(manifest.config())?)
        .with_context(|| format!("{reference}: its config"))?;
    let config = ImageConfig::parse(manifest.config().media_type(), config_blob.data())
        .with_context(|| format!("{reference}: its config"))?;
    if want == Want::Wasm {
        check_wasm(&reference, entry.as_ref(), &config, &manifest)?;
    }
    let layers = manifest
        .layers()
        .iter()
        .map(|layer| Blob::verified(layer, source.blob(layer)?).with_context(|| format!("{reference}: its layer")))
        .collect::<Result<Vec<_>>>()?;
    let platform = entry.as_ref().and_then(|e| e.platform().clone());
    Image::from_parts(reference, platform, manifest_blob, config_blob, layers)
}

/// The `mediaType` a document declares; an index without one is told by its `manifests`.
fn declared_media_type(document: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(document).unwrap_or_default();
    match value["mediaType"].as_str() {
        Some(media_type) => media_type.to_owned(),
        None if value["manifests"].is_array() => MediaType::ImageIndex.to_string(),
        None => MediaType::ImageManifest.to_string(),
    }
}

fn choose(index: &ImageIndex, want: Want) -> std::result::Result<&Descriptor, String> {
    match (want, index.manifests().as_slice()) {
        (_, [only]) if media::is_index(only.media_type().as_ref()) => Ok(only),
        (Want::Any, [only]) => Ok(only),
        (Want::Any, _) => index::wasm_manifest(index).map_err(|platforms| {
            format!(
                "lists {} images and none for wasm ({platforms}); give an archive of one image",
                index.manifests().len()
            )
        }),
        (Want::Wasm, _) => {
            index::wasm_manifest(index).map_err(|platforms| format!("is not a wasm image (platform {platforms})"))
        }
    }
}

/// A wasm image: the index entry says so, or else the config, or else every layer is wasm.
fn check_wasm(
    reference: &Reference,
    entry: Option<&Descriptor>,
    config: &ImageConfig,
    manifest: &ImageManifest,
) -> Result<()> {
    if entry.is_some_and(|e| EntryKind::of(e) != EntryKind::Other) || config.is_wasm() {
        return Ok(());
    }
    let wasm_layers = !manifest.layers().is_empty()
        && manifest.layers().iter().all(|l| media::is_wasm_layer(l.media_type().as_ref()));
    if config.platform().is_none() && wasm_layers {
        return Ok(());
    }
    bail!("{reference} is not a wasm image (platform {})", config.platform_name())
}
