//! The instances of one reactor: pre-initialised, handed out one request at a time,
//! replaced when a call breaks one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use fabricks_engine::{CallError, Exchange, Reactor, ReactorInstance};
use fabricks_reactor_abi::encode_head;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use crate::backend::{Answer, Backend, Failure};
use crate::exchange::HyperExchange;
use crate::Settings;

pub struct Pool {
    reactor: Reactor,
    idle: Mutex<Vec<ReactorInstance>>,
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
        Ok(Self { reactor, idle: Mutex::new(idle) })
    }

    /// Runs one request on an idle instance (blocking: call from a blocking thread). A
    /// broken instance is reported, dropped and replaced before the turn is given back.
    pub fn call(
        &self,
        _turn: OwnedSemaphorePermit,
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

impl Backend for Pool {
    /// The call runs on a blocking thread; the head comes back through a oneshot channel
    /// and the body through a bounded one (`exchange.rs`).
    fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
        remote: SocketAddr,
        deadline: Instant,
        turn: OwnedSemaphorePermit,
    ) -> Answer {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let head = encode_head(&parts, remote);
            let what = format!("{} {}", parts.method, parts.uri);
            let (exchange, head_rx) = HyperExchange::new(body, deadline);
            let call = tokio::task::spawn_blocking(move || self.call(turn, &head, Box::new(exchange), deadline, &what));
            if let Ok(response) = head_rx.await {
                return Ok(response.map(|b| b.boxed()));
            }
            // No head: the call ended without one.
            match call.await {
                Ok(Err(err)) => Err(err),
                Ok(Ok(())) => Err(Failure::NoResponse),
                Err(join) => Err(Failure::NoInstance(format!("the request's worker failed: {join}"))),
            }
        })
    }

    fn tick(&self) {
        self.reactor.tick();
    }

    fn program(&self) -> &str {
        self.reactor.program()
    }
}
