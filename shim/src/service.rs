//! The containerd task API (shim v2) for the tasks of one shim: all containers of a pod
//! when CRI groups them, one container for a plain `ctr run`.
//!
//! The service keeps the lifecycle rules (one task per id, created → running → stopped
//! once, the exit reported once and after any OOM, no delete while running) and is generic
//! over what it publishes ([`Events`]) and what runs the containers ([`Runtime`]), so the
//! rules are tested in-process (see `tests` below); `node.rs` is the runtime of a real node.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use containerd_shim::api::*;
use containerd_shim::protos::cgroups::metrics::Metrics;
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskIO, TaskOOM, TaskStart};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::types::task::{ProcessInfo, Status};
use containerd_shim::{Task, TtrpcContext, TtrpcResult};

use crate::error::{invalid, TaskError};
use crate::events::{Events, TaskEvent};
use crate::spec::ContainerSpec;
use crate::state::{Exit, Lifecycle};

/// How long a forced stop waits for the workload to end before the exit is reported anyway
/// (a module thread blocked in a host call notices the stop only when the call returns).
pub const STOP_GRACE: Duration = Duration::from_millis(500);

/// `io.containerd.cgroups.v1.Metrics`: what `ctr task metrics`, CRI's container stats and
/// containerd 2.x's OOM check decode.
const METRICS_TYPE: &str = "io.containerd.cgroups.v1.Metrics";

/// How a workload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub code: u32,
    /// It was ended for going past its memory limit.
    pub out_of_memory: bool,
}

/// Called by a workload, from any thread, when it ends. Only the first report of a task
/// counts (a forced stop and the workload's own end can race).
pub type ExitSink = Box<dyn FnOnce(Ended) + Send>;

/// What runs containers: prepares a container's workload at create.
pub trait Runtime: Send + Sync + 'static {
    type Workload: Workload;

    /// Everything that can fail before the container runs fails here. `exited` is how the
    /// workload reports its end.
    fn create(&self, req: &CreateTaskRequest, spec: &ContainerSpec, exited: ExitSink) -> Result<Self::Workload>;
}

/// One container's workload: a wasm program in its runner process, or a process under runc.
pub trait Workload: Send + Sync + 'static {
    /// The pid containerd records for the task.
    fn pid(&self) -> u32;
    fn start(&self) -> Result<()>;
    fn kill(&self, signal: u32, all: bool) -> Result<Kill>;
    /// Releases what the container holds on the node: called once, when it is not running.
    fn delete(&self) -> Result<()>;
    fn metrics(&self) -> Result<Metrics>;
}

/// What a delivered signal means for the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// Nothing for the service to do: the workload reports its exit itself if the signal
    /// ends it (a process under runc, a graceful stop, an ignored signal).
    Delivered,
    /// The workload is being ended hard: if it has not reported within [`STOP_GRACE`] (or was
    /// never started), the service reports it ended with `128 + signal`.
    Ending,
}

struct Container<W> {
    id: String,
    bundle: String,
    stdio: [String; 3],
    workload: W,
    lifecycle: Arc<Lifecycle>,
    exits: Arc<ExitReporter>,
}

/// Records a task's exit and announces it: the one place that happens.
struct ExitReporter {
    id: String,
    lifecycle: Arc<Lifecycle>,
    events: Arc<dyn Events>,
    pid: AtomicU32,
    /// While a start is being announced: exits that came meanwhile, reported after it (a
    /// module may end before `start` returns, and TaskExit must not precede TaskStart).
    held: Mutex<Option<Vec<Ended>>>,
}

impl ExitReporter {
    fn report(&self, ended: Ended) {
        if let Some(held) = self.held.lock().unwrap().as_mut() {
            held.push(ended);
            return;
        }
        self.record(ended);
    }

    fn hold(&self) {
        *self.held.lock().unwrap() = Some(Vec::new());
    }

    fn release(&self) {
        let held = self.held.lock().unwrap().take();
        for ended in held.into_iter().flatten() {
            self.record(ended);
        }
    }

    fn record(&self, ended: Ended) {
        let Some(exit) = self.lifecycle.set_exited(ended.code) else { return };
        log::info!("task {} exited with status {}", self.id, exit.code);
        if ended.out_of_memory {
            self.events.publish(TaskEvent::Oom(TaskOOM { container_id: self.id.clone(), ..Default::default() }));
        }
        self.events.publish(TaskEvent::Exit(TaskExit {
            container_id: self.id.clone(),
            id: self.id.clone(),
            pid: self.pid.load(Ordering::SeqCst),
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        }));
    }
}

pub struct Service<E: Events, R: Runtime> {
    events: Arc<E>,
    runtime: R,
    containers: Mutex<HashMap<String, Arc<Container<R::Workload>>>>,
    /// Ids whose create is under way, so a second create of one is refused at once.
    creating: Mutex<HashSet<String>>,
    /// Called when containerd asks the shim to shut down and no task is left.
    on_idle: Box<dyn Fn() + Send + Sync>,
    stop_grace: Duration,
}

