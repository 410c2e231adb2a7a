use crate::blob::{sha256, Blob};
use crate::media;
use crate::payload::Payload;
use crate::tarball::Tarball;
use anyhow::{bail, Context, Result};
use flate2::{write::GzEncoder, Compression};
use oci_spec::image::{Digest, MediaType, ANNOTATION_TITLE};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// How the module is carried in the image's single layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LayerKind {
    /// A gzip tar holding the module at the entrypoint path: an ordinary
    /// filesystem layer that every containerd snapshotter can unpack.
    #[default]
    Tar,
    /// The raw module bytes as an `application/wasm` blob: no unpacking, but
    /// only runtimes that look for that media type can use it.
    Wasm,
}

impl FromStr for LayerKind {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "tar" => Ok(LayerKind::Tar),
            "wasm" => Ok(LayerKind::Wasm),
            other => anyhow::bail!("unknown layer kind {other:?}; use `tar` or `wasm`"),
        }
    }
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayerKind::Tar => "tar",
            LayerKind::Wasm => "wasm",
        })
    }
}

/// A layer blob and its diff_id: the digest of the uncompressed content the
/// image config lists in `rootfs.diff_ids`. A wasm layer has none: it is not a
/// filesystem layer, and containerd 2.x builds the rootfs from tar layers only,
/// rejecting an image whose diff_ids count anything else.
pub(crate) struct Layer {
    pub blob: Blob,
    pub diff_id: Option<Digest>,
}

/// Builds the layer of `payload`, with every timestamp set to `mtime` (seconds since the Unix
/// epoch).
pub(crate) fn build(kind: LayerKind, payload: &Payload, mtime: u64) -> Result<Layer> {
    match (kind, payload) {
        (LayerKind::Tar, _) => gzip_layer(payload_tar(payload, mtime)?),
        (LayerKind::Wasm, Payload::File { path, data }) => Ok(wasm_layer(data, path)),
        (LayerKind::Wasm, Payload::Tree { .. }) => {
            bail!("a payload of several files goes in a tar layer (--layer tar); a wasm layer holds one module")
        }
    }
}

fn wasm_layer(module: &[u8], entrypoint: &str) -> Layer {
    let mut blob = Blob::new(MediaType::Other(media::WASM_LAYER.into()), module.to_vec());
    // Records the file name the module had, the way other wasm-in-OCI tools
    // do, for runtimes that materialise the blob as a file.
    let file_name = entrypoint.rsplit('/').next().unwrap_or(entrypoint);
    let annotations = HashMap::from([(ANNOTATION_TITLE.to_owned(), file_name.to_owned())]);
    blob.descriptor_mut().set_annotations(Some(annotations));
    Layer { diff_id: None, blob }
}

/// A filesystem layer from an uncompressed tar: the tar gzipped, its digest
/// as the diff_id.
pub(crate) fn gzip_layer(tar: Vec<u8>) -> Result<Layer> {
    // gzip with no file name and a zero header mtime, so the compressed bytes
    // depend on the content alone.
    let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
    std::io::Write::write_all(&mut gzip, &tar).context("compressing the image layer")?;
    let compressed = gzip.finish().context("compressing the image layer")?;
    Ok(Layer { diff_id: Some(sha256(&tar)), blob: Blob::new(MediaType::ImageLayerGzip, compressed) })
}

/// An uncompressed tar of the payload: its directories (sorted), then its files (sorted), so
/// every parent comes before what it holds and equal payloads give equal bytes. Files keep
/// only their executable bit (0755 or 0644), directories are 0755.
fn payload_tar(payload: &Payload, mtime: u64) -> Result<Vec<u8>> {
    let (mut dirs, mut files): (Vec<_>, Vec<_>) = payload.layer_entries().into_iter().partition(|e| e.file.is_none());
    dirs.sort_by(|a, b| a.path.cmp(&b.path));
    dirs.dedup_by(|a, b| a.path == b.path);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut tar = Tarball::new(Vec::new(), mtime);
    for dir in &dirs {
        tar.dir(&format!("{}/", dir.path))?;
    }
    for file in &files {
        let (data, mode) = file.file.expect("partitioned: files have content");
        tar.file(&file.path, data, mode)?;
    }
    tar.finish()
}
