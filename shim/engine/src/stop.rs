//! Ending a running module from another thread, the way a signal ends a process.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

type Hook = Box<dyn Fn(i32) + Send + Sync>;

/// A handle that asks a running module to stop, as if `signal` had been delivered to it.
///
/// A hard stop interrupts the module at its next epoch check (wasm code, including loops)
/// and the run ends with status `128 + signal`. Hooks registered with [`Stopper::on_stop`]
/// run first, so whoever owns blocking host resources (listening sockets) can wake the guest.
///
/// A module that serves sockets gets a graceful stop for SIGTERM and SIGINT instead: only
/// the hooks run (its listeners shut down, so its accept loop returns), and the module ends
/// by itself with its own status. Whoever sent the signal escalates to SIGKILL if it must,
/// as kubelet and `ctr task kill -s KILL` do.
#[derive(Clone, Default)]
pub struct Stopper {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The hard stop's signal, 0 if none.
    signal: AtomicI32,
    /// The first stop's signal, hard or graceful: replayed to hooks registered after it.
    asked: AtomicI32,
    graceful: std::sync::atomic::AtomicBool,
    engines: Mutex<Vec<wasmtime::Engine>>,
    hooks: Mutex<Vec<Hook>>,
    /// Duplicates of the task's listeners, shut down on a stop; closed when the task ends.
    listeners: Mutex<Vec<std::net::TcpListener>>,
}

impl Stopper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests the stop; true if it is a hard one. The first hard signal wins; later ones
    /// only re-wake the module.
    pub fn stop(&self, signal: i32) -> bool {
        let graceful = self.inner.graceful.load(Ordering::SeqCst) && matches!(signal, libc::SIGTERM | libc::SIGINT);
        if !graceful {
            // Recorded before the hooks wake the module, so a module that then exits by
            // itself still ends with the signal's status.
            let _ = self.inner.signal.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        }
        let _ = self.inner.asked.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        for listener in self.inner.listeners.lock().unwrap().iter() {
            // SAFETY: shutdown on a socket fd we own; it only ends traffic on the socket.
            unsafe { libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(listener), libc::SHUT_RDWR) };
        }
        for hook in self.inner.hooks.lock().unwrap().iter() {
            hook(signal);
        }
        if graceful {
            log::info!("signal {signal}: shutting the module's listeners down, letting it exit");
            return false;
        }
        for engine in self.inner.engines.lock().unwrap().iter() {
            engine.increment_epoch();
        }
        true
    }

    /// Shuts `listener` down when a stop is requested, which wakes a guest waiting to
    /// accept on it, and makes SIGTERM and SIGINT graceful (see the type's docs). Call it
    /// before the task starts (the shim does, at create), so a SIGTERM right after the start
    /// is graceful too; watching the same listener again changes nothing.
    pub fn watch_listener(&self, listener: &std::net::TcpListener) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        let mut listeners = self.inner.listeners.lock().unwrap();
        if !listeners.iter().any(|l| l.local_addr().is_ok_and(|a| a == addr)) {
            listeners.push(listener.try_clone()?);
        }
        self.inner.graceful.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Closes the duplicates [`Stopper::watch_listener`] keeps: called when the task's run
    /// ends, so its ports are free (and refuse connections) at once, as a process's are when
    /// it exits, not only when the task is deleted.
    pub fn close_listeners(&self) {
        self.inner.listeners.lock().unwrap().clear();
    }

    /// The signal of the stop request, if one was made.
    pub fn requested(&self) -> Option<i32> {
        match self.inner.signal.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(sig),
        }
    }

    /// Runs `hook` on every stop request; at once if one was made before (a stop between
    /// the task's start and its server's first line is not lost). It may run twice for one
    /// request.
    pub fn on_stop(&self, hook: impl Fn(i32) + Send + Sync + 'static) {
        let mut hooks = self.inner.hooks.lock().unwrap();
        match self.inner.asked.load(Ordering::SeqCst) {
            0 => {}
            sig => hook(sig),
        }
        hooks.push(Box::new(hook));
    }

    pub(crate) fn attach(&self, engine: &wasmtime::Engine) {
        self.inner.engines.lock().unwrap().push(engine.clone());
    }
}

/// The error a stopped module's run ends with.
#[derive(Debug)]
pub(crate) struct Stopped(pub i32);

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by signal {}", self.0)
    }
}

impl std::error::Error for Stopped {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_hook_registered_after_a_graceful_stop_still_hears_of_it() {
        let stopper = Stopper::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        stopper.watch_listener(&listener).unwrap();
        assert!(!stopper.stop(libc::SIGTERM), "SIGTERM with a listener is graceful");
        assert_eq!(stopper.requested(), None);
        let heard = Arc::new(AtomicUsize::new(0));
        let counter = heard.clone();
        stopper.on_stop(move |sig| {
            assert_eq!(sig, libc::SIGTERM);
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(heard.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn watching_a_listener_twice_keeps_one_duplicate() {
        let stopper = Stopper::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        stopper.watch_listener(&listener).unwrap();
        stopper.watch_listener(&listener).unwrap();
        assert_eq!(stopper.inner.listeners.lock().unwrap().len(), 1);
    }
}
