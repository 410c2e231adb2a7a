//! Removing compiled modules nobody needs any more: those of other engines (another
//! wasmtime or other settings) and those whose images are all gone.
//!
//! Every user of an entry holds a shared `flock` on the `.cwasm` for as long as the module
//! may run ([`CachePin`]); the sweep removes a file only under a non-blocking exclusive lock,
//! so an entry mapped by a running container is never deleted. Which images an entry came
//! from is recorded beside it (`<digest>.origins`, one `namespace<TAB>image` a line); an entry
//! with no record is kept (a module run from a plain root filesystem belongs to no image).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::ModuleCache;

/// A shared lock on a cache entry: while it is held, no sweep deletes the entry.
#[derive(Debug)]
pub struct CachePin {
    /// None while the entry does not exist yet: a first start running baseline code
    /// (`Tier::Baseline`) maps no cache file, so it has nothing for a sweep to spare.
    _file: Option<File>,
    path: PathBuf,
}

impl CachePin {
    /// Pins the entry at `path`; `None` if the file there is not the one pinned (a sweep
    /// removed it meanwhile), so the caller loads it again.
    pub(crate) fn take(path: &Path) -> Result<Option<Self>> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        flock(&file, libc::LOCK_SH).with_context(|| format!("locking {}", path.display()))?;
        let pinned = file.metadata()?.ino();
        let current = fs::metadata(path).map(|m| m.ino()).ok();
        Ok((current == Some(pinned)).then(|| Self { _file: Some(file), path: path.to_path_buf() }))
    }

    /// The entry at `path`, which is still being compiled: nothing to pin.
    pub(crate) fn pending(path: &Path) -> Self {
        Self { _file: None, path: path.to_path_buf() }
    }

    /// The pinned cache entry.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub modules: usize,
    pub engines: usize,
}

impl ModuleCache {
    /// Records that the entry for `wasm` was used by `image` in `namespace`.
    pub fn record_origin(&self, wasm_entry: &Path, namespace: &str, image: &str) -> Result<()> {
        let line = format!("{namespace}\t{image}");
        let path = wasm_entry.with_extension("origins");
        if fs::read_to_string(&path).is_ok_and(|t| t.lines().any(|l| l == line)) {
            return Ok(());
        }
        // One short append per line: concurrent writers do not interleave within it.
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(file, "{line}").with_context(|| format!("writing {}", path.display()))
    }

    /// Removes entries of other engines and entries all of whose images are gone
    /// (`image_exists(namespace, image)`; it should answer true when unsure), skipping any
    /// entry in use.
    pub fn sweep(&self, image_exists: impl Fn(&str, &str) -> bool) -> Result<Swept> {
        let mut swept = Swept::default();
        for entry in self.entries(self.dir())? {
            let origins = fs::read_to_string(entry.with_extension("origins")).unwrap_or_default();
            let gone = !origins.is_empty()
                && origins.lines().filter_map(|l| l.split_once('\t')).all(|(ns, image)| !image_exists(ns, image));
            if gone && remove_unused(&entry)? {
                log::info!("removed compiled module {}: its images are gone", entry.display());
                swept.modules += 1;
            }
        }
        swept.engines = self.sweep_other_engines()?;
        Ok(swept)
    }

    /// Cache directories of other engine fingerprints: emptied of unused entries, removed
    /// once empty (a shim of the previous release may still run containers from them).
    fn sweep_other_engines(&self) -> Result<usize> {
        let Some(root) = self.dir().parent() else { return Ok(0) };
        let mut removed = 0;
        for dir in fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
            let dir = dir?.path();
            if dir == self.dir() || !dir.is_dir() {
                continue;
            }
            for entry in self.entries(&dir)? {
                remove_unused(&entry)?;
            }
            if fs::read_dir(&dir)?.all(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "lock"))) {
                fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
                log::info!("removed the module cache of another engine: {}", dir.display());
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn entries(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|x| x == "cwasm") {
                out.push(path);
            }
        }
        Ok(out)
    }
}

/// Deletes a `.cwasm` and its side files unless someone holds a pin on it.
fn remove_unused(entry: &Path) -> Result<bool> {
    let Ok(file) = File::open(entry) else { return Ok(false) };
    if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
        log::debug!("keeping {}: in use", entry.display());
        return Ok(false);
    }
    fs::remove_file(entry).with_context(|| format!("removing {}", entry.display()))?;
    for side in ["origins", "lock"] {
        let _ = fs::remove_file(entry.with_extension(side));
    }
    Ok(true)
}

fn flock(file: &File, op: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
