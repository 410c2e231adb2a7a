//! Compiled modules on disk, keyed by module digest and engine settings.
//!
//! Layout: `<root>/<engine fingerprint>/<sha256 of the module>.cwasm`. A new wasmtime
//! version or a changed engine configuration gives a new fingerprint, so stale entries are
//! never loaded (and the sweep in `sweep.rs` removes them). Writers take a per-entry lock
//! and rename a finished file into place, so concurrent starts of one image compile once.

use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Module;

#[derive(Clone)]
pub struct ModuleCache {
    dir: PathBuf,
    compiles: Arc<AtomicU64>,
}

impl ModuleCache {
    pub(crate) fn new(root: &Path, engine: &wasmtime::Engine) -> Result<Self> {
        let dir = root.join(engine_fingerprint(engine));
        fs::create_dir_all(&dir).with_context(|| format!("creating the module cache {}", dir.display()))?;
        Ok(Self { dir, compiles: Arc::default() })
    }

    /// The directory holding this engine's compiled modules.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many modules this process had to compile (a cached start adds none).
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// `<sha256>.cwasm` for a core module, `<sha256>.component.cwasm` for a component: the
    /// kind is part of the key, as wasmtime loads each only as what it was compiled as.
    pub fn entry_path(&self, wasm: &[u8]) -> PathBuf {
        let kind = match crate::component::wasm_kind(wasm) {
            Ok(crate::WasmKind::Component) => ".component",
            _ => "",
        };
        self.dir.join(format!("{}{kind}.cwasm", hex::encode(Sha256::digest(wasm))))
    }

    /// The module whose entry is `path` (its [`ModuleCache::entry_path`]: the caller hashes
    /// the module once, however often it needs the entry), compiled by `compile` if no
    /// process has yet.
    pub(crate) fn get_or_compile(
        &self,
        engine: &wasmtime::Engine,
        path: &Path,
        compile: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Module> {
        // SAFETY: the cache directory is written only by this engine's compiler (root-owned
        // on a node); wasmtime still checks the file's header and engine compatibility.
        self.get_or_compile_with(path, |p| unsafe { Module::deserialize_file(engine, p) }, compile)
    }

    /// [`ModuleCache::get_or_compile`] for any compiled artifact (modules, components):
    /// `load` maps a cache file into the engine.
    pub(crate) fn get_or_compile_with<T>(
        &self,
        path: &Path,
        load: impl Fn(&Path) -> Result<T>,
        compile: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<T> {
        if let Some(module) = self.cached(&load, path) {
            return Ok(module);
        }
        if !store(path, compile)? {
            // Another process finished the same module while we waited for the lock.
            return self.cached(&load, path).with_context(|| {
                format!(
                    "{} was compiled by another process but cannot be loaded (it is removed now): start again",
                    path.display()
                )
            });
        }
        self.compiles.fetch_add(1, Ordering::Relaxed);
        self.try_load(&load, path).with_context(|| format!("loading freshly compiled {}", path.display()))
    }

    /// A cache hit: the evidence that a start did not compile is this log line.
    fn cached<T>(&self, load: &impl Fn(&Path) -> Result<T>, path: &Path) -> Option<T> {
        let module = self.try_load(load, path)?;
        log::info!("using cached module {}", path.display());
        Some(module)
    }

    fn try_load<T>(&self, load: &impl Fn(&Path) -> Result<T>, path: &Path) -> Option<T> {
        if !path.exists() {
            return None;
        }
        match load(path) {
            Ok(module) => Some(module),
            Err(e) => {
                log::warn!("discarding unusable cache entry {}: {e:#}", path.display());
                let _ = fs::remove_file(path);
                None
            }
        }
    }
}

/// Writes the entry at `path` with `compile` (given a temporary path to write) unless it is
/// there once the entry's lock is ours; true if this call compiled it. Atomic for readers:
/// a finished file is renamed into place.
pub(crate) fn store(path: &Path, compile: impl FnOnce(&Path) -> Result<()>) -> Result<bool> {
    let _lock = EntryLock::take(path)?;
    if path.exists() {
        return Ok(false);
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let started = std::time::Instant::now();
    let compiled =
        compile(&tmp).and_then(|()| fs::rename(&tmp, path).with_context(|| format!("storing {}", path.display())));
    if let Err(e) = compiled {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    log::info!("compiled module {} in {:?}", path.display(), started.elapsed());
    Ok(true)
}

/// `wasmtime-<version>-<hash of the settings that make compiled code compatible>`.
pub(crate) fn engine_fingerprint(engine: &wasmtime::Engine) -> String {
    let mut hasher = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    format!("wasmtime-{}-{}", wasmtime_version(), &hex::encode(digest)[..16])
}

fn wasmtime_version() -> &'static str {
    // Compiled code is tied to the exact wasmtime release, which the workspace pins.
    "36.0.20"
}

/// std's `DefaultHasher` may change between Rust releases; the fingerprint must not.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        unreachable!("only the full digest is used")
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// An exclusive `flock` on `<entry>.lock`, released on drop.
struct EntryLock(#[allow(dead_code)] File);

impl EntryLock {
    fn take(entry: &Path) -> Result<Self> {
        let path = entry.with_extension("lock");
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!("locking {}: {}", path.display(), std::io::Error::last_os_error());
        }
        Ok(Self(file))
    }
}
