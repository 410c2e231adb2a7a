//! The containerd task API (shim v2) for the tasks of one shim: all containers of a pod
//! when CRI groups them, one container for a plain `ctr run`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use containerd_shim::api::*;
use containerd_shim::event::Event;
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskOOM, TaskStart};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::types::task::Status;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{ExitSignal, Task, TtrpcContext, TtrpcResult};
use fabricks_engine::Engine;
use oci_spec::runtime::Spec;

use crate::cgroup::Cgroup;
use crate::container::{Container, Workload};
use crate::entrypoint::{self, Program};
use crate::native::Runc;
use crate::state::Exit;
use crate::wasm::{Io, WasmTask};
use crate::{image, listen, mounts, stats, sweep};

/// How long a forced stop waits for the module thread to notice before the exit is
/// reported anyway (a thread blocked in a host call notices when the call returns).
const STOP_GRACE: Duration = Duration::from_millis(500);

pub struct Service {
    namespace: String,
    containerd: String,
    publisher: Arc<RemotePublisher>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    engine: OnceLock<Engine>,
    runc: Runc,
    exit: Arc<ExitSignal>,
}

impl Service {
    pub fn new(namespace: &str, containerd: &str, publisher: RemotePublisher, exit: Arc<ExitSignal>) -> Self {
        Self {
            namespace: namespace.into(),
            containerd: containerd.into(),
            publisher: Arc::new(publisher),
            containers: Mutex::default(),
            engine: OnceLock::new(),
            runc: Runc::new(namespace),
            exit,
        }
    }

    fn engine(&self) -> Result<&Engine> {
        if let Some(engine) = self.engine.get() {
            return Ok(engine);
        }
        let engine = crate::compiler::engine()?;
        let mut first = false;
        let engine = self.engine.get_or_init(|| {
            first = true;
            engine
        });
        if first {
            sweep::sweep(engine, &self.containerd);
        }
        Ok(engine)
    }

    fn container(&self, id: &str) -> TtrpcResult<Arc<Container>> {
        self.containers.lock().unwrap().get(id).cloned().ok_or_else(|| not_found(id))
    }

    fn create_container(&self, req: &CreateTaskRequest) -> Result<Container> {
        if req.terminal {
            bail!("a terminal (-t) is not supported: wasm modules get plain stdio");
        }
        let bundle = PathBuf::from(&req.bundle);
        let spec = Spec::load(bundle.join("config.json")).context("reading the bundle's config.json")?;
        let rootfs = rootfs_path(&bundle, &spec);
        mounts::mount_rootfs(&req.rootfs, &rootfs)?;
        let workload = self.prepare(req, &bundle, &spec, &rootfs);
        match workload {
            Ok(workload) => Ok(Container::new(&req.id, bundle, rootfs, workload, req)),
            Err(e) => {
                let _ = mounts::unmount_all(&rootfs);
                Err(e)
            }
        }
    }

    fn prepare(&self, req: &CreateTaskRequest, bundle: &Path, spec: &Spec, rootfs: &Path) -> Result<Workload> {
        let process = spec.process().as_ref().context("the OCI spec has no process")?;
        let Some(args0) = process.args().as_ref().and_then(|a| a.first()) else {
            bail!("the container has no entrypoint: the image sets no ENTRYPOINT/CMD and none was given; build the image with `fabricks build` or pass the module path as the command");
        };
        let env = process.env().clone().unwrap_or_default();
        let cwd = process.cwd().to_string_lossy();
        let fetch_image = |with_wasm| image::fetch(&self.containerd, &self.namespace, &req.id, with_wasm);
        let (wasm, mut image) = match entrypoint::classify(rootfs, args0, &cwd, &env)? {
            Program::Native => return self.prepare_native(req, bundle),
            Program::Wasm(bytes) => (bytes, None),
            Program::Missing => {
                let mut image = fetch_image(true)?;
                let wasm = image.as_mut().and_then(|i| i.wasm.take()).with_context(|| {
                    format!("the entrypoint {args0} does not exist in the image and the image has no wasm layer")
                })?;
                (wasm, image)
            }
        };
        let listen = listen::resolve(spec, || match image.take() {
            Some(image) => Ok(Some(image.config)),
            None => Ok(fetch_image(false)?.map(|i| i.config)),
        })
        .context("reading the listen spec")?;
        let sockets = listen::bind(spec, &listen)?;
        mounts::bind_mounts(rootfs, spec.mounts().as_deref().unwrap_or_default())?;
        let io = Io { stdin: &req.stdin, stdout: &req.stdout, stderr: &req.stderr };
        let place = || Cgroup::create(spec, &self.namespace, &req.id);
        let engine = self.engine()?;
        let task = WasmTask::prepare(engine, &wasm, spec, rootfs, io, sockets, place)?;
        sweep::record_origin(
            engine,
            &self.containerd,
            &self.namespace,
            &req.id,
            spec,
            task.cache_entry().to_path_buf(),
        );
        Ok(Workload::Wasm(task))
    }

