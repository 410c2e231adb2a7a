//! The wasm engine shared by the shim and `fabricks run`.
//!
//! One place decides how a module is compiled (once per node, into a content-addressed
//! cache, optionally in a child process so Cranelift's memory never stays in the shim),
//! how a compiled module is loaded (mapped from its cache file, so every container of an
//! image shares its pages), what WASI view a command gets, and how a stop request ends it.

mod cache;
mod command;
mod compile;
pub mod component;
mod errno;
mod limits;
mod reactor;
mod reason;
mod run;
mod stop;
mod sweep;
mod unrunnable;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

pub use cache::ModuleCache;
pub use command::{Command, Preopen, Socket, Stdio};
pub use compile::{check_magic, compile_into_cache, compile_to_file};
pub use component::{
    wasm_kind, Component, ComponentConfig, ComponentKind, CostSummary, HttpService, NetNamespace, Network, Program,
    WasmKind,
};
pub use limits::{MemoryLimit, MemoryLimitExceeded, OOM_EXIT_CODE};
pub use reactor::{
    CallError, CommandFactory, Exchange, ModuleKind, Reactor, ReactorInstance, ABI_VERSION, IMPORT_MODULE,
};
pub use reason::ExitReason;
pub use run::TRAP_EXIT_CODE;
pub use stop::Stopper;
pub use sweep::{CachePin, Swept};
pub use unrunnable::{Problem, Unrunnable};
pub use wasmtime::Module;

/// Where Cranelift runs when a module is not in the cache yet.
#[derive(Clone)]
pub enum Compiler {
    /// In this process: right for short-lived processes such as the CLI.
    InProcess,
    /// Somewhere else, typically a child process that calls [`compile_to_file`]: long-lived
    /// processes use this so the compiler's allocations leave with the child. The function
    /// gets the module bytes and the path the compiled module must be written to.
    External(Arc<ExternalCompiler>),
}

pub type ExternalCompiler = dyn Fn(&[u8], &Path, Tier) -> Result<()> + Send + Sync;

/// Which of wasmtime's compilers makes the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Cranelift: what the cache holds and every start after the first maps.
    Optimized,
    /// Winch, 4–6× faster to compile and up to 2.7× slower to run (docs/design.md): a
    /// first start's code, never cached.
    Baseline,
}

/// What a start may run while its module has no optimized code in the cache yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstStart {
    /// Wait for the optimized compile: a service lives on the code it starts with.
    Optimized,
    /// Baseline code now, if the engine was given a background compiler for the optimized
    /// entry ([`Engine::with_baseline_first_start`]); otherwise as `Optimized`.
    Baseline,
}

/// Starts the optimized compile of a module (its bytes) into its cache entry (the path),
/// to finish on its own: it must outlive the call and may outlive the process.
pub type BackgroundCompiler = dyn Fn(&[u8], &Path) -> Result<()> + Send + Sync;

impl std::fmt::Debug for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compiler::InProcess => "InProcess",
            Compiler::External(_) => "External",
        })
    }
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub cache_dir: PathBuf,
    pub compiler: Compiler,
}

/// A wasmtime engine plus its compiled-module cache. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: wasmtime::Engine,
    cache: ModuleCache,
    compiler: Compiler,
    /// The async engine components run on, made on first use (see `component`).
    components: component::Engines,
    baseline: Option<Baseline>,
}

/// The baseline tier: its engine and who compiles the optimized code meanwhile.
#[derive(Clone)]
struct Baseline {
    engine: wasmtime::Engine,
    optimize: Arc<BackgroundCompiler>,
}

impl Engine {
    pub fn new(options: EngineOptions) -> Result<Self> {
        Self::with_components(options, ComponentConfig::default())
    }

    /// [`Engine::new`] with non-default settings for the component engine.
    pub fn with_components(options: EngineOptions, components: ComponentConfig) -> Result<Self> {
        let inner = new_wasmtime_engine()?;
        let cache = ModuleCache::new(&options.cache_dir, &inner)?;
        Ok(Self {
            inner,
            cache,
            compiler: options.compiler,
            components: component::Engines::new(components),
            baseline: None,
        })
    }

    /// Lets a first start ([`FirstStart::Baseline`]) of a core module run Winch's code at
    /// once while `optimize` writes Cranelift's into the cache for every later start.
    pub fn with_baseline_first_start(mut self, optimize: Arc<BackgroundCompiler>) -> Result<Self> {
        self.baseline = Some(Baseline { engine: new_baseline_engine()?, optimize });
        Ok(self)
    }

