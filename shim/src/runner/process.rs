//! The runner process: reads its task from the control socket, prepares the program as the
//! shim's threads used to (`WasmTask`), says it is ready, then starts, signals and reports
//! as the shim asks, and exits with the program's status.

use std::io::{BufReader, Read};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use fabricks_engine::{NetNamespace, Unrunnable};
use fabricks_listen::ListenSpec;
use fabricks_sandbox::Keep;
use nix::sched::{unshare, CloneFlags};

use super::wire::{self, Report, Request, Task, CONTROL_FD};
use crate::error;
use crate::spec::{ContainerSpec, Network};
use crate::wasm::{Io, Net, WasmTask};
use crate::{child, hints};

/// Where the runner's reports go: the control socket, shared by every thread that reports.
type Reports = Arc<Mutex<UnixStream>>;

/// `containerd-shim-fabricks-v1 runner`: the process's exit status.
pub fn runner_main() -> i32 {
    // SAFETY: the shim passes the control socket as fd 3 and nothing else uses that number.
    let control = unsafe { UnixStream::from_raw_fd(CONTROL_FD) };
    let reports: Reports = match control.try_clone() {
        Ok(c) => Arc::new(Mutex::new(c)),
        Err(_) => return 1,
    };
    Forward::install(reports.clone());
    // The shim's reaper is not here: a child of the runner is waited for by its spawner.
    child::wait_directly();
    let mut from = BufReader::new(control);
    let (task, wasm) = match read_task(&mut from) {
        Ok(read) => read,
        Err(e) => {
            log::error!("runner: reading the task: {e:#}");
            return 1;
        }
    };
    Forward::set_level(&task.log_level);
    let prepared = confined(&task).and_then(|(spec, namespace, listen)| {
        prepare(&task, &wasm, &spec, Net { namespace, listen: &listen })
            .map_err(|e| Unrunnable::add_hint(e, hints::shim))
    });
    drop(wasm);
    let wasm_task = match prepared {
        Ok(t) => t,
        Err(e) => {
            let invalid = error::is_input_error(&e);
            report(&reports, &Report::Failed { error: format!("{e:#}"), invalid });
            return 1;
        }
    };
    report(&reports, &Report::Ready { cache_entry: wasm_task.cache_entry().to_path_buf() });
    serve(&task.id, wasm_task, &mut from, &reports)
}

fn read_task(from: &mut BufReader<UnixStream>) -> Result<(Task, Vec<u8>)> {
    let task: Task = wire::receive(from)?.context("the shim closed the control socket")?;
    let mut wasm = vec![0; task.wasm_len];
    from.read_exact(&mut wasm).context("reading the module")?;
    Ok((task, wasm))
}

/// Reads the container's spec, enters its network namespace and gives up the runner's
/// powers (`fabricks_sandbox`), all while this is the runner's only thread: a namespace and
/// capabilities are a thread's, and every thread made later inherits them.
fn confined(task: &Task) -> Result<(ContainerSpec, Option<NetNamespace>, ListenSpec)> {
    let spec = ContainerSpec::load(&task.bundle)?;
    let listen = ListenSpec::parse(&task.listen).context("reading the listen spec from the shim")?;
    let namespace = enter_network(&spec.network)?;
    let lowest_free = fabricks_sandbox::unprivileged_port_start();
    let keep = Keep { bind_low_ports: listen.endpoints().iter().any(|e| e.port() < lowest_free) };
    fabricks_sandbox::confine(keep)?;
    Ok((spec, namespace, listen))
}

/// Moves the runner into the container's network namespace; `None`: the host's.
fn enter_network(network: &Network) -> Result<Option<NetNamespace>> {
    let namespace = match network {
        Network::Host => return Ok(None),
        Network::Path(path) => NetNamespace::open(path)?,
        Network::New => {
            unshare(CloneFlags::CLONE_NEWNET).context("creating the container's network namespace")?;
            NetNamespace::current()?
        }
    };
    namespace.enter()?;
    Ok(Some(namespace))
}

fn prepare(task: &Task, wasm: &[u8], spec: &ContainerSpec, net: Net) -> Result<WasmTask> {
    let engine = crate::compiler::engine()?;
    let io = Io { stdin: &task.stdin, stdout: &task.stdout, stderr: &task.stderr };
    WasmTask::prepare(&engine, wasm, task.export.as_deref(), spec, io, net)
}

/// Answers the shim until the program ends (the process exits from its thread) or the shim
/// is gone (the program ends with it, as it did when it was one of the shim's threads).
fn serve(id: &str, task: WasmTask, from: &mut BufReader<UnixStream>, reports: &Reports) -> i32 {
    let mut started = false;
    loop {
        let request = match wire::receive::<Request>(from) {
            Ok(Some(request)) => request,
            Ok(None) => return 128 + libc::SIGKILL,
            Err(e) => {
                log::error!("task {id}: reading the shim's request: {e}");
                return 128 + libc::SIGKILL;
            }
        };
        match request {
            Request::Start => {
                // The program's end, reported from its thread, must come after this answer.
                let (answered, wait_answer) = std::sync::mpsc::channel::<()>();
                let exit_to = reports.clone();
                let result = task.start(id, move |code, out_of_memory| {
                    let _ = wait_answer.recv();
                    report(&exit_to, &Report::Exited { code, out_of_memory });
                    std::process::exit(code)
                });
                started |= result.is_ok();
                report(reports, &Report::Started(result.map_err(|e| format!("{e:#}"))));
                drop(answered);
            }
            Request::Signal(signal) => {
                let ending = task.signal(signal);
                report(reports, &Report::Signalled(ending));
                if ending && !started {
                    // Nothing runs yet that could end on its own.
                    return 128 + signal as i32;
                }
            }
            Request::Memory => {
                let (used, limit) = task.memory();
                report(reports, &Report::Memory { used, limit });
            }
        }
    }
}

fn report(reports: &Reports, message: &Report) {
    let _ = wire::send(&mut *reports.lock().unwrap(), message);
}

/// The runner's logger: every record goes to the shim's log, through the control socket.
struct Forward {
    reports: Reports,
}

impl Forward {
    fn install(reports: Reports) {
        if log::set_logger(Box::leak(Box::new(Forward { reports }))).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
        std::panic::set_hook(Box::new(|info| log::error!("runner panicked: {info}")));
    }

    fn set_level(level: &str) {
        log::set_max_level(level.parse().unwrap_or(log::LevelFilter::Info));
    }
}

impl log::Log for Forward {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let line = Report::Log { level: record.level().to_string(), text: record.args().to_string() };
            report(&self.reports, &line);
        }
    }

    fn flush(&self) {}
}
