//! The shim's engine: modules compile in a child process (`containerd-shim-fabricks-v1
//! compile`), so Cranelift's memory never stays in a shim, into a node-wide cache that
//! outlives shims. A command's first start runs baseline code while a detached child
//! writes the optimized entry (docs/design.md, "First start").

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use fabricks_engine::{Compiler, Engine, EngineOptions, Problem, Tier, Unrunnable};

use crate::child;

/// Where compiled modules live unless `FABRICKS_CACHE_DIR` (in containerd's environment)
/// says otherwise.
const DEFAULT_CACHE_DIR: &str = "/var/lib/fabricks/cache";

/// The background compile's niceness: it yields to the containers it shares the node with.
const BACKGROUND_NICE: libc::c_int = 10;

pub fn engine() -> Result<Engine> {
    let cache_dir =
        std::env::var_os("FABRICKS_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| DEFAULT_CACHE_DIR.into());
    let exe = std::env::current_exe().context("locating the shim binary")?;
    let child_exe = exe.clone();
    let compile = move |wasm: &[u8], out: &Path, tier: Tier| -> Result<()> {
        let mut cmd = Command::new(&child_exe);
        cmd.arg("compile");
        if tier == Tier::Baseline {
            cmd.arg("--baseline");
        }
        cmd.arg("--out").arg(out);
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
    let optimize = move |wasm: &[u8], entry: &Path| optimize_detached(&exe, wasm, entry);
    Engine::new(EngineOptions { cache_dir, compiler: Compiler::External(Arc::new(compile)) })?
        .with_baseline_first_start(Arc::new(optimize))
}

/// Starts `compile --entry ENTRY` in its own session, niced, reading the module from an
/// unlinked file: a command's task (and its shim) may be gone long before the compile ends,
/// and nothing waits for it but the shim's reaper or, after the shim, init.
fn optimize_detached(exe: &Path, wasm: &[u8], entry: &Path) -> Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let staged =
        entry.with_extension(format!("wasm.tmp{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&staged, wasm).with_context(|| format!("writing {}", staged.display()))?;
    let input = File::open(&staged).with_context(|| format!("opening {}", staged.display()));
    let _ = std::fs::remove_file(&staged);
    let mut cmd = Command::new(exe);
    cmd.arg("compile").arg("--entry").arg(entry).stdin(input?).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: setsid, setpriority, close_range and fcntl are async-signal-safe and touch
    // only the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE);
            child::close_on_exec_from(3);
            Ok(())
        });
    }
    let child = cmd.spawn().context("starting the background compile")?;
    log::debug!("background compile of {} is pid {}", entry.display(), child.id());
    Ok(())
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

const USAGE: &str = "usage: containerd-shim-fabricks-v1 compile [--baseline] --out PATH < module.wasm\n       \
                     containerd-shim-fabricks-v1 compile --entry CACHE_ENTRY < module.wasm";

/// `containerd-shim-fabricks-v1 compile [--baseline] --out PATH` (a file for the caller to
/// load) or `compile --entry CACHE_ENTRY` (the optimized cache entry, under its lock), with
/// the module on stdin.
pub fn compile_main(args: &[String]) -> Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut wasm = Vec::new();
    let mut read =
        || std::io::Read::read_to_end(&mut std::io::stdin(), &mut wasm).context("reading the module from stdin");
    match args[..] {
        ["--out", out] => {
            read()?;
            fabricks_engine::compile_to_file(&wasm, Path::new(out), Tier::Optimized)
        }
        ["--baseline", "--out", out] => {
            read()?;
            fabricks_engine::compile_to_file(&wasm, Path::new(out), Tier::Baseline)
        }
        ["--entry", entry] => {
            read()?;
            fabricks_engine::compile_into_cache(&wasm, Path::new(entry))
        }
        _ => anyhow::bail!("{USAGE}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_background_child_inherits_no_descriptor_past_stdio() {
        // A high number: `ls` itself opens the lowest free ones. SAFETY: a plain open and
        // dup2 (no CLOEXEC, as the shim's inherited listener); both closed below.
        let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        let fd = unsafe { libc::dup2(opened, 77) };
        assert_eq!(fd, 77);
        let listed = |detach: bool| {
            let mut cmd = Command::new("ls");
            cmd.arg("/proc/self/fd");
            if detach {
                // SAFETY: as in optimize_detached.
                unsafe {
                    cmd.pre_exec(|| {
                        child::close_on_exec_from(3);
                        Ok(())
                    });
                }
            }
            let out = cmd.output().unwrap();
            String::from_utf8(out.stdout).unwrap().lines().any(|l| l == fd.to_string())
        };
        assert!(listed(false), "without it, fd {fd} is inherited (the check can fail)");
        assert!(!listed(true), "fd {fd} reached the child");
        // SAFETY: ours.
        unsafe {
            libc::close(fd);
            libc::close(opened);
        }
    }
}