    /// Baseline code for `wasm`, whose optimized entry `entry` is missing; `None` (with the
    /// reason logged) where the optimized compile must do instead.
    fn load_baseline(&self, wasm: &[u8], entry: &Path) -> Result<Option<Module>> {
        let Some(baseline) = &self.baseline else { return Ok(None) };
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = entry.with_extension(format!("baseline.tmp{}-{n}", std::process::id()));
        let started = std::time::Instant::now();
        let compiled = compile::compile(&baseline.engine, &self.compiler, wasm, &tmp, Tier::Baseline)
            // SAFETY: our compiler just wrote it; wasmtime checks its header and engine.
            .and_then(|()| unsafe { Module::deserialize_file(&baseline.engine, &tmp) });
        // Mapped (or failed): the file is needed no more, and no other start uses it.
        let _ = std::fs::remove_file(&tmp);
        let module = match compiled {
            Ok(module) => module,
            Err(e) if e.chain().any(|e| e.is::<Unrunnable>()) => return Err(e),
            Err(e) => {
                log::warn!("baseline compile of {} failed, compiling optimized code instead: {e:#}", entry.display());
                return Ok(None);
            }
        };
        log::info!("compiled baseline code for {} in {:?}", entry.display(), started.elapsed());
        match (baseline.optimize)(wasm, entry) {
            Ok(()) => log::info!("optimizing {} in the background", entry.display()),
            Err(e) => log::warn!("could not start optimizing {} in the background: {e:#}", entry.display()),
        }
        Ok(Some(module))
    }

    /// Returns the compiled module for the wasm file at `path`, compiling it only if no
    /// compiled copy for this engine is cached yet.
    pub fn load(&self, path: &Path) -> Result<Module> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        check_magic(&bytes).with_context(|| format!("{} cannot run", path.display()))?;
        self.load_bytes(&bytes)
    }

    /// Like [`Engine::load`] for a module already in memory (e.g. an OCI wasm layer).
    pub fn load_bytes(&self, wasm: &[u8]) -> Result<Module> {
        check_magic(wasm)?;
        self.load_entry(wasm, &self.cache.entry_path(wasm))
    }

    /// The module `wasm`, whose cache entry is `entry`.
    fn load_entry(&self, wasm: &[u8], entry: &Path) -> Result<Module> {
        self.cache.get_or_compile(&self.inner, entry, |out| {
            compile::compile(&self.inner, &self.compiler, wasm, out, Tier::Optimized)
        })
    }

    /// Like [`Engine::load_bytes`], plus a pin that keeps the cache entry from being swept
    /// while the module may run.
    pub fn load_pinned(&self, wasm: &[u8]) -> Result<(Module, CachePin)> {
        check_magic(wasm)?;
        // Hashed once: SHA-256 of a module of a few MB costs a millisecond or two per create.
        let entry = self.cache.entry_path(wasm);
        // A sweep may remove the entry between load and pin: then load (compile) again.
        for _ in 0..3 {
            let module = self.load_entry(wasm, &entry)?;
            if let Some(pin) = CachePin::take(&entry)? {
                return Ok((module, pin));
            }
        }
        anyhow::bail!(
            "the compiled module kept disappearing from {}: is another process deleting it?",
            self.cache.dir().display()
        )
    }

    pub fn cache(&self) -> &ModuleCache {
        &self.cache
    }

    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner
    }
}

/// The one engine configuration: the compiler child and the loader must agree on it,
/// or the cache key (which hashes it) would never match.
pub(crate) fn new_wasmtime_engine() -> Result<wasmtime::Engine> {
    wasmtime::Engine::new(&base_config()).context("creating the wasmtime engine")
}

/// The baseline tier's engine: the same settings, Winch instead of Cranelift.
pub(crate) fn new_baseline_engine() -> Result<wasmtime::Engine> {
    let mut config = base_config();
    config.strategy(wasmtime::Strategy::Winch);
    wasmtime::Engine::new(&config).context("creating the baseline (Winch) wasmtime engine")
}

/// The settings compiled code depends on, shared by the module and the component engines
/// (so one compiler child and one cache directory serve both).
pub(crate) fn base_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    // Stops interrupt a module that never calls the host (a spin loop).
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config.wasm_backtrace(true);
    config
}
