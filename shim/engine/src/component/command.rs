//! Running a `wasi:cli/run` component to its exit status, with the statuses of a preview-1
//! command (`crate::run`).

use anyhow::{bail, Context, Result};
use wasmtime::component::InstancePre;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::bindings::CommandPre;

use super::host::{linker, Host, Limits, WasiTemplate};
use super::{netns, Component, ComponentKind, Network};
use crate::limits::{MemoryLimitExceeded, OOM_EXIT_CODE};
use crate::run::trap_report;
use crate::stop::Stopped;
use crate::unrunnable::{unrunnable, Problem};
use crate::{Command, Engine, Stopper, TRAP_EXIT_CODE};

/// Status of a command whose `run` returned `err` (what wasi-libc's `exit(1)` becomes).
const RUN_FAILED_EXIT_CODE: i32 = 1;

impl Engine {
    /// Checks, without running anything, that `component` is something this engine can run:
    /// every import is provided (WASI 0.2 and `wasi:http`) and it exports what its kind needs.
    pub fn check_component(&self, component: &Component, program: &str) -> Result<()> {
        let pre = self.instance_pre(component, program)?;
        match component.kind() {
            ComponentKind::Command => CommandPre::new(pre).map(drop),
            ComponentKind::HttpService => wasmtime_wasi_http::bindings::ProxyPre::new(pre).map(drop),
        }
        .map_err(|e| {
            unrunnable(Problem::NoEntryPoint, format!("{program} does not export what its world promises: {e:#}"))
        })
    }

    pub(crate) fn instance_pre(&self, component: &Component, program: &str) -> Result<InstancePre<Host>> {
        linker(self.component_engine()?)?.instantiate_pre(component.wasmtime()).map_err(|e| {
            unrunnable(
                Problem::Imports,
                format!(
                    "{program} needs imports this host does not provide (WASI 0.2: wasi:cli, wasi:io, wasi:clocks, \
                     wasi:filesystem, wasi:random, wasi:sockets, wasi:http): {e:#}"
                ),
            )
        })
    }

    /// Runs a `wasi:cli/run` component with `cmd` and returns its exit status, like
    /// [`Engine::run`] for a module: the `exit-with-code` code, 0 if `run` succeeds, 1 if it
    /// fails or calls `exit(err)`, `128 + signal` when stopped, [`TRAP_EXIT_CODE`] on a trap
    /// (reported on its stderr), 137 past the memory limit. `network` says which addresses it
    /// may bind. Runs on the calling thread, which must be in the pod's network namespace.
    /// When this returns, every socket the component opened is closed.
    pub fn run_component(
        &self,
        component: &Component,
        mut cmd: Command,
        network: &Network,
        stop: &Stopper,
    ) -> Result<i32> {
        let program = cmd.args.first().cloned().unwrap_or_default();
        if component.kind() != ComponentKind::Command {
            bail!("{program} is a wasi:http service, not a command: serve it (HttpService) instead of running it");
        }
        if !cmd.sockets.is_empty() {
            bail!("{program} is a component: it binds its own sockets through wasi:sockets; pass the listen spec as its Network");
        }
        let pre = CommandPre::new(self.instance_pre(component, &program)?)?;
        let engine = self.component_engine()?.clone();
        let template = WasiTemplate::new(&mut cmd, network, &program)?;
        let memory = cmd.memory.clone();
        let stdin = std::mem::take(&mut cmd.stdin);
        // One thread: the guest, its sockets and their I/O all live on the caller's thread
        // (blocking helpers, e.g. name lookups, on threads it spawns, in its namespace).
        let runtime = netns::runtime_builder(false)?.build().context("starting the component's runtime")?;
        let stopped = stop_signal(stop);
        let ended = runtime.block_on(async {
            let wasi = template.build(stdin)?;
            let mut store = Store::new(&engine, Host::new(wasi, Limits::Container(memory.clone())));
            store.limiter(|host| host.limits());
            arm_stop(&mut store, stop, &engine);
            let run = async {
                let command = match pre.instantiate_async(&mut store).await {
                    Ok(command) => command,
                    Err(e) if memory.exceeded() => return Ok(Err(e)),
                    Err(e) => return Err(e.context(format!("instantiating {program}"))),
                };
                Ok(command.wasi_cli_run().call_run(&mut store).await.flatten_run())
            };
            // A guest waiting in a host call (a sleep, a read, an accept) is dropped at once.
            let ended = tokio::select! {
                biased;
                sig = stopped => Ok(Err(Stopped(sig).into())),
                ended = run => ended,
            };
            // The store goes here: its sockets and listeners close with it.
            drop(store);
            ended
        })?;
        runtime.shutdown_background();
        Ok(exit_status(ended, stop, &template, &program, &memory))
    }
}

/// Resolves with the signal once a stop is requested.
fn stop_signal(stop: &Stopper) -> impl std::future::Future<Output = i32> {
    let (tx, mut rx) = tokio::sync::watch::channel(stop.requested());
    stop.on_stop(move |_| {
        let _ = tx.send(Some(0));
    });
    let stop = stop.clone();
    async move {
        loop {
            if let Some(sig) = stop.requested() {
                return sig;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

pub(crate) fn arm_stop(store: &mut Store<Host>, stop: &Stopper, engine: &wasmtime::Engine) {
    stop.attach(engine);
    store.set_epoch_deadline(1);
    let flag = stop.clone();
    store.epoch_deadline_callback(move |_| match flag.requested() {
        Some(sig) => Err(Stopped(sig).into()),
        None => Ok(UpdateDeadline::Continue(1)),
    });
    if stop.requested().is_some() {
        engine.increment_epoch();
    }
}

fn exit_status(
    ended: Result<(), anyhow::Error>,
    stop: &Stopper,
    template: &WasiTemplate,
    program: &str,
    memory: &crate::MemoryLimit,
) -> i32 {
    if let Some(sig) = stop.requested() {
        log::info!("{program} stopped by signal {sig}");
        return 128 + sig;
    }
    let err = match ended {
        Ok(()) => return 0,
        Err(err) => err,
    };
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return exit.0;
    }
    if memory.exceeded() {
        let reason = err
            .chain()
            .find_map(|e| e.downcast_ref::<MemoryLimitExceeded>())
            .map_or_else(|| "out of memory: past the container's memory limit".to_string(), ToString::to_string);
        log::warn!("{program} ended with status {OOM_EXIT_CODE}: {reason}");
        template.report(&format!("fabricks: {program}: {reason}"));
        return OOM_EXIT_CODE;
    }
    if err.downcast_ref::<RunFailed>().is_some() {
        return RUN_FAILED_EXIT_CODE;
    }
    let report = trap_report(&err);
    log::error!("{program} trapped: {report}");
    template.report(&format!("Error: {program} trapped: {report}"));
    TRAP_EXIT_CODE
}

/// `run` returned `err`: the guest failed by itself (and said why on its stderr).
#[derive(Debug)]
struct RunFailed;

impl std::fmt::Display for RunFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the command's run returned an error")
    }
}

impl std::error::Error for RunFailed {}

/// `call_run`'s two levels of failure as one: a trap, or `run` returning `err`.
pub(crate) trait Flatten {
    fn flatten_run(self) -> Result<()>;
}

impl Flatten for Result<Result<(), ()>> {
    fn flatten_run(self) -> Result<()> {
        match self {
            Ok(Ok(())) => Ok(()),
            Ok(Err(())) => Err(RunFailed.into()),
            Err(e) => Err(e),
        }
    }
}
