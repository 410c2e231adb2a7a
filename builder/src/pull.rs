//! `fabricks run REGISTRY/REPO:TAG`: pulls a wasm image through the one image reader and takes
//! its module out (the wasm layer, or the tar layer's entrypoint file).

use crate::auth;
use crate::cli::RegistryArgs;
use crate::registry::{Registry, RegistrySource};
use anyhow::{Context, Result};
use fabricks_image::{read_image, Reference, Want};
use std::path::{Path, PathBuf};

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
    let mut source = RegistrySource::new(&registry, reference)?;
    let image = read_image(&mut source, reference.clone(), Want::Wasm)?;
    let module = image.module()?;
    log::info!("Pulled {reference} ({} bytes of module at {})", module.data.len(), module.entrypoint);
    std::fs::create_dir_all(cache).with_context(|| format!("creating the module cache {}", cache.display()))?;
    let path = cache.join(format!("{}.wasm", fabricks_image::sha256(&module.data).digest()));
    std::fs::write(&path, &module.data).with_context(|| format!("writing {}", path.display()))?;
    Ok(Pulled { path, entrypoint: module.entrypoint })
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
}
