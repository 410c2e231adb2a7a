//! Ending a running module from another thread, the way a signal ends a process.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

type Hook = Box<dyn Fn(i32) + Send + Sync>;

/// A handle that asks a running module to stop, as if `signal` had been delivered to it.
///
/// The module is interrupted at its next epoch check (wasm code, including loops) and the
/// run ends with status `128 + signal`. Hooks registered with [`Stopper::on_stop`] run
/// first, so whoever owns blocking host resources (listening sockets) can wake the guest.
#[derive(Clone, Default)]
pub struct Stopper {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    signal: AtomicI32,
    engines: Mutex<Vec<wasmtime::Engine>>,
    hooks: Mutex<Vec<Hook>>,
}

impl Stopper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests the stop. The first signal wins; later ones only re-wake the module.
    pub fn stop(&self, signal: i32) {
        let _ = self.inner.signal.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        for hook in self.inner.hooks.lock().unwrap().iter() {
            hook(signal);
        }
        for engine in self.inner.engines.lock().unwrap().iter() {
            engine.increment_epoch();
        }
    }

    /// The signal of the stop request, if one was made.
    pub fn requested(&self) -> Option<i32> {
        match self.inner.signal.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(sig),
        }
    }

    pub fn on_stop(&self, hook: impl Fn(i32) + Send + Sync + 'static) {
        self.inner.hooks.lock().unwrap().push(Box::new(hook));
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
