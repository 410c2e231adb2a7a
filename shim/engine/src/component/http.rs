//! `wasi:http/incoming-handler` services: one pre-instantiated component, a fresh instance
//! per request.
//!
//! The HTTP side (hyper server, queue, settings) is `fabricks-http`'s; this is the wasm
//! side of one request: make a store, instantiate, hand the guest the request and a
//! response slot, and give the response back as soon as the guest sets it, while the
//! instance keeps running to stream the body. The instance (and every socket it opened)
//! is gone when its body is done, or at the deadline, a trap or a hard stop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use wasmtime::{Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi_http::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::bindings::ProxyPre;
use wasmtime_wasi_http::WasiHttpView;

use super::host::{Host, Limits, WasiTemplate};
use super::{Component, ComponentKind, Network};
use crate::run::trap_report;
use crate::stop::Stopped;
use crate::{CallError, Command, Engine, Stdio, Stopper};

/// A response as the component produced it; its body streams from the running instance
/// and ends with an error if the instance fails before finishing it.
pub type ComponentResponse = hyper::Response<BoxBody<Bytes, ErrorCode>>;

/// A compiled `wasi:http` component, ready to serve requests.
pub struct HttpService {
    engine: wasmtime::Engine,
    pre: ProxyPre<Host>,
    template: WasiTemplate,
    stopper: Stopper,
    instance_memory: Option<usize>,
    program: String,
    costs: InstanceCosts,
}

impl HttpService {
    /// Prepares `component` to serve: imports resolved once, the WASI view every instance
    /// gets (`cmd`'s args, env, dirs, stdout and stderr; no stdin), the addresses its
    /// instances may bind, and the linear memory each instance may grow to.
    pub fn new(
        engine: &Engine,
        component: &Component,
        mut cmd: Command,
        network: &Network,
        stopper: &Stopper,
        instance_memory: Option<usize>,
    ) -> Result<Self> {
        let program = cmd.args.first().cloned().unwrap_or_default();
        if component.kind() != ComponentKind::HttpService {
            anyhow::bail!(
                "{program} does not export wasi:http/incoming-handler: it is a command, run it instead of serving it"
            );
        }
        let pre = ProxyPre::new(engine.instance_pre(component, &program)?)
            .with_context(|| format!("{program} does not export a usable wasi:http/incoming-handler"))?;
        let template = WasiTemplate::new(&mut cmd, network, &program)?;
        let wasmtime = engine.component_engine()?.clone();
        stopper.attach(&wasmtime);
        Ok(Self {
            engine: wasmtime,
            pre,
            template,
            stopper: stopper.clone(),
            instance_memory,
            program,
            costs: InstanceCosts::default(),
        })
    }

