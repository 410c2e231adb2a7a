//! WASI preview-2 components: `wasi:cli/run` commands and `wasi:http/incoming-handler`
//! services, on `wasmtime-wasi` and `wasmtime-wasi-http`.
//!
//! Components run on a second wasmtime engine with `async_support` (wasmtime-wasi's
//! preview 2 is built on tokio; its sync wrappers would need a multi-thread runtime to
//! drive their I/O). The preview-1 engine stays synchronous, since an async engine panics
//! on sync calls. Both engines share the settings compiled code depends on
//! ([`crate::base_config`]), so one compiler child and one cache directory serve both, and a
//! component is compiled once per node and mapped from the cache like a module.

mod command;
mod host;
mod http;
mod netns;
mod network;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context, Result};
use wasmtime::component::types::ComponentItem;

use crate::unrunnable::{unrunnable, Problem};
use crate::{CachePin, Engine, FirstStart, Module, Tier};

pub use http::{CostSummary, HttpService};
pub use netns::{runtime_builder, server_runtime, NetNamespace};
pub use network::Network;

/// What a wasm binary is, from its header (the 4 bytes after `\0asm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module (version 1, layer 0): WASI preview 1.
    Module,
    /// A component (layer 1): WASI preview 2.
    Component,
}

/// Tells a core module from a component by the version and layer fields of the header; an
/// error names what was found and what to build.
pub fn wasm_kind(bytes: &[u8]) -> Result<WasmKind> {
    const MAGIC: &[u8] = b"\0asm";
    let not_wasm = |message: String| Err(unrunnable(Problem::NotWasm, message));
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return not_wasm(format!(
            "not a WebAssembly module or component: it starts with bytes [{}], not the wasm magic \\0asm",
            head.join(" ")
        ));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    let layer = u16::from_le_bytes([bytes[6], bytes[7]]);
    match (layer, version) {
        (0, 1) => Ok(WasmKind::Module),
        // 0x0d is the component model's pre-1.0 binary version every toolchain emits.
        (1, 0x0d) => Ok(WasmKind::Component),
        (1, other) => not_wasm(format!(
            "a WebAssembly component of binary version {other:#x}: this wasmtime reads version 0xd (the WASI 0.2 line)"
        )),
        (0, other) => not_wasm(format!("a WebAssembly core module of unknown version {other}: only version 1 exists")),
        (other, _) => not_wasm(format!("unknown WebAssembly layer {other} (0 is a core module, 1 a component)")),
    }
}

/// What a component does, judged from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    /// Exports `wasi:cli/run@0.2.x`: runs once, to its exit.
    Command,
    /// Exports `wasi:http/incoming-handler@0.2.x`: called once per HTTP request, each time
    /// on a fresh instance. Wins over `wasi:cli/run` when a component exports both.
    HttpService,
}

/// A compiled component, ready to be instantiated on the component engine.
#[derive(Clone)]
pub struct Component {
    inner: wasmtime::component::Component,
    kind: ComponentKind,
}

impl Component {
    pub fn kind(&self) -> ComponentKind {
        self.kind
    }

    pub(crate) fn wasmtime(&self) -> &wasmtime::component::Component {
        &self.inner
    }
}

/// A loaded program: a preview-1 module or a preview-2 component.
#[derive(Clone)]
pub enum Program {
    Module(Module),
    Component(Component),
}

/// Settings of the component engine.
#[derive(Debug, Clone)]
pub struct ComponentConfig {
    /// Instantiate from wasmtime's pooling allocator (pre-reserved slots, reused warm)
    /// rather than mapping fresh memory per instance. Off by default for now: measured per
    /// GET (docs/design.md) it halves CPython's median (7.6 → 3.8 ms) and leaves
    /// SpiderMonkey's (0.47 ms) as it is, but its slot limits are not yet tuned against
    /// every toolchain's output and it reserves terabytes of address space per engine.
    pub pooling: bool,
    /// Component instances alive at once in the pool (one per running command or HTTP
    /// request); instantiation beyond it fails.
    pub pool_instances: u32,
}

impl Default for ComponentConfig {
    fn default() -> Self {
        Self { pooling: false, pool_instances: 256 }
    }
}

/// The component engine of an [`Engine`], made on first use: a shim that runs only
/// modules never creates it.
#[derive(Clone)]
pub(crate) struct Engines {
    config: ComponentConfig,
    engine: Arc<OnceLock<wasmtime::Engine>>,
}

impl Engines {
    pub(crate) fn new(config: ComponentConfig) -> Self {
        Self { config, engine: Arc::default() }
    }

    fn get(&self) -> Result<&wasmtime::Engine> {
        if let Some(engine) = self.engine.get() {
            return Ok(engine);
        }
        let engine = new_component_engine(&self.config)?;
        Ok(self.engine.get_or_init(|| engine))
    }
}

