//! Keeping the node's compiled-module cache to the images containerd still has.
//!
//! Both jobs run on background threads, never on the path of a create: recording which
//! image a module came from (after the create), and sweeping entries whose images are all
//! gone (once per shim, when it first needs its engine — a shim starts with every new pod).

use std::path::PathBuf;

use fabricks_engine::Engine;
use oci_spec::runtime::Spec;

use crate::image;

/// CRI names the container's image in this annotation, which saves a lookup.
const CRI_IMAGE_NAME: &str = "io.kubernetes.cri.image-name";

/// Records, in the background, that the cache entry `entry` serves container `id`'s image.
pub fn record_origin(engine: &Engine, containerd: &str, namespace: &str, id: &str, spec: &Spec, entry: PathBuf) {
    let annotated = spec.annotations().as_ref().and_then(|a| a.get(CRI_IMAGE_NAME)).cloned();
    let (engine, containerd, ns, id) = (engine.clone(), containerd.to_string(), namespace.to_string(), id.to_string());
    spawn("cache-origin", move || {
        let name = match annotated {
            Some(name) => Some(name),
            None => image::name_of(&containerd, &ns, &id).unwrap_or_else(|e| {
                log::warn!("cannot tell which image container {id} runs, its compiled module will not be swept with it: {e:#}");
                None
            }),
        };
        if let Some(name) = name {
            if let Err(e) = engine.cache().record_origin(&entry, &ns, &name) {
                log::warn!("recording the image of {}: {e:#}", entry.display());
            }
        }
    });
}

/// Sweeps the cache in the background: entries of other engines, and entries whose images
/// containerd no longer has. An image whose existence cannot be checked counts as present.
pub fn sweep(engine: &Engine, containerd: &str) {
    let (engine, containerd) = (engine.clone(), containerd.to_string());
    spawn("cache-sweep", move || {
        let exists = |ns: &str, name: &str| {
            image::exists(&containerd, ns, name).unwrap_or_else(|e| {
                log::warn!("keeping modules of image {name}: {e:#}");
                true
            })
        };
        match engine.cache().sweep(exists) {
            Ok(swept) => log::info!("module cache swept: {} modules, {} old engine caches removed", swept.modules, swept.engines),
            Err(e) => log::warn!("sweeping the module cache {}: {e:#}", engine.cache().dir().display()),
        }
    });
}

fn spawn(name: &str, job: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(job) {
        log::warn!("starting the {name} thread: {e}");
    }
}
