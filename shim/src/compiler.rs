//! The shim's engine: modules compile in a child process (`containerd-shim-fabricks-v1
//! compile`), so Cranelift's memory never stays in a shim, into a node-wide cache that
//! outlives shims.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result};
use fabricks_engine::{Compiler, Engine, EngineOptions, Problem, Unrunnable};

use crate::child;

/// Where compiled modules live unless `FABRICKS_CACHE_DIR` (in containerd's environment)
/// says otherwise.
const DEFAULT_CACHE_DIR: &str = "/var/lib/fabricks/cache";

pub fn engine() -> Result<Engine> {
    let cache_dir =
        std::env::var_os("FABRICKS_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| DEFAULT_CACHE_DIR.into());
    let exe = std::env::current_exe().context("locating the shim binary")?;
    let compile = move |wasm: &[u8], out: &std::path::Path| -> Result<()> {
        let mut cmd = Command::new(&exe);
        cmd.arg("compile").arg("--out").arg(out);
        child::run(cmd, wasm, "compiling the module").map(drop).map_err(|e| match e.downcast::<child::Failed>() {
            // The module itself is at fault, not the node: say so, in the compiler's words.
            Ok(failed) if failed.code == INVALID_MODULE => {
                let message = failed.stderr.trim_start_matches("Error: ").to_string();
                anyhow::Error::new(Unrunnable::new(Problem::Invalid, message))
            }
            Ok(failed) => failed.into(),
            Err(e) => e,
        })
    };
    Engine::new(EngineOptions { cache_dir, compiler: Compiler::External(Arc::new(compile)) })
}

/// The compile child's exit status when the module cannot be compiled (EX_DATAERR).
pub const INVALID_MODULE: i32 = 65;

/// The compile child's exit status for `err`.
pub fn exit_status(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.is::<Unrunnable>()) {
        INVALID_MODULE
    } else {
        1
    }
}

/// `containerd-shim-fabricks-v1 compile --out PATH` with the module on stdin.
pub fn compile_main(args: &[String]) -> Result<()> {
    let out = match args {
        [flag, out] if flag == "--out" => PathBuf::from(out),
        _ => anyhow::bail!("usage: containerd-shim-fabricks-v1 compile --out PATH < module.wasm"),
    };
    let mut wasm = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut wasm).context("reading the module from stdin")?;
    fabricks_engine::compile_to_file(&wasm, &out)
}
