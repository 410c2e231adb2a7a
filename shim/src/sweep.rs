//! Keeping the node's compiled-module cache to the images containerd still has.
//!
//! Both jobs run on background threads, never on the path of a create: recording which
//! image a module came from (after the create), and sweeping entries whose images are all
//! gone (when a shim first needs its engine — a shim starts with every new pod — but at most
//! once per [`SWEEP_INTERVAL`] on the node: under churn, shims start many times a second).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use fabricks_engine::Engine;

use crate::image;
use crate::spec::ContainerSpec;

/// Records, in the background, that the cache entry `entry` serves container `id`'s image.
pub fn record_origin(
    engine: &Engine,
    containerd: &str,
    namespace: &str,
    id: &str,
    spec: &ContainerSpec,
    entry: PathBuf,
) {
    let annotated = spec.image_name().map(str::to_string);
    let (engine, containerd, ns, id) = (engine.clone(), containerd.to_string(), namespace.to_string(), id.to_string());
    spawn("cache-origin", move || {
        let name = match annotated {
            Some(name) => Some(name),
            None => image::name_of(&containerd, &ns, &id).unwrap_or_else(|e| {
                log::warn!(
                    "cannot tell which image container {id} runs, its compiled module will not be swept with it: {e:#}"
                );
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

/// How long after a sweep the next shim skips its own; `FABRICKS_CACHE_SWEEP_INTERVAL`
/// (seconds, in containerd's environment) overrides it.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Sweeps the cache in the background: entries of other engines, and entries whose images
/// containerd no longer has. An image whose existence cannot be checked counts as present.
pub fn sweep(engine: &Engine, containerd: &str) {
    let (engine, containerd) = (engine.clone(), containerd.to_string());
    spawn("cache-sweep", move || {
        let Some(root) = engine.cache().dir().parent() else { return };
        if !sweep_due(root) {
            return;
        }
        let exists = |ns: &str, name: &str| {
            image::exists(&containerd, ns, name).unwrap_or_else(|e| {
                log::warn!("keeping modules of image {name}: {e:#}");
                true
            })
        };
        match engine.cache().sweep(exists) {
            Ok(swept) => {
                log::info!("module cache swept: {} modules, {} old engine caches removed", swept.modules, swept.engines)
            }
            Err(e) => log::warn!("sweeping the module cache {}: {e:#}", engine.cache().dir().display()),
        }
    });
}

/// True if no sweep ran within the interval; marks this one (the stamp's mtime).
fn sweep_due(root: &Path) -> bool {
    let interval = std::env::var("FABRICKS_CACHE_SWEEP_INTERVAL")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(SWEEP_INTERVAL, Duration::from_secs);
    let stamp = root.join("sweep.stamp");
    let last = std::fs::metadata(&stamp).and_then(|m| m.modified()).ok();
    let since = last.and_then(|t| SystemTime::now().duration_since(t).ok());
    if since.is_some_and(|s| s < interval) {
        return false;
    }
    let marked =
        std::fs::File::options().create(true).append(true).open(&stamp).and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = marked {
        log::warn!("marking the cache sweep in {}: {e}", stamp.display());
    }
    true
}

fn spawn(name: &str, job: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(job) {
        log::warn!("starting the {name} thread: {e}");
    }
}