    fn prepare_native(&self, req: &CreateTaskRequest, bundle: &Path) -> Result<Workload> {
        let open = |uri: &str| -> Result<Option<std::fs::File>> {
            Ok(match crate::stdio::open_output(uri)? {
                fabricks_engine::Stdio::File(f) => Some(f),
                _ => None,
            })
        };
        let stdin = match crate::stdio::open_input(&req.stdin)? {
            fabricks_engine::Stdio::File(f) => Some(f),
            _ => None,
        };
        let (pid, exits) = self.runc.create(&req.id, bundle, [stdin, open(&req.stdout)?, open(&req.stderr)?])?;
        Ok(Workload::Native { pid, exits: Mutex::new(Some(exits)) })
    }

    fn start_container(&self, container: &Arc<Container>) -> Result<()> {
        if !container.lifecycle.set_running() {
            bail!("task {} was already started", container.id);
        }
        let reporter = self.exit_reporter(container);
        match &container.workload {
            Workload::Wasm(task) => {
                let (publisher, ns, id) = (self.publisher.clone(), self.namespace.clone(), container.id.clone());
                task.start(&container.id, move |code, out_of_memory| {
                    // Before the exit, as the kernel's OOM notification precedes a killed
                    // process's exit: containerd then records the reason (OOMKilled).
                    if out_of_memory {
                        publish(&publisher, &ns, TaskOOM { container_id: id, ..Default::default() });
                    }
                    reporter(code as u32)
                })
            }
            Workload::Native { pid, exits } => {
                let exits = exits.lock().unwrap().take().context("task already started")?;
                let pid = *pid as i32;
                std::thread::spawn(move || reporter(containerd_shim::monitor::wait_pid(pid, exits) as u32));
                self.runc.start(&container.id, &container.bundle)
            }
        }
    }

    /// The one place a task's exit is recorded and announced.
    fn exit_reporter(&self, container: &Arc<Container>) -> impl Fn(u32) + Send + Sync + 'static {
        let (container, publisher, ns) = (container.clone(), self.publisher.clone(), self.namespace.clone());
        move |code| {
            let Some(exit) = container.lifecycle.set_exited(code) else { return };
            log::info!("task {} exited with status {}", container.id, exit.code);
            let event = TaskExit {
                container_id: container.id.clone(),
                id: container.id.clone(),
                pid: container.pid(),
                exit_status: exit.code,
                exited_at: MessageField::some(exit.at),
                ..Default::default()
            };
            publish(&publisher, &ns, event);
        }
    }

    fn kill_container(&self, container: &Arc<Container>, signal: u32, all: bool) -> Result<()> {
        let (status, _) = container.lifecycle.status();
        if status == Status::STOPPED {
            return Ok(());
        }
        match &container.workload {
            Workload::Native { .. } => self.runc.kill(&container.id, &container.bundle, signal, all),
            Workload::Wasm(task) => {
                let ending = task.signal(signal);
                if ending && status == Status::CREATED {
                    // Never started: nothing to wake, the task just ends.
                    self.exit_reporter(container)(128 + signal);
                } else if ending {
                    self.report_if_stuck(container, 128 + signal);
                }
                Ok(())
            }
        }
    }

    /// A module blocked in a host call (a long sleep, a read) notices a stop only when the
    /// call returns; the task is reported ended after a grace period anyway, as a killed
    /// process would be, and the thread finishes on its own.
    fn report_if_stuck(&self, container: &Arc<Container>, code: u32) {
        let container = container.clone();
        let reporter = self.exit_reporter(&container);
        std::thread::spawn(move || {
            if !container.lifecycle.wait_exit_for(STOP_GRACE) {
                log::warn!("task {} is blocked in a host call; reporting it stopped", container.id);
                reporter(code);
            }
        });
    }

    fn delete_container(&self, container: &Arc<Container>) -> Result<Exit> {
        let (status, exit) = container.lifecycle.status();
        if status == Status::RUNNING {
            bail!("task {} is still running: stop it before deleting it", container.id);
        }
        let exit = exit.unwrap_or_else(|| Exit { code: 0, at: crate::state::now() });
        match &container.workload {
            Workload::Native { .. } => self.runc.delete(&container.id, &container.bundle)?,
            Workload::Wasm(task) => task.delete(),
        }
        crate::stdio::release_input(&container.stdio[0]);
        // Also detaches the bind mounts of a rootfs containerd did not mount for us.
        mounts::unmount_all(&container.rootfs)?;
        self.containers.lock().unwrap().remove(&container.id);
        let event = TaskDelete {
            container_id: container.id.clone(),
            id: container.id.clone(),
            pid: container.pid(),
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at.clone()),
            ..Default::default()
        };
        publish(&self.publisher, &self.namespace, event);
        Ok(exit)
    }
}

