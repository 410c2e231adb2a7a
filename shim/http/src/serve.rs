//! The server of an HTTP task (a reactor pool or a `wasi:http` component): accepts on the
//! task's listeners, serves HTTP/1.1 with hyper, stops gracefully (stop accepting, let
//! requests in flight finish) or hard.

use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use fabricks_engine::{HttpService, Stopper};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::backend::{Backend, ComponentBackend};
use crate::dispatch::dispatch;
use crate::gate::Gate;
use crate::Settings;

/// How often running calls check their deadline: the timeout's resolution.
const DEADLINE_TICK: Duration = Duration::from_millis(100);

/// Serves `listeners` with a `wasi:http` component, a fresh instance per request (see
/// [`serve`]).
pub fn serve_component(
    service: Arc<HttpService>,
    settings: &Settings,
    listeners: Vec<StdListener>,
    stopper: &Stopper,
) -> Result<i32> {
    let served = serve(Arc::new(ComponentBackend(service.clone())), settings, listeners, stopper);
    log::info!("{}: {}", service.program(), service.costs());
    served
}

/// Serves `listeners` with `backend` (a reactor [`crate::Pool`], a component) until
/// `stopper` is signalled; returns the exit status: 0 after a graceful stop (SIGTERM,
/// SIGINT), `128 + signal` after a hard one. Every thread of the server (and so every
/// connection a component makes) is in the calling thread's network namespace.
pub fn serve<B: Backend>(
    backend: Arc<B>,
    settings: &Settings,
    listeners: Vec<StdListener>,
    stopper: &Stopper,
) -> Result<i32> {
    let (stop_tx, stop_rx) = watch::channel(false);
    stopper.on_stop(move |_| {
        let _ = stop_tx.send(true);
    });
    // Listeners make SIGTERM graceful; the hook above is how this server hears of it.
    for listener in &listeners {
        stopper.watch_listener(listener).context("watching a listener")?;
    }
    let runtime = fabricks_engine::component::runtime_builder(true)?
        .worker_threads(settings.instances.clamp(1, 4))
        .max_blocking_threads(settings.instances + 4)
        .thread_name("fabricks-http")
        .build()
        .context("starting the HTTP server's threads")?;
    let gate = Arc::new(Gate::new(settings));
    let graceful = runtime.block_on(accept_all(backend, gate.clone(), settings.timeout, listeners, stop_rx))?;
    if let Some(sig) = stopper.requested() {
        // Hard stop: running calls trap at their next epoch check; nothing is waited for.
        runtime.shutdown_background();
        return Ok(128 + sig);
    }
    let drain = settings.timeout + Duration::from_secs(1);
    // Requests in flight first, then hyper's shutdown for the idle keep-alive connections:
    // hyper's HTTP/1 graceful shutdown stops reading a request body that is still arriving,
    // which would cut an upload in flight.
    let drained = runtime.block_on(async {
        tokio::time::timeout(drain, async {
            gate.idle().await;
            graceful.shutdown().await
        })
        .await
        .is_ok()
    });
    if !drained {
        log::warn!("requests still running {}s after the stop were cut off", drain.as_secs());
    }
    runtime.shutdown_background();
    Ok(stopper.requested().map_or(0, |sig| 128 + sig))
}

async fn accept_all<B: Backend>(
    backend: Arc<B>,
    gate: Arc<Gate>,
    timeout: Duration,
    listeners: Vec<StdListener>,
    mut stop: watch::Receiver<bool>,
) -> Result<GracefulShutdown> {
    let graceful = Arc::new(GracefulShutdown::new());
    let ticker = tokio::spawn(tick(backend.clone()));
    let mut loops = tokio::task::JoinSet::new();
    for listener in listeners {
        listener.set_nonblocking(true).context("making the listener non-blocking")?;
        let listener = TcpListener::from_std(listener).context("registering the listener")?;
        loops.spawn(accept(listener, backend.clone(), gate.clone(), timeout, graceful.clone(), stop.clone()));
    }
    stopped(&mut stop).await;
    while loops.join_next().await.is_some() {}
    ticker.abort();
    Ok(Arc::into_inner(graceful).expect("accept loops ended"))
}

async fn accept<B: Backend>(
    listener: TcpListener,
    backend: Arc<B>,
    gate: Arc<Gate>,
    timeout: Duration,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, remote) = tokio::select! {
            _ = stopped(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    log::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (backend, gate) = (backend.clone(), gate.clone());
        let service = service_fn(move |request| {
            let (backend, gate) = (backend.clone(), gate.clone());
            async move { Ok::<_, std::convert::Infallible>(dispatch(backend, gate, timeout, request, remote).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                log::debug!("connection from {remote}: {e}");
            }
        });
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is not Send: drop it here.
    let _ = stop.wait_for(|stopped| *stopped).await.map(drop);
}

/// Advances the engine's epoch so running calls look at their deadline.
async fn tick<B: Backend>(backend: Arc<B>) {
    let mut interval = tokio::time::interval(DEADLINE_TICK);
    loop {
        interval.tick().await;
        backend.tick();
    }
}
