use crate::blob::{sha256, Blob};
use crate::tarball::Tarball;
use crate::RootFile;
use anyhow::{ensure, Context, Result};
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

/// Builds the layer for `module`, placed at the absolute path `entrypoint`,
/// with every timestamp set to `mtime` (seconds since the Unix epoch).
pub(crate) fn build(kind: LayerKind, module: &[u8], entrypoint: &str, mtime: u64) -> Result<Layer> {
    match kind {
        LayerKind::Tar => tar_layer(module, entrypoint, mtime),
        LayerKind::Wasm => Ok(wasm_layer(module, entrypoint)),
    }
}

fn wasm_layer(module: &[u8], entrypoint: &str) -> Layer {
    let mut blob = Blob::new(MediaType::Other(crate::WASM_LAYER_MEDIA_TYPE.into()), module.to_vec());
    // Records the file name the module had, the way other wasm-in-OCI tools
    // do, for runtimes that materialise the blob as a file.
    let file_name = entrypoint.rsplit('/').next().unwrap_or(entrypoint);
    let annotations = HashMap::from([(ANNOTATION_TITLE.to_owned(), file_name.to_owned())]);
    blob.descriptor_mut().set_annotations(Some(annotations));
    Layer { diff_id: None, blob }
}

/// A tar layer of `files` plus the module at `entrypoint` (executable), their directories
/// first, everything sorted: a program that is a tree of files.
pub(crate) fn tree(module: &[u8], entrypoint: &str, files: &[RootFile], mtime: u64) -> Result<Layer> {
    ensure!(
        !files.iter().any(|f| f.path == entrypoint),
        "{entrypoint} is both the module and one of the other files of the image"
    );
    let mut all = files.to_vec();
    all.push(RootFile { path: entrypoint.to_owned(), data: module.to_vec(), mode: 0o755 });
    gzip_layer(crate::native::rootfs_tar(&all, mtime)?)
}

fn tar_layer(module: &[u8], entrypoint: &str, mtime: u64) -> Result<Layer> {
    gzip_layer(module_tar(module, entrypoint, mtime)?)
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

/// An uncompressed tar with the parent directories of `entrypoint` and the
/// module itself, executable, as a container runtime would expect it.
fn module_tar(module: &[u8], entrypoint: &str, mtime: u64) -> Result<Vec<u8>> {
    let relative = entrypoint.trim_start_matches('/');
    let mut tar = Tarball::new(Vec::new(), mtime);
    let mut parent = String::new();
    if let Some((dirs, _file)) = relative.rsplit_once('/') {
        for dir in dirs.split('/') {
            parent.push_str(dir);
            parent.push('/');
            tar.dir(&parent)?;
        }
    }
    tar.file(relative, module, 0o755)?;
    tar.finish()
}
