//! Native Linux images of a few files, written without a container engine: the
//! Kubernetes node installer's image (the installer, the shim it copies onto
//! nodes, the shared libraries the installer needs). Same determinism as the
//! wasm images: sorted JSON, fixed file times.

use crate::archive::ArchiveImage;
use crate::blob::Blob;
use crate::created::{check_representable, rfc3339, source_date_epoch};
use crate::tarball::Tarball;
use crate::{json, layer, Reference};
use anyhow::{bail, ensure, Context, Result};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageManifestBuilder, MediaType, Os, Platform,
    PlatformBuilder, RootFsBuilder,
};
use std::collections::BTreeSet;

/// A file of the image: absolute path inside it, content, permission bits.
#[derive(Clone, Debug)]
pub struct RootFile {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A single-layer linux image for this machine's architecture.
#[derive(Clone, Debug)]
pub struct NativeImage {
    reference: Reference,
    created: u64,
    platform: Platform,
    config: Blob,
    layer: Blob,
    manifest: Blob,
}

impl NativeImage {
    /// The image of `files` whose entrypoint is `entrypoint` (argv); `created`
    /// as for wasm images (`None`: `SOURCE_DATE_EPOCH`, else 0).
    pub fn build(
        reference: Reference,
        files: &[RootFile],
        entrypoint: Vec<String>,
        created: Option<u64>,
    ) -> Result<Self> {
        let created = match created {
            Some(secs) => secs,
            None => source_date_epoch()?,
        };
        check_representable(created)?;
        let platform = host_platform()?;
        let layer = layer::gzip_layer(rootfs_tar(files, created)?)?;
        let diff_id = layer.diff_id.context("a tar layer has a diff_id")?;
        let config = ImageConfigurationBuilder::default()
            .created(rfc3339(created))
            .os(platform.os().clone())
            .architecture(platform.architecture().clone())
            .config(ConfigBuilder::default().entrypoint(entrypoint).build()?)
            .rootfs(RootFsBuilder::default().typ("layers").diff_ids(vec![diff_id.to_string()]).build()?)
            .build()
            .context("assembling the image config")?;
        let config = Blob::new(MediaType::ImageConfig, json::canonical(&config)?);
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config.descriptor().clone())
            .layers(vec![layer.blob.descriptor().clone()])
            .build()
            .context("assembling the image manifest")?;
        let manifest = Blob::new(MediaType::ImageManifest, json::canonical(&manifest)?);
        Ok(NativeImage { reference, created, platform, config, layer: layer.blob, manifest })
    }
}

impl ArchiveImage for NativeImage {
    fn reference(&self) -> &Reference {
        &self.reference
    }
    fn created(&self) -> u64 {
        self.created
    }
    fn blobs(&self) -> Vec<&Blob> {
        vec![&self.config, &self.layer, &self.manifest]
    }
    fn manifest_descriptor(&self) -> Descriptor {
        let mut descriptor = self.manifest.descriptor().clone();
        descriptor.set_platform(Some(self.platform.clone()));
        descriptor
    }
}

/// linux/<this machine's architecture>: the binaries of the image are this
/// machine's.
fn host_platform() -> Result<Platform> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => Arch::Amd64,
        "aarch64" => Arch::ARM64,
        other => bail!("no OCI architecture known for {other}"),
    };
    Ok(PlatformBuilder::default().os(Os::Linux).architecture(arch).build()?)
}

/// An uncompressed tar of `files` and their parent directories, sorted.
pub(crate) fn rootfs_tar(files: &[RootFile], mtime: u64) -> Result<Vec<u8>> {
    let mut dirs = BTreeSet::new();
    for file in files {
        let relative = file.path.strip_prefix('/').unwrap_or(&file.path);
        ensure!(
            file.path.starts_with('/') && relative.split('/').all(|p| !matches!(p, "" | "." | "..")),
            "image file path {:?} must be absolute and plain (no empty, `.` or `..` parts)",
            file.path
        );
        let mut parent = String::new();
        for dir in relative.split('/').rev().skip(1).collect::<Vec<_>>().into_iter().rev() {
            parent.push_str(dir);
            parent.push('/');
            dirs.insert(parent.clone());
        }
    }
    let mut tar = Tarball::new(Vec::new(), mtime);
    for dir in &dirs {
        tar.dir(dir)?;
    }
    let mut sorted: Vec<&RootFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for file in sorted {
        tar.file(file.path.trim_start_matches('/'), &file.data, file.mode)?;
    }
    tar.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<RootFile> {
        vec![
            RootFile { path: "/usr/local/bin/tool".into(), data: b"tool".to_vec(), mode: 0o755 },
            RootFile { path: "/opt/x/data".into(), data: b"data".to_vec(), mode: 0o644 },
        ]
    }

    #[test]
    fn native_image_is_linux_and_deterministic() {
        let reference: Reference = "localhost/native:1".parse().unwrap();
        let a = NativeImage::build(reference.clone(), &files(), vec!["/usr/local/bin/tool".into()], Some(0)).unwrap();
        let b = NativeImage::build(reference, &files(), vec!["/usr/local/bin/tool".into()], Some(0)).unwrap();
        assert_eq!(a.manifest.digest(), b.manifest.digest());
        let platform = a.manifest_descriptor().platform().clone().unwrap();
        assert_eq!(platform.os(), &Os::Linux);
        let config: serde_json::Value = serde_json::from_slice(a.config.data()).unwrap();
        assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/tool");
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn layer_holds_the_files_and_their_directories() {
        let tar = rootfs_tar(&files(), 0).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(
            names,
            ["opt/", "opt/x/", "usr/", "usr/local/", "usr/local/bin/", "opt/x/data", "usr/local/bin/tool"]
        );
    }

    #[test]
    fn relative_paths_are_refused() {
        let bad = [RootFile { path: "etc/../x".into(), data: vec![], mode: 0o644 }];
        assert!(rootfs_tar(&bad, 0).is_err());
    }
}
