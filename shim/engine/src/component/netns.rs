//! Keeping every thread that does a component's networking in one network namespace.
//!
//! A socket belongs to the namespace of the thread that creates it. wasmtime-wasi creates
//! sockets on the thread that runs the guest, but resolves names and makes outgoing HTTP
//! connections on tokio tasks and blocking threads. So components run on runtimes made
//! for them, whose every thread is checked into the namespace of the thread that built
//! the runtime (the shim's task thread, which has entered the pod's namespace), instead of
//! wasmtime-wasi's process-wide fallback runtime, whose threads sit wherever the first
//! caller was.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// A handle on a network namespace.
#[derive(Debug, Clone)]
pub struct NetNamespace {
    file: Arc<File>,
    inode: u64,
}

impl NetNamespace {
    /// The namespace of the calling thread.
    pub fn current() -> Result<Self> {
        Self::open(Path::new(THREAD_NETNS))
    }

    /// The namespace at `path` (`/var/run/netns/x`, `/proc/PID/ns/net`).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening the network namespace {}", path.display()))?;
        let inode = file.metadata()?.ino();
        Ok(Self { file: Arc::new(file), inode })
    }

    /// Whether the calling thread is in this namespace.
    pub fn is_current(&self) -> bool {
        std::fs::metadata(THREAD_NETNS).is_ok_and(|m| m.ino() == self.inode)
    }

    /// Moves the calling thread into this namespace (a no-op if it is there already, so a
    /// process without CAP_SYS_ADMIN, such as `fabricks run`, never needs the call).
    pub fn enter(&self) -> Result<()> {
        if self.is_current() {
            return Ok(());
        }
        // SAFETY: setns on a namespace fd we own; it changes only this thread.
        if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error()).context("entering the network namespace (setns)");
        }
        Ok(())
    }
}

/// A tokio runtime builder whose threads all start in the calling thread's namespace.
pub fn runtime_builder(multi_thread: bool) -> Result<tokio::runtime::Builder> {
    let netns = NetNamespace::current()?;
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().on_thread_start(move || {
        // Threads inherit their creator's namespace, so this acts only if something
        // spawned one from elsewhere.
        if let Err(e) = netns.enter() {
            log::error!("a component runtime thread is outside the pod's network namespace: {e:#}");
        }
    });
    Ok(builder)
}

/// A multi-thread runtime for serving components, every thread in the calling thread's
/// network namespace.
pub fn server_runtime(workers: usize, name: &str) -> Result<tokio::runtime::Runtime> {
    runtime_builder(true)?
        .worker_threads(workers.max(1))
        .thread_name(name)
        .build()
        .context("starting the component server's threads")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calling_thread_is_in_its_own_namespace() {
        let ns = NetNamespace::current().unwrap();
        assert!(ns.is_current());
        ns.enter().unwrap();
    }
}
