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
pub use compile::{check_magic, compile_to_file};
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

pub type ExternalCompiler = dyn Fn(&[u8], &Path) -> Result<()> + Send + Sync;

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
}

impl Engine {
    pub fn new(options: EngineOptions) -> Result<Self> {
        Self::with_components(options, ComponentConfig::default())
    }

    /// [`Engine::new`] with non-default settings for the component engine.
    pub fn with_components(options: EngineOptions, components: ComponentConfig) -> Result<Self> {
        let inner = new_wasmtime_engine()?;
        let cache = ModuleCache::new(&options.cache_dir, &inner)?;
        Ok(Self { inner, cache, compiler: options.compiler, components: component::Engines::new(components) })
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
        self.cache.get_or_compile(&self.inner, entry, |out| compile::compile(&self.inner, &self.compiler, wasm, out))
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