pub(crate) fn new_component_engine(settings: &ComponentConfig) -> Result<wasmtime::Engine> {
    let mut config = crate::base_config();
    config.async_support(true);
    if settings.pooling {
        let n = settings.pool_instances;
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        // Components of real toolchains have a dozen core instances, several memories and
        // tables of tens of thousands of functions (CPython, SpiderMonkey).
        pool.total_component_instances(n)
            .total_core_instances(n * 16)
            .total_memories(n * 4)
            .total_tables(n * 8)
            .total_stacks(n)
            .max_memories_per_module(2)
            .max_tables_per_module(4)
            .table_elements(200_000)
            .max_core_instance_size(16 << 20)
            .max_component_instance_size(4 << 20);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    wasmtime::Engine::new(&config).context("creating the wasmtime component engine")
}

impl Engine {
    /// Runs a command program to its exit status: a module with [`Engine::run`] (its sockets
    /// in `cmd`), a component with [`Engine::run_component`] (binding what `network` allows).
    pub fn run_program(
        &self,
        program: &Program,
        cmd: crate::Command,
        network: &Network,
        stop: &crate::Stopper,
    ) -> Result<i32> {
        match program {
            Program::Module(module) => self.run(module, cmd, stop),
            Program::Component(component) => self.run_component(component, cmd, network, stop),
        }
    }

    /// The engine components run on.
    pub fn component_engine(&self) -> Result<&wasmtime::Engine> {
        self.components.get()
    }

    /// Loads a module or a component, whichever `wasm` is, through the compiled cache.
    pub fn load_program(&self, wasm: &[u8]) -> Result<Program> {
        let entry = self.cache.entry_path(wasm);
        self.load_program_entry(wasm, &entry)
    }

    /// Reads and loads the program at `path` (see [`Engine::load_program`]).
    pub fn load_program_file(&self, path: &Path) -> Result<Program> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        self.load_program(&bytes).with_context(|| format!("{} cannot run", path.display()))
    }

    /// Like [`Engine::load_program`], plus a pin that keeps the cache entry from being swept
    /// while the program may run. `first` says whether a module with no optimized code
    /// cached yet may start on baseline code (see [`Engine::with_baseline_first_start`]).
    pub fn load_program_pinned(&self, wasm: &[u8], first: FirstStart) -> Result<(Program, CachePin)> {
        let entry = self.cache.entry_path(wasm);
        if first == FirstStart::Baseline && !entry.exists() && wasm_kind(wasm)? == WasmKind::Module {
            if let Some(module) = self.load_baseline(wasm, &entry)? {
                return Ok((Program::Module(module), CachePin::pending(&entry)));
            }
        }
        for _ in 0..3 {
            let program = self.load_program_entry(wasm, &entry)?;
            if let Some(pin) = CachePin::take(&entry)? {
                return Ok((program, pin));
            }
        }
        bail!(
            "the compiled program kept disappearing from {}: is another process deleting it?",
            self.cache.dir().display()
        )
    }

    fn load_program_entry(&self, wasm: &[u8], entry: &Path) -> Result<Program> {
        match wasm_kind(wasm)? {
            WasmKind::Module => self.load_entry(wasm, entry).map(Program::Module),
            WasmKind::Component => self.load_component(wasm, entry).map(Program::Component),
        }
    }

    fn load_component(&self, wasm: &[u8], entry: &Path) -> Result<Component> {
        let engine = self.component_engine()?.clone();
        // SAFETY: as for modules (cache.rs): only our compiler writes the cache directory,
        // and wasmtime checks the artifact's kind, header and engine compatibility.
        let load = |p: &Path| unsafe { wasmtime::component::Component::deserialize_file(&engine, p) };
        let inner = self.cache.get_or_compile_with(entry, load, |out| {
            crate::compile::compile(&engine, &self.compiler, wasm, out, Tier::Optimized)
        })?;
        let kind = component_kind(&engine, &inner)?;
        Ok(Component { inner, kind })
    }
}

/// The kind from the export names; any `0.2.x` version counts (wasmtime's linker and
/// export lookup match semver-compatible versions).
fn component_kind(engine: &wasmtime::Engine, component: &wasmtime::component::Component) -> Result<ComponentKind> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .filter(|(_, item)| matches!(item, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name.to_string())
        .collect();
    let exports_0_2 = |interface: &str| exports.iter().any(|e| e.starts_with(&format!("{interface}@0.2.")));
    if exports_0_2("wasi:http/incoming-handler") {
        return Ok(ComponentKind::HttpService);
    }
    if exports_0_2("wasi:cli/run") {
        return Ok(ComponentKind::Command);
    }
    Err(unrunnable(
        Problem::NoEntryPoint,
        format!(
            "this component exports neither wasi:cli/run@0.2 (a command) nor wasi:http/incoming-handler@0.2 \
             (an HTTP service); its exports: [{}]. Build it for the `wasi:cli/command` or the `wasi:http/proxy` world",
            exports.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_tells_modules_from_components() {
        let module = wat::parse_str("(module)").unwrap();
        assert_eq!(wasm_kind(&module).unwrap(), WasmKind::Module);
        let component = wat::parse_str("(component)").unwrap();
        assert_eq!(wasm_kind(&component).unwrap(), WasmKind::Component);
    }

    #[test]
    fn bad_headers_say_what_they_are() {
        let err = |bytes: &[u8]| format!("{:#}", wasm_kind(bytes).unwrap_err());
        assert!(err(b"\x7fELF\x02\x01\x01\0").contains("not a WebAssembly module or component"));
        assert!(err(b"\0asm").contains("not a WebAssembly module or component"), "too short");
        assert!(err(b"\0asm\x0c\0\x01\0").contains("binary version 0xc"));
        assert!(err(b"\0asm\x02\0\0\0").contains("unknown version 2"));
        assert!(err(b"\0asm\x01\0\x02\0").contains("unknown WebAssembly layer 2"));
    }

    #[test]
    fn both_engines_compile_alike_so_they_share_one_cache_directory() {
        let modules = crate::new_wasmtime_engine().unwrap();
        for pooling in [false, true] {
            let config = ComponentConfig { pooling, pool_instances: 4 };
            let components = new_component_engine(&config).unwrap();
            assert_eq!(
                crate::cache::engine_fingerprint(&modules),
                crate::cache::engine_fingerprint(&components),
                "pooling {pooling}"
            );
        }
    }
}
