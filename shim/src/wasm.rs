//! A wasm container's program (a preview-1 module or a preview-2 component) on a thread of
//! its runner (`crate::runner`), to its exit or as an HTTP server.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use fabricks_engine::{
    CachePin, Command, Component, ComponentKind, Engine, ExitReason, FirstStart, MemoryLimit, Module, ModuleKind,
    NetNamespace, Network, Preopen, Program, Stdio, Stopper,
};
use fabricks_listen::ListenSpec;

use crate::entrypoint::split_export;
use crate::error::invalid;
use crate::listen;
use crate::reactor::{HttpComponentTask, ReactorTask};
use crate::spec::ContainerSpec;
use crate::stdio;
use crate::termination::TerminationLog;

pub struct WasmTask {
    engine: Engine,
    /// What start runs: a command (module or component), or an HTTP server of a reactor or
    /// a `wasi:http` component.
    run: Mutex<Option<Run>>,
    /// Where errors after start go, besides the shim log: the task's own stderr. Taken by
    /// the module thread and closed when it ends: containerd 2.x waits for the end of the
    /// task's output before it deletes the task.
    stderr: Mutex<Option<File>>,
    stopper: Stopper,
    memory: MemoryLimit,
    /// The container's network namespace (`None`: the host's), which the module thread
    /// enters: a component's own sockets and outgoing connections are made there.
    namespace: Option<NetNamespace>,
    /// Keeps the compiled program's cache entry from being swept while the task exists.
    pin: CachePin,
    /// Why the program ended, as the engine reported it on stderr; written to the
    /// termination message file (on Kubernetes) when it ends with a non-zero status.
    reason: ExitReason,
    termination: Option<TerminationLog>,
}

enum Run {
    Command(Module, Command),
    Reactor(ReactorTask),
    Component(Component, Command, Network),
    HttpComponent(HttpComponentTask),
}

pub struct Io<'a> {
    pub stdin: &'a str,
    pub stdout: &'a str,
    pub stderr: &'a str,
}

/// Where a task's network is: its namespace and the ports its listen spec names.
pub struct Net<'a> {
    pub namespace: Option<NetNamespace>,
    pub listen: &'a ListenSpec,
}

impl WasmTask {
    /// Everything that can fail before the program runs fails here, at create time:
    /// compiling, imports WASI cannot satisfy, a missing entry point, unopenable stdio,
    /// ports in use.
    pub fn prepare(
        engine: &Engine,
        wasm: &[u8],
        export: Option<&str>,
        spec: &ContainerSpec,
        io: Io,
        net: Net,
    ) -> Result<Self> {
        let program_name = spec.program().unwrap_or_default().to_string();
        // A service (it has ports) lives on the code it starts with: it waits for optimized
        // code. A command may start on baseline code while that compiles (docs/design.md).
        let first = if net.listen.is_empty() { FirstStart::Baseline } else { FirstStart::Optimized };
        let (program, pin) =
            engine.load_program_pinned(wasm, first).with_context(|| format!("loading {program_name}"))?;
        let stdout = stdio::open_output(io.stdout)?;
        let stderr = stdio::open_output(io.stderr)?;
        let stderr_copy = match &stderr {
            Stdio::File(f) => Some(f.try_clone().context("duplicating stderr")?),
            _ => None,
        };
        let memory = spec.memory_limit.map_or_else(MemoryLimit::unlimited, MemoryLimit::bytes);
        let reason = ExitReason::default();
        let command = Command {
            // argv[0] is the module's path, without the `#export` that chose what to run.
            args: spec
                .args
                .iter()
                .enumerate()
                .map(|(i, a)| if i == 0 { split_export(a).0.to_string() } else { a.clone() })
                .collect(),
            entry: export.map(str::to_string),
            env: spec.env_pairs(),
            cwd: spec.cwd.clone(),
            dirs: vec![Preopen { host: spec.rootfs.clone(), guest: "/".into() }],
            sockets: Vec::new(),
            stdin: Stdio::Null,
            stdout,
            stderr,
            memory: memory.clone(),
            reason: reason.clone(),
        };
        let stopper = Stopper::new();
        let bind = |listen: &ListenSpec| listen::bind(net.namespace.as_ref(), listen);
        let run = match program {
            Program::Module(module) => {
                // A named export is run like `_start`, whatever else the module exports.
                let kind = match export {
                    Some(_) => ModuleKind::Command,
                    None => engine.module_kind(&module, &program_name)?,
                };
                let sockets = bind(net.listen)?;
                match kind {
                    ModuleKind::Command => {
                        engine.check_command(&module, &program_name, export)?;
                        let stdin = stdio::open_input(io.stdin)?;
                        Run::Command(module, Command { sockets, stdin, ..command })
                    }
                    ModuleKind::Reactor => {
                        Run::Reactor(crate::reactor::prepare(&module, &program_name, spec, command, sockets, &stopper)?)
                    }
                }
            }
            Program::Component(_) if export.is_some() => {
                let (path, export) = split_export(&program_name);
                return Err(invalid(format!(
                    "the entrypoint {program_name} names the export {}, but {path} is a component: a component \
                     runs wasi:cli/run or serves wasi:http; drop `#{}` from the entrypoint",
                    export.unwrap_or_default(),
                    export.unwrap_or_default()
                )));
            }
            Program::Component(component) => match component.kind() {
                ComponentKind::Command => {
                    engine.check_component(&component, &program_name)?;
                    // It binds its own sockets (wasi:sockets), only on its listen spec's ports.
                    let network = Network::new(net.listen.endpoints().iter().map(|e| e.addr).collect());
                    let stdin = stdio::open_input(io.stdin)?;
                    Run::Component(component, Command { stdin, ..command }, network)
                }
                ComponentKind::HttpService => {
                    let listen = listen::or_http_default(net.listen);
                    let sockets = bind(&listen)?;
                    Run::HttpComponent(crate::reactor::prepare_component(
                        engine,
                        &component,
                        &program_name,
                        spec,
                        command,
                        sockets,
                        &stopper,
                    )?)
                }
            },
        };
        // Before the start: a SIGTERM that comes before the module's server is up is graceful.
        for listener in run_listeners(&run) {
            stopper.watch_listener(listener).context("watching a listener")?;
        }
        Ok(Self {
            engine: engine.clone(),
            run: Mutex::new(Some(run)),
            stderr: Mutex::new(stderr_copy),
            stopper,
            memory,
            namespace: net.namespace,
            pin,
            reason,
            termination: TerminationLog::of(spec),
        })
    }