fn rootfs_path(bundle: &Path, spec: &Spec) -> PathBuf {
    match spec.root().as_ref().map(|r| r.path()) {
        Some(p) if p.is_absolute() => p.clone(),
        Some(p) => bundle.join(p),
        None => bundle.join("rootfs"),
    }
}

fn publish(publisher: &RemotePublisher, namespace: &str, event: impl Event + 'static) {
    let topic = event.topic();
    if let Err(e) = publisher.publish(Default::default(), &topic, namespace, Box::new(event)) {
        log::error!("publishing {topic}: {e}");
    }
}

fn not_found(id: &str) -> containerd_shim::protos::ttrpc::Error {
    ttrpc_error(containerd_shim::protos::ttrpc::Code::NOT_FOUND, format!("task {id} not found"))
}

fn ttrpc_error(code: containerd_shim::protos::ttrpc::Code, msg: String) -> containerd_shim::protos::ttrpc::Error {
    containerd_shim::protos::ttrpc::Error::RpcStatus(containerd_shim::protos::ttrpc::get_status(code, msg))
}

/// Turns an error into the status containerd shows the user (`ctr: failed to create
/// shim task: <this>`), logging it to the shim log as well.
fn failed(what: &str, e: anyhow::Error) -> containerd_shim::protos::ttrpc::Error {
    log::error!("{what}: {e:#}");
    ttrpc_error(containerd_shim::protos::ttrpc::Code::FAILED_PRECONDITION, format!("{e:#}"))
}

impl Task for Service {
    fn create(&self, _ctx: &TtrpcContext, req: CreateTaskRequest) -> TtrpcResult<CreateTaskResponse> {
        log::info!("create {}", req.id);
        let container = Arc::new(self.create_container(&req).map_err(|e| failed("create", e))?);
        let pid = container.pid();
        self.containers.lock().unwrap().insert(req.id.clone(), container);
        publish(
            &self.publisher,
            &self.namespace,
            TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(containerd_shim::protos::events::task::TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                }),
                pid,
                ..Default::default()
            },
        );
        Ok(CreateTaskResponse { pid, ..Default::default() })
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let container = self.container(&req.id)?;
        self.start_container(&container).map_err(|e| failed("start", e))?;
        let pid = container.pid();
        publish(&self.publisher, &self.namespace, TaskStart { container_id: req.id, pid, ..Default::default() });
        Ok(StartResponse { pid, ..Default::default() })
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let container = self.container(&req.id)?;
        let (status, exit) = container.lifecycle.status();
        let mut resp = StateResponse {
            id: req.id,
            bundle: container.bundle.to_string_lossy().into_owned(),
            pid: container.pid(),
            status: status.into(),
            stdin: container.stdio[0].clone(),
            stdout: container.stdio[1].clone(),
            stderr: container.stdio[2].clone(),
            ..Default::default()
        };
        if let Some(exit) = exit {
            resp.exit_status = exit.code;
            resp.exited_at = MessageField::some(exit.at);
        }
        Ok(resp)
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        log::info!("kill {} signal {}", req.id, req.signal);
        let container = self.container(&req.id)?;
        self.kill_container(&container, req.signal, req.all).map_err(|e| failed("kill", e))?;
        Ok(Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let container = self.container(&req.id)?;
        let exit = container.lifecycle.wait_exit();
        Ok(WaitResponse { exit_status: exit.code, exited_at: MessageField::some(exit.at), ..Default::default() })
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        log::info!("delete {}", req.id);
        let container = self.container(&req.id)?;
        let exit = self.delete_container(&container).map_err(|e| failed("delete", e))?;
        Ok(DeleteResponse {
            pid: container.pid(),
            exit_status: exit.code,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let container = self.container(&req.id)?;
        let process = containerd_shim::protos::types::task::ProcessInfo { pid: container.pid(), ..Default::default() };
        Ok(PidsResponse { processes: vec![process], ..Default::default() })
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let container = self.container(&req.id)?;
        let stats = stats::of(&container).map_err(|e| failed("stats", e))?;
        Ok(StatsResponse { stats: MessageField::some(stats), ..Default::default() })
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let task_pid = self.container(&req.id).map(|c| c.pid()).unwrap_or_default();
        Ok(ConnectResponse { shim_pid: std::process::id(), task_pid, ..Default::default() })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        if self.containers.lock().unwrap().is_empty() {
            log::info!("no tasks left, shutting down");
            self.exit.signal();
        }
        Ok(Empty::new())
    }
}
