//! The runtime of a real node: a container's rootfs mounted from containerd's snapshot, its
//! entrypoint classified, then a wasm program in a runner process of its own or a native
//! process under runc (a pod's pause container).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use containerd_shim::api::CreateTaskRequest;
use containerd_shim::protos::cgroups::metrics::Metrics;
use fabricks_engine::{Engine, Stdio};

use crate::cgroup::Cgroup;
use crate::entrypoint::{self, Program};
use crate::error::invalid;
use crate::native::{NativeTask, Runc};
use crate::runner::{self, Launch, RunnerTask};
use crate::service::{ExitSink, Kill, Runtime, Workload};
use crate::spec::ContainerSpec;
use crate::termination::TerminationLog;
use crate::{image, listen, mounts, stats, stdio, sweep};

pub struct Node {
    namespace: String,
    containerd: String,
    engine: OnceLock<Engine>,
    runc: Arc<Runc>,
}

pub struct NodeWorkload {
    kind: Kind,
    rootfs: PathBuf,
    stdin: String,
}

enum Kind {
    Wasm(RunnerTask),
    Native(NativeTask),
}

impl Node {
    pub fn new(namespace: &str, containerd: &str) -> Self {
        Self {
            namespace: namespace.into(),
            containerd: containerd.into(),
            engine: OnceLock::new(),
            runc: Arc::new(Runc::new(namespace)),
        }
    }

    /// The engine, made when the first wasm container needs it; that first use also sweeps
    /// the node's module cache (in the background).
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

    fn prepare(&self, req: &CreateTaskRequest, spec: &ContainerSpec, exited: ExitSink) -> Result<Kind> {
        let Some(args0) = spec.program() else {
            return Err(invalid(
                "the container has no entrypoint: the image sets no ENTRYPOINT/CMD and none was given; \
                 build the image with `fabricks build` or pass the module path as the command",
            ));
        };
        let fetch_image = |with_wasm| image::fetch(&self.containerd, &self.namespace, &req.id, with_wasm);
        let (path, export) = entrypoint::split_export(args0);
        let (wasm, mut image) = match entrypoint::classify(&spec.rootfs, path, &spec.cwd, &spec.env)? {
            Program::Native => return self.prepare_native(req, exited),
            Program::Wasm(bytes) => (bytes, None),
            Program::Missing => {
                let mut image = fetch_image(true)?;
                let Some(wasm) = image.as_mut().and_then(|i| i.wasm.take()) else {
                    return Err(invalid(format!(
                        "the entrypoint {args0} does not exist in the image and the image has no wasm layer"
                    )));
                };
                (wasm, image)
            }
        };
        let listen = listen::resolve(spec, || match image.take() {
            Some(image) => Ok(Some(image.config)),
            None => Ok(fetch_image(false)?.map(|i| i.config)),
        })
        .context("reading the listen spec")?;
        mounts::container_filesystem(spec)?;
        let engine = self.engine()?;
        let task = runner::Task {
            id: req.id.clone(),
            bundle: PathBuf::from(&req.bundle),
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            export: export.map(str::to_string),
            listen: listen.to_string(),
            log_level: log::max_level().to_string(),
            wasm_len: wasm.len(),
        };
        let place = || Cgroup::create(spec, &self.namespace, &req.id);
        let task = RunnerTask::spawn(Launch { task, wasm: &wasm }, place, exited)?;
        sweep::record_origin(
            engine,
            &self.containerd,
            &self.namespace,
            &req.id,
            spec,
            task.cache_entry().to_path_buf(),
        );
        Ok(Kind::Wasm(task))
    }

    fn prepare_native(&self, req: &CreateTaskRequest, exited: ExitSink) -> Result<Kind> {
        let file = |stdio: Stdio| match stdio {
            Stdio::File(f) => Some(f),
            _ => None,
        };
        let io = [
            file(stdio::open_input(&req.stdin)?),
            file(stdio::open_output(&req.stdout)?),
            file(stdio::open_output(&req.stderr)?),
        ];
        let task = NativeTask::create(self.runc.clone(), &req.id, Path::new(&req.bundle), io, exited)?;
        Ok(Kind::Native(task))
    }
}

impl Runtime for Node {
    type Workload = NodeWorkload;

    fn create(&self, req: &CreateTaskRequest, spec: &ContainerSpec, exited: ExitSink) -> Result<NodeWorkload> {
        mounts::mount_rootfs(&req.rootfs, &spec.rootfs)?;
        match self.prepare(req, spec, exited) {
            Ok(kind) => Ok(NodeWorkload { kind, rootfs: spec.rootfs.clone(), stdin: req.stdin.clone() }),
            Err(e) => {
                let _ = mounts::unmount_all(&spec.rootfs);
                if let Some(log) = TerminationLog::of(spec) {
                    log.record(&format!("fabricks: {e:#}"));
                }
                Err(e)
            }
        }
    }
}

impl Workload for NodeWorkload {
    fn pid(&self) -> u32 {
        match &self.kind {
            Kind::Wasm(task) => task.pid(),
            Kind::Native(task) => task.pid(),
        }
    }

    fn start(&self) -> Result<()> {
        match &self.kind {
            Kind::Wasm(task) => task.start(),
            Kind::Native(task) => task.start(),
        }
    }

    fn kill(&self, signal: u32, all: bool) -> Result<Kill> {
        match &self.kind {
            Kind::Wasm(task) => Ok(if task.signal(signal) { Kill::Ending } else { Kill::Delivered }),
            Kind::Native(task) => task.kill(signal, all).map(|()| Kill::Delivered),
        }
    }

    fn delete(&self) -> Result<()> {
        match &self.kind {
            Kind::Wasm(task) => task.delete(),
            Kind::Native(task) => task.delete()?,
        }
        stdio::release_input(&self.stdin);
        // Also detaches the bind mounts of a rootfs containerd did not mount for us.
        mounts::unmount_all(&self.rootfs)
    }

    fn metrics(&self) -> Result<Metrics> {
        match &self.kind {
            Kind::Wasm(task) => stats::wasm(task.memory(), task.cgroup()),
            // The pause container's usage is negligible and runc owns its cgroup.
            Kind::Native(_) => Ok(Metrics::default()),
        }
    }
}
