//! Running a command module to its exit status.

use std::io::Write;

use anyhow::{Context, Result};
use wasi_common::{I32Exit, WasiCtx};
use wasmtime::{Linker, Module, Store, UpdateDeadline};

use crate::command::{wasi_context, Command, TrapSink};
use crate::limits::{MemoryLimit, MemoryLimitExceeded, OOM_EXIT_CODE};
use crate::stop::Stopped;
use crate::unrunnable::{unrunnable, Problem};
use crate::{Engine, Stopper};

/// Exit status of a module that trapped: 128 + SIGABRT, what a native program that aborts
/// reports, so tooling that reads "killed by a signal" from a status keeps working.
pub const TRAP_EXIT_CODE: i32 = 134;

struct Host {
    wasi: WasiCtx,
    memory: MemoryLimit,
}

impl Engine {
    /// Runs `module`'s `_start` (or `cmd.entry`) with `cmd` and returns its exit status: the
    /// `proc_exit` code, 0 if `_start` returns (an entry's own `i32` result), `128 + signal` when stopped, [`TRAP_EXIT_CODE`] on a trap
    /// (reported on the module's stderr). Errors are failures to start it at all.
    pub fn run(&self, module: &Module, cmd: Command, stop: &Stopper) -> Result<i32> {
        let program = cmd.args.first().cloned().unwrap_or_default();
        let entry = cmd.entry.clone();
        for socket in &cmd.sockets {
            stop.watch_listener(&socket.listener).context("watching a listener")?;
        }
        let memory = cmd.memory.clone();
        let reason = cmd.reason.clone();
        let (wasi, trap_sink) = wasi_context(cmd)?;
        let trap_sink = reason.keeping(trap_sink);
        // The module's own engine: a first start may run baseline code (`Tier::Baseline`).
        let mut store = Store::new(module.engine(), Host { wasi, memory: memory.clone() });
        store.limiter(|host| &mut host.memory);
        arm_stop(&mut store, stop, module.engine());

        self.check_command(module, &program, entry.as_deref())?;
        let instance = match linker(module.engine())?.instantiate(&mut store, module) {
            Ok(instance) => instance,
            // Its initial memory alone is past the limit: the same end as growing past it.
            Err(e) if memory.exceeded() => return Ok(exit_status(Err(e), stop, trap_sink, &program, &memory)),
            Err(e) => return Err(e.context(format!("instantiating {program}"))),
        };
        let result = call_entry(&mut store, &instance, entry.as_deref());
        // The module's own handles go with the store; the stopper's duplicates go now.
        drop(store);
        stop.close_listeners();
        Ok(exit_status(result, stop, trap_sink, &program, &memory))
    }

    /// Checks, without running anything, that `module` is a WASI command this engine can
    /// run: it exports `_start` and imports nothing beyond WASI preview 1.
    pub fn check_command(&self, module: &Module, program: &str, entry: Option<&str>) -> Result<()> {
        let export = |name: &str| module.get_export(name).and_then(|e| e.func().cloned());
        match entry {
            None if !export("_start").is_some_and(|f| f.params().len() == 0 && f.results().len() == 0) => {
                return Err(unrunnable(
                    Problem::NotCommand,
                    format!("{program} has no `_start` function: it is not a WASI command module"),
                ));
            }
            None => {}
            Some(name) => {
                let usable = export(name).is_some_and(|f| {
                    let results: Vec<_> = f.results().collect();
                    f.params().len() == 0 && (results.is_empty() || (results.len() == 1 && results[0].is_i32()))
                });
                if !usable {
                    let exports: Vec<&str> =
                        module.exports().filter(|e| e.ty().func().is_some()).map(|e| e.name()).collect();
                    return Err(unrunnable(
                        Problem::NoEntryPoint,
                        format!(
                            "{program} has no function export `{name}` taking no parameters and returning nothing or \
                             an i32 (its function exports: {})",
                            if exports.is_empty() { "none".to_string() } else { exports.join(", ") }
                        ),
                    ));
                }
            }
        }
        linker(module.engine())?.instantiate_pre(module).map(drop).map_err(|e| {
            unrunnable(
                Problem::Imports,
                format!("{program} needs imports this host does not provide (only WASI preview 1 is available): {e:#}"),
            )
        })
    }
}

