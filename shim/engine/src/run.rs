//! Running a command module to its exit status.

use std::io::Write;

use anyhow::{bail, Context, Result};
use wasi_common::{I32Exit, WasiCtx};
use wasmtime::{Linker, Module, Store, UpdateDeadline};

use crate::command::{wasi_context, Command, TrapSink};
use crate::limits::{MemoryLimit, MemoryLimitExceeded, OOM_EXIT_CODE};
use crate::stop::Stopped;
use crate::{Engine, Stopper};

/// Exit status of a module that trapped: 128 + SIGABRT, what a native program that aborts
/// reports, so tooling that reads "killed by a signal" from a status keeps working.
pub const TRAP_EXIT_CODE: i32 = 134;

struct Host {
    wasi: WasiCtx,
    memory: MemoryLimit,
}

impl Engine {
    /// Runs `module`'s `_start` with `cmd` and returns its exit status: the `proc_exit`
    /// code, 0 if `_start` returns, `128 + signal` when stopped, [`TRAP_EXIT_CODE`] on a trap
    /// (reported on the module's stderr). Errors are failures to start it at all.
    pub fn run(&self, module: &Module, cmd: Command, stop: &Stopper) -> Result<i32> {
        let program = cmd.args.first().cloned().unwrap_or_default();
        for socket in &cmd.sockets {
            stop.watch_listener(&socket.listener).context("watching a listener")?;
        }
        let memory = cmd.memory.clone();
        let (wasi, trap_sink) = wasi_context(cmd)?;
        let mut store = Store::new(self.wasmtime(), Host { wasi, memory: memory.clone() });
        store.limiter(|host| &mut host.memory);
        arm_stop(&mut store, stop, self.wasmtime());

        self.check_command(module, &program)?;
        let instance = match self.linker()?.instantiate(&mut store, module) {
            Ok(instance) => instance,
            // Its initial memory alone is past the limit: the same end as growing past it.
            Err(e) if memory.exceeded() => return Ok(exit_status(Err(e), stop, trap_sink, &program, &memory)),
            Err(e) => return Err(e.context(format!("instantiating {program}"))),
        };
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        let result = start.call(&mut store, ());
        Ok(exit_status(result, stop, trap_sink, &program, &memory))
    }

    /// Checks, without running anything, that `module` is a WASI command this engine can
    /// run: it exports `_start` and imports nothing beyond WASI preview 1.
    pub fn check_command(&self, module: &Module, program: &str) -> Result<()> {
        let exports_start = module
            .get_export("_start")
            .is_some_and(|e| e.func().is_some_and(|f| f.params().len() == 0 && f.results().len() == 0));
        if !exports_start {
            bail!(
                "{program} has no `_start` function: it is not a WASI command module \
                 (a Go program needs `package main` and must not be built with -buildmode=c-shared)"
            );
        }
        self.linker()?.instantiate_pre(module).map(drop).with_context(|| {
            format!("{program} needs imports Fabricks does not provide (only WASI preview 1 is available)")
        })
    }

    fn linker(&self) -> Result<Linker<Host>> {
        let mut linker = Linker::new(self.wasmtime());
        wasi_common::sync::add_to_linker(&mut linker, |h: &mut Host| &mut h.wasi)?;
        Ok(linker)
    }
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
