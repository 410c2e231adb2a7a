//! Taking the wasm binary out of an image: the wasm layer's blob, or the entrypoint's file in
//! the tar layers.

use crate::media::LayerMedia;
use crate::Image;
use anyhow::{bail, ensure, Context, Result};
use oci_spec::image::ANNOTATION_TITLE;
use std::io::Read;

/// A wasm binary and the path the image runs it by (its argv[0]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub entrypoint: String,
    pub data: Vec<u8>,
}

/// The argv[0] of an image whose config names no entrypoint (a CNCF wasm artifact): the wasm
/// layer's title, else this.
const DEFAULT_ENTRYPOINT: &str = "/module.wasm";

impl Image {
    /// The image's wasm binary: its wasm layer if it has one, else the file at the config's
    /// entrypoint in its tar layers (the upper layer wins).
    pub fn module(&self) -> Result<Module> {
        let reference = self.reference();
        if let Some(layer) = self.layers().iter().find(|l| LayerMedia::of(l.media_type()) == LayerMedia::Wasm) {
            let entrypoint = match self.config().argv().first() {
                Some(program) => program.clone(),
                None => match layer.descriptor().annotations().as_ref().and_then(|a| a.get(ANNOTATION_TITLE)) {
                    Some(title) => format!("/{}", title.trim_start_matches('/')),
                    None => DEFAULT_ENTRYPOINT.to_owned(),
                },
            };
            return checked(reference, entrypoint, layer.data().to_vec());
        }
        let entrypoint = self.config().argv().first().cloned().with_context(|| {
            format!("{reference} has no wasm layer, and its config names no entrypoint to find in its tar layers")
        })?;
        for layer in self.layers().iter().rev() {
            let found = match LayerMedia::of(layer.media_type()) {
                LayerMedia::Tar { gzip: true } => from_tar(flate2::read::GzDecoder::new(layer.data()), &entrypoint)?,
                LayerMedia::Tar { gzip: false } => from_tar(layer.data(), &entrypoint)?,
                LayerMedia::Wasm | LayerMedia::Other => None,
            };
            if let Some(data) = found {
                return checked(reference, entrypoint, data);
            }
        }
        let types: Vec<String> = self.layers().iter().map(|l| l.media_type().to_string()).collect();
        bail!(
            "{reference}: no layer holds its entrypoint {entrypoint} (layers: {}); a wasm image has a wasm layer \
             ({}) or a tar layer with the module",
            if types.is_empty() { "none".to_owned() } else { types.join(", ") },
            crate::media::WASM_LAYER_TYPES.join(", ")
        )
    }
}

fn checked(reference: &crate::Reference, entrypoint: String, data: Vec<u8>) -> Result<Module> {
    ensure!(data.starts_with(b"\0asm"), "{reference}: {entrypoint} in the image is not a WebAssembly binary");
    Ok(Module { entrypoint, data })
}

/// The regular file at `entrypoint` in a layer tar, if there is one.
fn from_tar<R: Read>(reader: R, entrypoint: &str) -> Result<Option<Vec<u8>>> {
    let want = entrypoint.trim_start_matches('/');
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().context("reading the image layer")? {
        let mut entry = entry.context("reading the image layer")?;
        let path = entry.path().context("reading the image layer")?.to_string_lossy().into_owned();
        if path.trim_start_matches("./").trim_start_matches('/') == want && entry.header().entry_type().is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).with_context(|| format!("reading {entrypoint} from the image layer"))?;
            return Ok(Some(data));
        }
    }
    Ok(None)
}
