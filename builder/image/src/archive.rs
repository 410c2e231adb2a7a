//! The OCI image-layout archive: a tar of `oci-layout`, `index.json` and
//! `blobs/sha256/<hex>`, which `ctr images import` and other OCI tools load. Written for one
//! image; read back ([`read_archive_file`]) through the one image reader.

use crate::read::{read_image, Source, Want};
use crate::tarball::Tarball;
use crate::{json, Image, Reference, ANNOTATION_CONTAINERD_IMAGE_NAME};
use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType, OciLayoutBuilder, ANNOTATION_REF_NAME};
use std::collections::HashMap;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

/// The `index.json` of the archive: one manifest descriptor with the image's
/// platform, named by its full reference for containerd and by its tag for the
/// OCI image-layout convention.
pub fn index(image: &Image) -> Result<ImageIndex> {
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

/// Writes `image` as an image-layout tar to `out` and hands `out` back. Holds the image's own
/// manifest only: node-platform entries are for registries (see [`crate::index`]).
pub fn write_archive<W: Write>(image: &Image, out: W) -> Result<W> {
    let layout = OciLayoutBuilder::default().image_layout_version("1.0.0").build()?;
    let mut tar = Tarball::new(out, image.created());
    tar.file("oci-layout", &json::canonical(&layout)?, 0o644)?;
    tar.file("index.json", &json::canonical(&index(image)?)?, 0o644)?;
    tar.dir("blobs/")?;
    tar.dir("blobs/sha256/")?;
    let own = [image.config_blob()].into_iter().chain(image.layers()).chain([image.manifest_blob()]);
    for blob in own {
        let path = format!("blobs/sha256/{}", blob.digest().digest());
        tar.file(&path, blob.data(), 0o644)?;
    }
    tar.finish()
}

/// Writes the archive to `path` through a temporary file in the same
/// directory, so a failed write never leaves a truncated archive behind.
pub fn write_archive_file(image: &Image, path: &Path) -> Result<()> {
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

/// Reads the image of an image-layout tar (plain or gzip; as `fabricks build`, `oras` or
/// `skopeo` write them): the only image of its index, else its wasm one. It is named by the
/// index's `io.containerd.image.name`, else `localhost/<file stem>:latest`.
pub fn read_archive_file(path: &Path) -> Result<Image> {
    let what = || format!("the image archive {}", path.display());
    let data = std::fs::read(path).with_context(|| format!("reading {}", what()))?;
    let mut source = ArchiveSource::from_bytes(&data).with_context(what)?;
    let reference = match source.name() {
        Some(name) => name,
        None => Reference::localhost(&path.file_stem().unwrap_or_default().to_string_lossy())?,
    };
    read_image(&mut source, reference, Want::Any)
        .with_context(|| format!("{} is not an OCI image-layout archive of one image", path.display()))
}

/// The files of an image-layout archive, as a [`Source`].
pub struct ArchiveSource {
    files: HashMap<String, Vec<u8>>,
}

impl ArchiveSource {
    pub fn from_bytes(data: &[u8]) -> Result<ArchiveSource> {
        let files = match data.starts_with(&[0x1f, 0x8b]) {
            true => read_entries(flate2::read::GzDecoder::new(data)),
            false => read_entries(data),
        }?;
        Ok(ArchiveSource { files })
    }

    /// The name containerd would import the image under, if the index gives one.
    pub fn name(&self) -> Option<Reference> {
        let index: ImageIndex = serde_json::from_slice(self.files.get("index.json")?).ok()?;
        let [entry] = index.manifests().as_slice() else { return None };
        entry.annotations().as_ref()?.get(ANNOTATION_CONTAINERD_IMAGE_NAME)?.parse().ok()
    }

    fn file(&self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        let digest = descriptor.digest();
        let path = format!("blobs/{}/{}", digest.algorithm(), digest.digest());
        self.files.get(&path).cloned().with_context(|| format!("the archive has no blob {path}"))
    }
}

impl Source for ArchiveSource {
    fn top(&mut self) -> Result<(Option<String>, Vec<u8>)> {
        let index = self.files.get("index.json").context("the archive has no index.json")?;
        Ok((Some(MediaType::ImageIndex.to_string()), index.clone()))
    }

    fn manifest(&mut self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        self.file(descriptor)
    }

    fn blob(&mut self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        self.file(descriptor)
    }
}

fn read_entries<R: Read>(reader: R) -> Result<HashMap<String, Vec<u8>>> {
    let mut archive = tar::Archive::new(reader);
    let mut files = HashMap::new();
    for entry in archive.entries().context("reading the tar")? {
        let mut entry = entry.context("reading the tar")?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.to_string_lossy().trim_start_matches("./").to_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).with_context(|| format!("reading {name} from the tar"))?;
        files.insert(name, data);
    }
    Ok(files)
}
