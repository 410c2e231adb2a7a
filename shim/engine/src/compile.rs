//! Turning wasm bytes into a compiled-module file.

use std::path::Path;

use anyhow::{Context, Result};

use crate::unrunnable::{unrunnable, Problem};
use crate::{Compiler, Tier};

/// Rejects files that are not WebAssembly core modules, with a message a user can act on.
pub fn check_magic(bytes: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(unrunnable(
            Problem::NotWasm,
            format!("not a WebAssembly module: it starts with bytes [{}], not the wasm magic \\0asm", head.join(" ")),
        ));
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        return Err(unrunnable(
            Problem::NotWasm,
            "this is a WebAssembly component or an unknown wasm version, not a core module: \
             Fabricks runs WASI preview-1 modules",
        ));
    }
    Ok(())
}

/// Compiles `wasm` (a core module or a component) with the engine configuration every
/// Fabricks process shares for `tier` and writes the result to `out`. Entry point for
/// compiler child processes.
pub fn compile_to_file(wasm: &[u8], out: &Path, tier: Tier) -> Result<()> {
    let engine = match tier {
        Tier::Optimized => crate::new_wasmtime_engine()?,
        Tier::Baseline => crate::new_baseline_engine()?,
    };
    compile_in_process(&engine, wasm, out)
}

/// Compiles `wasm` with the optimizing tier into the cache entry `entry` (a
/// [`crate::ModuleCache::entry_path`]) unless some process has: the background compile
/// after a first start on baseline code.
pub fn compile_into_cache(wasm: &[u8], entry: &Path) -> Result<()> {
    let engine = crate::new_wasmtime_engine()?;
    crate::cache::store(entry, |out| compile_in_process(&engine, wasm, out)).map(drop)
}

pub(crate) fn compile(
    engine: &wasmtime::Engine,
    compiler: &Compiler,
    wasm: &[u8],
    out: &Path,
    tier: Tier,
) -> Result<()> {
    match compiler {
        Compiler::InProcess => compile_in_process(engine, wasm, out),
        Compiler::External(compile) => compile(wasm, out, tier),
    }
}

fn compile_in_process(engine: &wasmtime::Engine, wasm: &[u8], out: &Path) -> Result<()> {
    let compiled = match crate::component::wasm_kind(wasm)? {
        crate::WasmKind::Module => engine.precompile_module(wasm),
        crate::WasmKind::Component => engine.precompile_component(wasm),
    }
    .map_err(|e| unrunnable(Problem::Invalid, format!("invalid WebAssembly: {e:#}")))?;
    std::fs::write(out, compiled).with_context(|| format!("writing {}", out.display()))
}