type Reply<T> = std::result::Result<T, TaskError>;

impl<E: Events, R: Runtime> Service<E, R> {
    pub fn new(events: E, runtime: R, on_idle: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            events: Arc::new(events),
            runtime,
            containers: Mutex::default(),
            creating: Mutex::default(),
            on_idle: Box::new(on_idle),
            stop_grace: STOP_GRACE,
        }
    }

    fn container(&self, id: &str) -> Reply<Arc<Container<R::Workload>>> {
        self.containers
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| TaskError::NotFound(format!("task {id} not found")))
    }

    pub fn create_task(&self, req: &CreateTaskRequest) -> Reply<CreateTaskResponse> {
        log::info!("create {}", req.id);
        if self.containers.lock().unwrap().contains_key(&req.id)
            || !self.creating.lock().unwrap().insert(req.id.clone())
        {
            return Err(TaskError::AlreadyExists(format!("task {} already exists in this shim", req.id)));
        }
        let created = self.build_container(req);
        self.creating.lock().unwrap().remove(&req.id);
        let container = Arc::new(created?);
        let pid = container.workload.pid();
        self.containers.lock().unwrap().insert(req.id.clone(), container);
        self.events.publish(TaskEvent::Create(TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            }),
            pid,
            ..Default::default()
        }));
        Ok(CreateTaskResponse { pid, ..Default::default() })
    }

    fn build_container(&self, req: &CreateTaskRequest) -> Reply<Container<R::Workload>> {
        if req.terminal {
            return Err(TaskError::Invalid(invalid("a terminal (-t) is not supported: wasm modules get plain stdio")));
        }
        let spec = ContainerSpec::load(&PathBuf::from(&req.bundle)).map_err(TaskError::Invalid)?;
        let lifecycle = Arc::new(Lifecycle::default());
        let exits = Arc::new(ExitReporter {
            id: req.id.clone(),
            lifecycle: lifecycle.clone(),
            events: self.events.clone(),
            pid: AtomicU32::new(0),
            held: Mutex::new(None),
        });
        let sink = exits.clone();
        let workload = self.runtime.create(req, &spec, Box::new(move |ended| sink.report(ended)))?;
        exits.pid.store(workload.pid(), Ordering::SeqCst);
        Ok(Container {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            stdio: [req.stdin.clone(), req.stdout.clone(), req.stderr.clone()],
            workload,
            lifecycle,
            exits,
        })
    }

    pub fn start_task(&self, req: &StartRequest) -> Reply<StartResponse> {
        Self::no_exec(&req.exec_id)?;
        let container = self.container(&req.id)?;
        if !container.lifecycle.set_running() {
            return Err(TaskError::State(format!("task {} was already started", req.id)));
        }
        container.exits.hold();
        let started = container.workload.start();
        let pid = container.workload.pid();
        if started.is_ok() {
            self.events.publish(TaskEvent::Start(TaskStart {
                container_id: req.id.clone(),
                pid,
                ..Default::default()
            }));
        }
        container.exits.release();
        started?;
        Ok(StartResponse { pid, ..Default::default() })
    }

    pub fn kill_task(&self, req: &KillRequest) -> Reply<()> {
        log::info!("kill {} signal {}", req.id, req.signal);
        Self::no_exec(&req.exec_id)?;
        let container = self.container(&req.id)?;
        let (status, _) = container.lifecycle.status();
        if status == Status::STOPPED {
            return Ok(());
        }
        if container.workload.kill(req.signal, req.all)? == Kill::Ending {
            let ended = Ended { code: 128 + req.signal, out_of_memory: false };
            if status == Status::CREATED {
                // Never started: nothing runs that could report.
                container.exits.report(ended);
            } else {
                self.report_if_stuck(&container, ended);
            }
        }
        Ok(())
    }

    /// A workload that does not end within the grace period is reported ended anyway, as a
    /// killed process would be; a module thread blocked in a host call ends with its runner,
    /// which delete kills.
    fn report_if_stuck(&self, container: &Arc<Container<R::Workload>>, ended: Ended) {
        let (container, grace) = (container.clone(), self.stop_grace);
        std::thread::spawn(move || {
            if !container.lifecycle.wait_exit_for(grace) {
                log::warn!("task {} is blocked in a host call; reporting it stopped", container.id);
                container.exits.report(ended);
            }
        });
    }

    pub fn delete_task(&self, req: &DeleteRequest) -> Reply<DeleteResponse> {
        log::info!("delete {}", req.id);
        Self::no_exec(&req.exec_id)?;
        let container = self.container(&req.id)?;
        let (status, exit) = container.lifecycle.status();
        if status == Status::RUNNING {
            return Err(TaskError::State(format!("task {} is still running: stop it before deleting it", req.id)));
        }
        let exit = exit.unwrap_or_else(|| Exit { code: 0, at: crate::state::now() });
        container.workload.delete()?;
        self.containers.lock().unwrap().remove(&req.id);
        let pid = container.workload.pid();
        self.events.publish(TaskEvent::Delete(TaskDelete {
            container_id: req.id.clone(),
            id: req.id.clone(),
            pid,
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at.clone()),
            ..Default::default()
        }));
        Ok(DeleteResponse { pid, exit_status: exit.code, exited_at: MessageField::some(exit.at), ..Default::default() })
    }

    pub fn task_state(&self, req: &StateRequest) -> Reply<StateResponse> {
        Self::no_exec(&req.exec_id)?;
        let container = self.container(&req.id)?;
        let (status, exit) = container.lifecycle.status();
        let [stdin, stdout, stderr] = container.stdio.clone();
        let mut resp = StateResponse {
            id: req.id.clone(),
            bundle: container.bundle.clone(),
            pid: container.workload.pid(),
            status: status.into(),
            stdin,
            stdout,
            stderr,
            ..Default::default()
        };
        if let Some(exit) = exit {
            resp.exit_status = exit.code;
            resp.exited_at = MessageField::some(exit.at);
        }
        Ok(resp)
    }

    pub fn wait_task(&self, req: &WaitRequest) -> Reply<WaitResponse> {
        Self::no_exec(&req.exec_id)?;
        let exit = self.container(&req.id)?.lifecycle.wait_exit();
        Ok(WaitResponse { exit_status: exit.code, exited_at: MessageField::some(exit.at), ..Default::default() })
    }

    pub fn task_stats(&self, req: &StatsRequest) -> Reply<StatsResponse> {
        let metrics = self.container(&req.id)?.workload.metrics()?;
        let value = metrics.write_to_bytes().map_err(|e| TaskError::Internal(e.into()))?;
        let stats = Any { type_url: METRICS_TYPE.into(), value, ..Default::default() };
        Ok(StatsResponse { stats: MessageField::some(stats), ..Default::default() })
    }

    pub fn task_pids(&self, req: &PidsRequest) -> Reply<PidsResponse> {
        let pid = self.container(&req.id)?.workload.pid();
        Ok(PidsResponse { processes: vec![ProcessInfo { pid, ..Default::default() }], ..Default::default() })
    }

    pub fn shutdown_if_idle(&self) {
        if self.containers.lock().unwrap().is_empty() && self.creating.lock().unwrap().is_empty() {
            log::info!("no tasks left, shutting down");
            (self.on_idle)();
        }
    }

    /// Wasm tasks have one process, the task itself: there is nothing to exec into.
    fn no_exec(exec_id: &str) -> Reply<()> {
        match exec_id.is_empty() {
            true => Ok(()),
            false => Err(unsupported("exec processes")),
        }
    }
}