    /// Serves `request` on a fresh instance, spawned on the current tokio runtime (the
    /// server's, whose threads are in the pod's network namespace). Returns the response
    /// once the component has set it; `Ok(None)` if it ended without setting one. `guard`
    /// is dropped when the instance is: hold the request's admission in it.
    pub async fn handle(
        self: &Arc<Self>,
        request: hyper::Request<hyper::body::Incoming>,
        deadline: Instant,
        guard: impl Send + 'static,
    ) -> Result<Option<ComponentResponse>, CallError> {
        let what = format!("{} {}", request.method(), request.uri());
        let (response_tx, response_rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let instance = tokio::spawn(async move {
            let _guard = guard;
            let ended = tokio::time::timeout_at(deadline.into(), this.call(request, response_tx, deadline))
                .await
                .unwrap_or(Err(CallError::Timeout));
            if let Err(err) = &ended {
                this.report(&what, err);
            }
            ended
        });
        match response_rx.await {
            Ok(Ok(response)) => Ok(Some(response)),
            Ok(Err(code)) => Err(CallError::Trap(format!("the component answered with the error {code:?}"))),
            // The slot was dropped unset: the instance has ended, say how.
            Err(_) => match instance.await {
                Ok(Ok(())) => Ok(None),
                Ok(Err(err)) => Err(err),
                Err(join) => Err(CallError::Trap(format!("the instance's task failed: {join}"))),
            },
        }
    }

    async fn call(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
        response: tokio::sync::oneshot::Sender<Result<ComponentResponse, ErrorCode>>,
        deadline: Instant,
    ) -> Result<(), CallError> {
        let fail = |e: anyhow::Error| CallError::Trap(format!("{e:#}"));
        let wasi = self.template.build(Stdio::Null).map_err(fail)?;
        let mut limits = StoreLimitsBuilder::new();
        if let Some(bytes) = self.instance_memory {
            limits = limits.memory_size(bytes);
        }
        let mut store = Store::new(&self.engine, Host::new(wasi, Limits::Instance(limits.build())));
        store.data_mut().deadline = Some(deadline);
        store.limiter(|host| host.limits());
        self.arm_epoch(&mut store);
        let request = store.data_mut().new_incoming_request(Scheme::Http, with_authority(request)).map_err(fail)?;
        let response = store.data_mut().new_response_outparam(response).map_err(fail)?;
        let started = Instant::now();
        let proxy = self.pre.instantiate_async(&mut store).await.map_err(call_error)?;
        let instantiated = Instant::now();
        let handled = proxy.wasi_http_incoming_handler().call_handle(&mut store, request, response).await;
        let returned = Instant::now();
        drop(store);
        self.costs.add(instantiated - started, returned - instantiated, returned.elapsed());
        handled.map_err(call_error)
    }

    fn arm_epoch(&self, store: &mut Store<Host>) {
        // Epoch ticks come from the server's timer and from stops; in between, a guest that
        // computes yields to the other requests on its thread at every tick.
        store.set_epoch_deadline(1);
        let stop = self.stopper.clone();
        store.epoch_deadline_callback(move |ctx| {
            if let Some(sig) = stop.requested() {
                return Err(Stopped(sig).into());
            }
            match ctx.data().deadline {
                Some(at) if Instant::now() >= at => Err(Timeout.into()),
                _ => Ok(UpdateDeadline::Yield(1)),
            }
        });
    }

    fn report(&self, what: &str, err: &CallError) {
        let line = format!("{what}: {} {err}", self.program);
        log::error!("{line}");
        self.template.report(&format!("fabricks: {line}"));
    }

    /// Advances the epoch: running instances check their deadline and the stop request.
    pub fn tick(&self) {
        self.engine.increment_epoch();
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    /// What the instances served so far cost on average.
    pub fn costs(&self) -> CostSummary {
        self.costs.summary()
    }
}

/// Where the time of a fresh instance per request goes, summed over the service's life:
/// the price of the per-request isolation, which an operator (and `bench/`) can read in the
/// log when the service stops.
#[derive(Default)]
struct InstanceCosts {
    instances: AtomicU64,
    instantiate_ns: AtomicU64,
    handle_ns: AtomicU64,
    teardown_ns: AtomicU64,
}

impl InstanceCosts {
    fn add(&self, instantiate: Duration, handle: Duration, teardown: Duration) {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.instantiate_ns.fetch_add(ns(instantiate), Ordering::Relaxed);
        self.handle_ns.fetch_add(ns(handle), Ordering::Relaxed);
        self.teardown_ns.fetch_add(ns(teardown), Ordering::Relaxed);
        self.instances.fetch_add(1, Ordering::Relaxed);
    }

    fn summary(&self) -> CostSummary {
        let instances = self.instances.load(Ordering::Relaxed);
        let mean = |sum: &AtomicU64| Duration::from_nanos(sum.load(Ordering::Relaxed) / instances.max(1));
        CostSummary {
            instances,
            instantiate: mean(&self.instantiate_ns),
            handle: mean(&self.handle_ns),
            teardown: mean(&self.teardown_ns),
        }
    }
}

/// Mean costs of the instances a service ran (instances that failed to instantiate are not
/// counted). `handle` is the guest's `handle` call: for a trivial guest, the cost of
/// crossing into it and back; the body may stream on after it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostSummary {
    pub instances: u64,
    pub instantiate: Duration,
    pub handle: Duration,
    pub teardown: Duration,
}

impl std::fmt::Display for CostSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        write!(
            f,
            "{} instances, mean per request: instantiate {:.1} us, handle {:.1} us, teardown {:.1} us",
            self.instances,
            us(self.instantiate),
            us(self.handle),
            us(self.teardown)
        )
    }
}

/// A server sees origin-form targets (`/path`); a `wasi:http` guest expects an authority
/// (JS builds `request.url` from it): take it from `Host`, as a proxy would.
fn with_authority<B>(request: hyper::Request<B>) -> hyper::Request<B> {
    if request.uri().authority().is_some() {
        return request;
    }
    let (mut parts, body) = request.into_parts();
    let host = parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let mut uri = http::uri::Builder::new().scheme("http").authority(host);
    if let Some(path) = parts.uri.path_and_query() {
        uri = uri.path_and_query(path.clone());
    }
    if let Ok(uri) = uri.build() {
        parts.uri = uri;
    }
    hyper::Request::from_parts(parts, body)
}

fn call_error(err: anyhow::Error) -> CallError {
    if err.downcast_ref::<Timeout>().is_some() {
        return CallError::Timeout;
    }
    if let Some(Stopped(sig)) = err.downcast_ref::<Stopped>() {
        return CallError::Stopped(*sig);
    }
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return CallError::Exited(exit.0);
    }
    CallError::Trap(trap_report(&err))
}

/// The error an instance ends with when its request's deadline passed.
#[derive(Debug)]
struct Timeout;

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request deadline passed")
    }
}

impl std::error::Error for Timeout {}
