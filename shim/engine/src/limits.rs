//! The container's memory limit applied to the module's linear memory.
//!
//! A thread of the shim cannot be charged to a memory cgroup of its own (cgroup v1 charges
//! pages to the process), so the limit is enforced where the module's memory comes from:
//! every `memory.grow` (and the initial memory at instantiation) is checked against it.
//! Growing past it ends the module as the kernel's OOM killer would end a process: status
//! [`OOM_EXIT_CODE`], a message on its stderr, and [`MemoryLimit::exceeded`] set so the
//! shim can announce a TaskOOM event (what makes Kubernetes show `OOMKilled`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use wasmtime::ResourceLimiter;

/// 128 + SIGKILL: what an OOM-killed native container reports.
pub const OOM_EXIT_CODE: i32 = 137;

/// A cap on the bytes of linear memory a module may hold. Cheap to clone; clones share
/// whether the cap was hit.
#[derive(Clone, Debug, Default)]
pub struct MemoryLimit {
    bytes: Option<u64>,
    exceeded: Arc<AtomicBool>,
    /// Linear memory the module holds now (what Stats reports as its memory usage).
    used: Arc<AtomicU64>,
}

/// The error a denied `memory.grow` traps with (a trap rather than a -1 result: Go's
/// runtime would print a confusing "fatal error: out of memory" and exit 2).
#[derive(Debug)]
pub struct MemoryLimitExceeded {
    pub limit: u64,
    pub desired: u64,
}

impl std::fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "out of memory: the module asked for {} of linear memory, past the container's memory limit of {}; \
             raise the limit (resources.limits.memory, ctr --memory-limit) or lower the module's use",
            mib(self.desired),
            mib(self.limit)
        )
    }
}

impl std::error::Error for MemoryLimitExceeded {}

impl MemoryLimit {
    /// No cap beyond wasm32's own 4 GiB.
    pub fn unlimited() -> Self {
        Self::default()
    }

    pub fn bytes(bytes: u64) -> Self {
        Self { bytes: Some(bytes), ..Self::default() }
    }

    pub fn limit(&self) -> Option<u64> {
        self.bytes
    }

    /// Bytes of linear memory the module holds.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// True once the module tried to grow past the cap.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::SeqCst)
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> anyhow::Result<bool> {
        match self.bytes {
            Some(limit) if desired as u64 > limit => {
                self.exceeded.store(true, Ordering::SeqCst);
                Err(MemoryLimitExceeded { limit, desired: desired as u64 }.into())
            }
            _ => {
                self.used.store(desired as u64, Ordering::Relaxed);
                Ok(true)
            }
        }
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> anyhow::Result<bool> {
        Ok(true)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