fn linker(engine: &wasmtime::Engine) -> Result<Linker<Host>> {
    let mut linker = Linker::new(engine);
    wasi_common::sync::add_to_linker(&mut linker, |h: &mut Host| &mut h.wasi)?;
    Ok(linker)
}

/// Calls the entry: `_start`, or the named export after `_initialize` (an `i32` result is
/// the exit status, which ends the run as `proc_exit` would).
fn call_entry(store: &mut Store<Host>, instance: &wasmtime::Instance, entry: Option<&str>) -> Result<()> {
    let Some(name) = entry else {
        return instance.get_typed_func::<(), ()>(&mut *store, "_start")?.call(&mut *store, ());
    };
    if let Ok(init) = instance.get_typed_func::<(), ()>(&mut *store, "_initialize") {
        init.call(&mut *store, ())?;
    }
    if let Ok(func) = instance.get_typed_func::<(), i32>(&mut *store, name) {
        let code = func.call(&mut *store, ())?;
        return match code {
            0 => Ok(()),
            code => Err(I32Exit(code).into()),
        };
    }
    instance.get_typed_func::<(), ()>(&mut *store, name)?.call(&mut *store, ())
}

fn arm_stop(store: &mut Store<Host>, stop: &Stopper, engine: &wasmtime::Engine) {
    stop.attach(engine);
    // Every epoch tick checks this store's own stopper; ticks happen only on stops.
    store.set_epoch_deadline(1);
    let flag = stop.clone();
    store.epoch_deadline_callback(move |_| match flag.requested() {
        Some(sig) => Err(Stopped(sig).into()),
        None => Ok(UpdateDeadline::Continue(1)),
    });
    // A stop requested before we armed must still end the module at its first check.
    if stop.requested().is_some() {
        engine.increment_epoch();
    }
}

fn exit_status(result: Result<()>, stop: &Stopper, trap_sink: TrapSink, program: &str, memory: &MemoryLimit) -> i32 {
    // A hard stop wins over the module's own exit: woken by the stop, it may exit first.
    if let Some(sig) = stop.requested() {
        log::info!("{program} stopped by signal {sig}");
        return 128 + sig;
    }
    let err = match result {
        Ok(()) => return 0,
        Err(err) => err,
    };
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return exit.0;
    }
    if memory.exceeded() {
        return out_of_memory(&err, trap_sink, program);
    }
    let report = trap_report(&err);
    log::error!("{program} trapped: {report}");
    if let Some(mut sink) = trap_sink {
        let _ = writeln!(sink, "Error: {program} trapped: {report}");
    }
    TRAP_EXIT_CODE
}

/// Ended like an OOM-killed process: one plain line saying which limit, no backtrace (the
/// allocation site is the Go runtime's, not the user's code).
fn out_of_memory(err: &anyhow::Error, trap_sink: TrapSink, program: &str) -> i32 {
    let reason = err
        .chain()
        .find_map(|e| e.downcast_ref::<MemoryLimitExceeded>())
        .map_or_else(|| "out of memory: past the container's memory limit".to_string(), ToString::to_string);
    log::warn!("{program} ended with status {OOM_EXIT_CODE}: {reason}");
    if let Some(mut sink) = trap_sink {
        let _ = writeln!(sink, "fabricks: {program}: {reason}");
    }
    OOM_EXIT_CODE
}

/// The trap and its wasm backtrace, one cause per paragraph. Not `{:?}`: that would add the
/// host's Rust backtrace whenever RUST_BACKTRACE is set in containerd's environment.
pub(crate) fn trap_report(err: &anyhow::Error) -> String {
    let causes: Vec<String> = err.chain().map(ToString::to_string).collect();
    causes.join("\n\nCaused by:\n    ")
}