    /// Runs the program on its own thread, inside the container's network namespace;
    /// `on_exit` gets its exit status and whether it ran out of memory.
    pub fn start(&self, id: &str, on_exit: impl FnOnce(i32, bool) + Send + 'static) -> Result<()> {
        let run = self.run.lock().unwrap().take().context("the task was already started")?;
        let (engine, stopper) = (self.engine.clone(), self.stopper.clone());
        let (memory, namespace) = (self.memory.clone(), self.namespace.clone());
        let mut stderr = self.stderr.lock().unwrap().take();
        let (reason, termination) = (self.reason.clone(), self.termination.clone());
        let id = id.to_string();
        std::thread::Builder::new()
            .name(format!("wasm-{}", &id[..id.len().min(8)]))
            .spawn(move || {
                let entered = namespace.as_ref().map_or(Ok(()), NetNamespace::enter);
                let result = entered.and_then(|()| match run {
                    Run::Command(module, command) => engine.run(&module, command, &stopper),
                    Run::Reactor(task) => fabricks_http::serve(task.pool, &task.settings, task.listeners, &stopper),
                    Run::Component(component, command, network) => {
                        engine.run_component(&component, command, &network, &stopper)
                    }
                    Run::HttpComponent(task) => {
                        fabricks_http::serve_component(task.service, &task.settings, task.listeners, &stopper)
                    }
                });
                let code = result.unwrap_or_else(|e| {
                    log::error!("task {id}: {e:#}");
                    let line = format!("fabricks: {e:#}");
                    if let Some(err) = stderr.as_mut() {
                        let _ = writeln!(err, "{line}");
                    }
                    reason.record(&line);
                    1
                });
                // Before the exit is reported: kubelet reads the file once it sees the exit.
                if let (true, Some(log), Some(why)) = (code != 0, &termination, reason.get()) {
                    log.record(&why);
                }
                drop(stderr);
                // Its ports are free the moment it ends, as a process's are.
                stopper.close_listeners();
                on_exit(code, memory.exceeded())
            })
            .context("starting the module thread")?;
        Ok(())
    }

    /// Delivers a signal the way the kernel would to a process with default handlers:
    /// signals whose default is to terminate end the module with `128 + signal`. True if
    /// the module is being ended (not asked to stop gracefully, nor left alone).
    pub fn signal(&self, signal: u32) -> bool {
        !ignored_by_default(signal as i32) && self.stopper.stop(signal as i32)
    }
}

impl WasmTask {
    /// Bytes of linear memory the module holds, and its limit.
    pub fn memory(&self) -> (u64, Option<u64>) {
        (self.memory.used(), self.memory.limit())
    }

    /// The compiled module's cache entry.
    pub fn cache_entry(&self) -> &Path {
        self.pin.path()
    }
}

/// The listening sockets a task serves (or hands its module).
fn run_listeners(run: &Run) -> Vec<&std::net::TcpListener> {
    match run {
        Run::Command(_, command) => command.sockets.iter().map(|s| &s.listener).collect(),
        Run::Reactor(task) => task.listeners.iter().collect(),
        Run::HttpComponent(task) => task.listeners.iter().collect(),
        Run::Component(..) => Vec::new(),
    }
}

fn ignored_by_default(signal: i32) -> bool {
    matches!(signal, 0 | libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH)
}
