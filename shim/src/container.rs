//! One container of this shim and what runs it.

use std::path::PathBuf;
use std::sync::Mutex;

use containerd_shim::api::CreateTaskRequest;
use containerd_shim::monitor::Subscription;

use crate::state::Lifecycle;
use crate::wasm::WasmTask;

pub enum Workload {
    /// Runs as a thread of this shim.
    Wasm(WasmTask),
    /// Runs under runc; `exits` is taken by whoever waits for `pid`.
    Native { pid: u32, exits: Mutex<Option<Subscription>> },
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub stdio: [String; 3],
    pub workload: Workload,
    pub lifecycle: Lifecycle,
}

impl Container {
    pub fn new(id: &str, bundle: PathBuf, rootfs: PathBuf, workload: Workload, req: &CreateTaskRequest) -> Self {
        Self {
            id: id.into(),
            bundle,
            rootfs,
            stdio: [req.stdin.clone(), req.stdout.clone(), req.stderr.clone()],
            workload,
            lifecycle: Lifecycle::default(),
        }
    }

    /// The pid containerd records for the task: a wasm task lives in the shim process.
    pub fn pid(&self) -> u32 {
        match &self.workload {
            Workload::Wasm(_) => std::process::id(),
            Workload::Native { pid, .. } => *pid,
        }
    }
}
