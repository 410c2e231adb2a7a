//! The instances of one reactor: pre-initialised, handed out one request at a time,
//! replaced when a call breaks one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use fabricks_engine::{CallError, Exchange, Reactor, ReactorInstance};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Settings;

pub struct Pool {
    reactor: Reactor,
    idle: Mutex<Vec<ReactorInstance>>,
    /// One permit per instance: holding one means an instance is yours.
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// Why a request got no answer from the module.
#[derive(Debug)]
pub enum Failure {
    Call(CallError),
    /// No instance could be made (the module's `_initialize` fails now, say).
    NoInstance(String),
}

impl Pool {
    /// Instantiates every instance now, so a module that cannot start fails here (at
    /// create time in the shim) rather than on the first request.
    pub fn new(reactor: Reactor, settings: &Settings) -> Result<Self> {
        let idle = (0..settings.instances)
            .map(|i| {
                reactor.instantiate().with_context(|| format!("preparing instance {} of {}", i + 1, settings.instances))
            })
            .collect::<Result<Vec<_>>>()?;
        log::info!("{}: {} instances ready", reactor.program(), idle.len());
        Ok(Self {
            reactor,
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(settings.instances)),
            waiting: AtomicUsize::new(0),
            max_waiting: settings.queue,
        })
    }

    /// An instance's permit, waiting in line if all are busy; None if the line is full.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let permit = self.permits.clone().acquire_owned().await.ok();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        permit
    }

    /// Runs one request on an idle instance (blocking: call from a blocking thread). A
    /// broken instance is reported, dropped and replaced before the permit is given back.
    pub fn call(
        &self,
        _permit: OwnedSemaphorePermit,
        head: &[u8],
        exchange: Box<dyn Exchange>,
        deadline: Instant,
        what: &str,
    ) -> Result<(), Failure> {
        let popped = self.idle.lock().unwrap().pop();
        let mut instance = match popped {
            Some(instance) => instance,
            None => self.reactor.instantiate().map_err(|e| Failure::NoInstance(format!("{e:#}")))?,
        };
        match instance.handle(head, exchange, deadline) {
            Ok(()) => {
                self.idle.lock().unwrap().push(instance);
                Ok(())
            }
            Err(err) => {
                let report = format!("{what}: {} {err}; replacing the instance", self.reactor.program());
                log::error!("{report}");
                instance.report(&report);
                drop(instance);
                if !matches!(err, CallError::Stopped(_)) {
                    self.replace();
                }
                Err(Failure::Call(err))
            }
        }
    }

    fn replace(&self) {
        match self.reactor.instantiate() {
            Ok(fresh) => self.idle.lock().unwrap().push(fresh),
            // The next request tries again, and answers 500 if it cannot.
            Err(e) => log::error!("replacing an instance of {}: {e:#}", self.reactor.program()),
        }
    }

    pub fn reactor(&self) -> &Reactor {
        &self.reactor
    }
}
