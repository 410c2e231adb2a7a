//! The OCI image-layout archive: a tar of `oci-layout`, `index.json` and
//! `blobs/sha256/<hex>`, which `ctr images import` and other OCI tools load.

use crate::tarball::Tarball;
use crate::{json, Blob, Reference, WasmImage, ANNOTATION_CONTAINERD_IMAGE_NAME};
use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType, OciLayoutBuilder, ANNOTATION_REF_NAME};
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;

/// What an image-layout archive is written from: a wasm image, or a native one
/// ([`crate::NativeImage`]).
pub trait ArchiveImage {
    fn reference(&self) -> &Reference;
    /// Seconds since the Unix epoch, for the archive's file times.
    fn created(&self) -> u64;
    /// Every blob, manifest last.
    fn blobs(&self) -> Vec<&Blob>;
    /// The manifest's descriptor with the image's platform.
    fn manifest_descriptor(&self) -> Descriptor;
}

impl ArchiveImage for WasmImage {
    fn reference(&self) -> &Reference {
        WasmImage::reference(self)
    }
    fn created(&self) -> u64 {
        WasmImage::created(self)
    }
    fn blobs(&self) -> Vec<&Blob> {
        WasmImage::blobs(self).to_vec()
    }
    fn manifest_descriptor(&self) -> Descriptor {
        WasmImage::manifest_descriptor(self)
    }
}

/// The `index.json` of the archive: one manifest descriptor with the image's
/// platform, named by its full reference for containerd and by its tag for the
/// OCI image-layout convention.
pub fn index(image: &impl ArchiveImage) -> Result<ImageIndex> {
    let mut manifest = image.manifest_descriptor();
    manifest.set_annotations(Some(HashMap::from([
        (ANNOTATION_CONTAINERD_IMAGE_NAME.to_owned(), image.reference().to_string()),
        (ANNOTATION_REF_NAME.to_owned(), image.reference().tag().to_owned()),
    ])));
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest])
        .build()
        .context("assembling index.json")
}

/// Writes `image` as an image-layout tar to `out` and hands `out` back.
pub fn write_archive<W: Write>(image: &impl ArchiveImage, out: W) -> Result<W> {
    let layout = OciLayoutBuilder::default().image_layout_version("1.0.0").build()?;
    let mut tar = Tarball::new(out, image.created());
    tar.file("oci-layout", &json::canonical(&layout)?, 0o644)?;
    tar.file("index.json", &json::canonical(&index(image)?)?, 0o644)?;
    tar.dir("blobs/")?;
    tar.dir("blobs/sha256/")?;
    for blob in image.blobs() {
        let path = format!("blobs/sha256/{}", blob.digest().digest());
        tar.file(&path, blob.data(), 0o644)?;
    }
    tar.finish()
}

/// Writes the archive to `path` through a temporary file in the same
/// directory, so a failed write never leaves a truncated archive behind.
pub fn write_archive_file(image: &impl ArchiveImage, path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {} for the image archive", dir.display()))?;
    let temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}; is it writable?", dir.display()))?;
    let out = write_archive(image, BufWriter::new(temp))?;
    let temp = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing the image archive in {}", dir.display()))?;
    temp.persist(path).with_context(|| format!("moving the image archive into place at {}", path.display()))?;
    Ok(())
}
