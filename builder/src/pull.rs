//! `fabricks run REGISTRY/REPO:TAG`: pulls a wasm image and takes its module
//! out (the raw `application/wasm` layer, or the tar layer's entrypoint file).

use crate::auth;
use crate::cli::RegistryArgs;
use crate::registry::{self, by_digest, client_reference, Registry};
use anyhow::{bail, ensure, Context, Result};
use fabricks_image::Reference;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};

const INDEX_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
const MANIFEST_TYPES: [&str; 2] =
    ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];

/// A `fabricks run` target that names an image in a registry rather than a
/// local path: it does not exist here and its first component is a registry
/// host (has a `.` or `:`, or is `localhost`).
pub fn remote_reference(target: &Path) -> Option<Reference> {
    if target.exists() {
        return None;
    }
    let text = target.to_str()?;
    let (host, _) = text.split_once('/')?;
    let is_host = host.contains('.') || host.contains(':') || host == "localhost";
    if !is_host || text.ends_with(".wasm") && !text.contains(':') {
        return None;
    }
    text.parse().ok()
}

/// A pulled module: where it was written, and its path inside the image (argv[0]).
pub struct Pulled {
    pub path: PathBuf,
    pub entrypoint: String,
}

pub fn pull_module(reference: &Reference, args: &RegistryArgs, cache: &Path) -> Result<Pulled> {
    let credentials = auth::credentials(reference.registry(), &args.auth_flags())?;
    let registry = Registry::new(reference, args.insecure, credentials);
    let runtime = registry::runtime()?;
    let (module, entrypoint) = runtime.block_on(pull_async(&registry, reference))?;
    std::fs::create_dir_all(cache).with_context(|| format!("creating the module cache {}", cache.display()))?;
    let name = format!("{}.wasm", hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&module)));
    let path = cache.join(name);
    std::fs::write(&path, &module).with_context(|| format!("writing {}", path.display()))?;
    Ok(Pulled { path, entrypoint })
}

async fn pull_async(registry: &Registry, reference: &Reference) -> Result<(Vec<u8>, String)> {
    let what = format!("pulling {reference}");
    let target = client_reference(reference);
    let all: Vec<&str> = INDEX_TYPES.iter().chain(&MANIFEST_TYPES).copied().collect();
    let (bytes, _) = registry
        .client
        .pull_manifest_raw(&target, &registry.auth, &all)
        .await
        .map_err(|e| registry.explain(e, &what))?;
    let mut document: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{what}: the registry {} sent a manifest that is not JSON", registry.name))?;

    if is_index(&document) {
        let digest = wasm_entry(&document)
            .map_err(|platforms| anyhow::anyhow!("{reference} is not a wasm image (platform {platforms})"))?;
        let (bytes, _) = registry
            .client
            .pull_manifest_raw(&by_digest(reference, &digest), &registry.auth, &MANIFEST_TYPES)
            .await
            .map_err(|e| registry.explain(e, &format!("{what}: manifest {digest}")))?;
        document = serde_json::from_slice(&bytes).with_context(|| format!("{what}: manifest {digest} is not JSON"))?;
    }

    let config_digest = document["config"]["digest"]
        .as_str()
        .with_context(|| format!("{what}: the manifest has no config"))?
        .to_owned();
    let config = blob(registry, reference, &config_digest).await?;
    let config: Value =
        serde_json::from_slice(&config).with_context(|| format!("{what}: the config {config_digest} is not JSON"))?;
    let platform =
        format!("{}/{}", config["os"].as_str().unwrap_or("?"), config["architecture"].as_str().unwrap_or("?"));
    ensure!(platform == "wasi/wasm", "{reference} is not a wasm image (platform {platform})");
    let entrypoint = config["config"]["Entrypoint"][0].as_str().unwrap_or("/module.wasm").to_owned();

    let layers = document["layers"].as_array().cloned().unwrap_or_default();
    let [layer] = layers.as_slice() else {
        bail!("{reference} has {} layers; a fabricks image has one", layers.len());
    };
    let media_type = layer["mediaType"].as_str().unwrap_or_default();
    let digest = layer["digest"].as_str().context("the layer has no digest")?;
    let data = blob(registry, reference, digest).await?;
    let module = match media_type {
        fabricks_image::WASM_LAYER_MEDIA_TYPE => data,
        t if t.ends_with("tar+gzip") || t.ends_with("tar.gzip") => {
            from_tar(flate2::read::GzDecoder::new(data.as_slice()), &entrypoint)?
        }
        t if t.ends_with(".tar") || t.ends_with("tar") => from_tar(data.as_slice(), &entrypoint)?,
        other => bail!("{reference}: its layer has the media type {other:?}, neither application/wasm nor a tar"),
    };
    ensure!(module.starts_with(b"\0asm"), "{reference}: {entrypoint} in the image is not a WebAssembly module");
    log::info!("Pulled {reference} ({} bytes of module at {entrypoint})", module.len());
    Ok((module, entrypoint))
}

fn is_index(document: &Value) -> bool {
    let media_type = document["mediaType"].as_str().unwrap_or_default();
    INDEX_TYPES.contains(&media_type) || (media_type.is_empty() && document["manifests"].is_array())
}

/// Digest of the index's wasi/wasm manifest, or the platforms it has instead.
fn wasm_entry(index: &Value) -> std::result::Result<String, String> {
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let mut platforms = Vec::new();
    for entry in &entries {
        let os = entry["platform"]["os"].as_str().unwrap_or("?");
        let arch = entry["platform"]["architecture"].as_str().unwrap_or("?");
        if os == "wasi" && arch == "wasm" {
            if let Some(digest) = entry["digest"].as_str() {
                return Ok(digest.to_owned());
            }
        }
        platforms.push(format!("{os}/{arch}"));
    }
    Err(if platforms.is_empty() { "none".into() } else { platforms.join(", ") })
}

async fn blob(registry: &Registry, reference: &Reference, digest: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    registry
        .client
        .pull_blob(&client_reference(reference), digest, &mut data)
        .await
        .map_err(|e| registry.explain(e, &format!("pulling {reference}: blob {digest}")))?;
    Ok(data)
}

fn from_tar<R: Read>(reader: R, entrypoint: &str) -> Result<Vec<u8>> {
    let want = entrypoint.trim_start_matches('/');
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().context("reading the image layer")? {
        let mut entry = entry.context("reading the image layer")?;
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_owned();
        if path == want {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            return Ok(data);
        }
    }
    bail!("the image layer has no file at the entrypoint {entrypoint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_references_are_told_from_paths() {
        let r = remote_reference(Path::new("127.0.0.1:5000/examples/go-hello:dev")).unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "examples/go-hello");
        assert_eq!(r.tag(), "dev");
        assert_eq!(remote_reference(Path::new("localhost/app")).unwrap().tag(), "latest");
        assert!(remote_reference(Path::new("ghcr.io/org/app:1")).is_some());
        assert!(remote_reference(Path::new("examples/go-hello")).is_none());
        assert!(remote_reference(Path::new("build/app.wasm")).is_none());
        assert!(remote_reference(Path::new("/")).is_none());
    }

    #[test]
    fn index_entries_are_chosen_by_platform() {
        let index = serde_json::json!({"manifests": [
            {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:b", "platform": {"os": "wasi", "architecture": "wasm"}}]});
        assert!(is_index(&index));
        assert_eq!(wasm_entry(&index).unwrap(), "sha256:b");
        let linux = serde_json::json!({"manifests": [
            {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}}]});
        assert_eq!(wasm_entry(&linux).unwrap_err(), "linux/amd64");
    }
}