fn unsupported(what: &str) -> TaskError {
    TaskError::Unimplemented(format!("{what} are not supported by the Fabricks shim"))
}

fn reply<T>(request: &str, result: Reply<T>) -> TtrpcResult<T> {
    result.map_err(|e| e.into_ttrpc(request))
}

impl<E: Events, R: Runtime> Task for Service<E, R> {
    fn create(&self, _ctx: &TtrpcContext, req: CreateTaskRequest) -> TtrpcResult<CreateTaskResponse> {
        reply("create", self.create_task(&req))
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        reply("start", self.start_task(&req))
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        reply("state", self.task_state(&req))
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        reply("kill", self.kill_task(&req).map(|()| Empty::new()))
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        reply("wait", self.wait_task(&req))
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        reply("delete", self.delete_task(&req))
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        reply("pids", self.task_pids(&req))
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        reply("stats", self.task_stats(&req))
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let task_pid = self.container(&req.id).map(|c| c.workload.pid()).unwrap_or_default();
        Ok(ConnectResponse { shim_pid: std::process::id(), task_pid, ..Default::default() })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        self.shutdown_if_idle();
        Ok(Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, _req: ExecProcessRequest) -> TtrpcResult<Empty> {
        reply("exec", Err(unsupported("exec processes")))
    }

    fn pause(&self, _ctx: &TtrpcContext, _req: PauseRequest) -> TtrpcResult<Empty> {
        reply("pause", Err(unsupported("pause and resume")))
    }

    fn resume(&self, _ctx: &TtrpcContext, _req: ResumeRequest) -> TtrpcResult<Empty> {
        reply("resume", Err(unsupported("pause and resume")))
    }

    fn checkpoint(&self, _ctx: &TtrpcContext, _req: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        reply("checkpoint", Err(unsupported("checkpoints")))
    }

    fn update(&self, _ctx: &TtrpcContext, _req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        reply("update", Err(unsupported("resource updates of a running task")))
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, _req: ResizePtyRequest) -> TtrpcResult<Empty> {
        reply("resize_pty", Err(unsupported("terminals")))
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        // containerd closes its end of the stdin FIFO itself; the task then reads EOF.
        reply("close_io", self.container(&req.id).map(|_| Empty::new()))
    }
}

#[cfg(test)]
mod tests;
