//! Where built images go. A [`Publisher`] takes an [`Image`] somewhere: an image-layout
//! archive ([`ArchiveFile`]), a registry (the CLI's registry publisher), or several at once
//! ([`Tee`]). `fabricks build`, `build --push` and `fabricks push ARCHIVE` differ only in the
//! publishers they hand the image to.

use crate::{write_archive_file, Image};
use anyhow::{ensure, Result};
use oci_spec::image::Digest;
use std::path::{Path, PathBuf};

/// A destination for images.
pub trait Publisher {
    /// Publishes `image`; one [`Published`] per destination reached, in order.
    fn publish(&mut self, image: &Image) -> Result<Vec<Published>>;
}

/// Where an image went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub destination: Destination,
    /// What the destination names the image by: the archive's manifest, the tag's index.
    pub digest: Digest,
    /// What a registry push moved; `None` for an archive.
    pub transfer: Option<Transfer>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Archive(PathBuf),
    /// A registry reference, `REGISTRY/REPO:TAG`.
    Registry(String),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Archive(path) => write!(f, "{}", path.display()),
            Destination::Registry(reference) => f.write_str(reference),
        }
    }
}

/// What a registry push uploaded and skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub uploaded_bytes: u64,
    pub uploaded_blobs: usize,
    pub skipped_blobs: usize,
}

/// Writes the image as an image-layout archive at a path (atomically).
#[derive(Clone, Debug)]
pub struct ArchiveFile {
    path: PathBuf,
}

impl ArchiveFile {
    pub fn new(path: impl Into<PathBuf>) -> ArchiveFile {
        ArchiveFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Publisher for ArchiveFile {
    fn publish(&mut self, image: &Image) -> Result<Vec<Published>> {
        write_archive_file(image, &self.path)?;
        Ok(vec![Published {
            destination: Destination::Archive(self.path.clone()),
            digest: image.manifest_blob().digest().clone(),
            transfer: None,
        }])
    }
}

/// Every publisher in turn, like tee(1); the first failure stops the rest (an archive written
/// before a refused push stays).
pub struct Tee(pub Vec<Box<dyn Publisher>>);

impl Publisher for Tee {
    fn publish(&mut self, image: &Image) -> Result<Vec<Published>> {
        ensure!(!self.0.is_empty(), "no destination to publish {} to", image.reference());
        let mut all = Vec::new();
        for publisher in &mut self.0 {
            all.extend(publisher.publish(image)?);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImageOptions, Payload};

    /// Records what it was given: the unit-boundary stand-in for a registry.
    struct Recorder(Vec<String>, bool);

    impl Publisher for Recorder {
        fn publish(&mut self, image: &Image) -> Result<Vec<Published>> {
            ensure!(!self.1, "refused");
            self.0.push(image.manifest_blob().digest().to_string());
            Ok(vec![Published {
                destination: Destination::Registry("r".into()),
                digest: image.index()?.digest().clone(),
                transfer: Some(Transfer::default()),
            }])
        }
    }

    fn image() -> Image {
        let mut options = ImageOptions::new("localhost/x:1".parse().unwrap());
        options.created = Some(0);
        Image::build(&Payload::file("/x.wasm", b"\0asm\x01\0\0\0".to_vec()), &options).unwrap()
    }

    #[test]
    fn tee_publishes_everywhere_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tar");
        let image = image();
        let mut tee = Tee(vec![Box::new(ArchiveFile::new(&path)), Box::new(Recorder(vec![], false))]);
        let published = tee.publish(&image).unwrap();
        assert_eq!(published.len(), 2);
        assert_eq!(published[0].destination, Destination::Archive(path.clone()));
        assert_eq!(&published[0].digest, image.manifest_blob().digest());
        assert_eq!(&published[1].digest, image.index().unwrap().digest());
        assert!(path.is_file());
    }

    #[test]
    fn a_failure_stops_the_rest_and_keeps_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tar");
        let mut tee = Tee(vec![
            Box::new(ArchiveFile::new(&path)),
            Box::new(Recorder(vec![], true)),
            Box::new(ArchiveFile::new(dir.path().join("never.tar"))),
        ]);
        assert!(tee.publish(&image()).unwrap_err().to_string().contains("refused"));
        assert!(path.is_file() && !dir.path().join("never.tar").exists());
        assert!(Tee(vec![]).publish(&image()).is_err());
    }
}
