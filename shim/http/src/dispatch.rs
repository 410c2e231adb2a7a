//! One HTTP request: wait for a turn (or 503), let the backend answer, and turn a failure
//! into the status that says why (504 past the deadline, else 500).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fabricks_engine::CallError;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::backend::{Backend, Failure, ResponseBody};
use crate::gate::Gate;

pub async fn dispatch<B: Backend>(
    backend: Arc<B>,
    gate: Arc<Gate>,
    timeout: Duration,
    request: Request<Incoming>,
    remote: SocketAddr,
) -> Response<ResponseBody> {
    let Some(turn) = gate.admit().await else {
        log::warn!("all instances busy and the queue full: 503 for {} {}", request.method(), request.uri());
        let mut busy = plain(StatusCode::SERVICE_UNAVAILABLE, "all instances are busy; retry shortly\n");
        busy.headers_mut().insert(RETRY_AFTER, http::HeaderValue::from_static("1"));
        return busy;
    };
    // The clock starts once an instance is ours: waiting in line is not the module's time.
    let deadline = Instant::now() + timeout;
    match backend.answer(request, remote, deadline, turn).await {
        Ok(response) => response,
        Err(Failure::Call(CallError::Timeout)) => {
            plain(StatusCode::GATEWAY_TIMEOUT, &format!("the request took longer than {}s\n", timeout.as_secs()))
        }
        Err(Failure::NoResponse) => plain(StatusCode::INTERNAL_SERVER_ERROR, "the module sent no valid response\n"),
        Err(err) => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("the module failed: {}\n", failure_text(&err))),
    }
}

fn failure_text(err: &Failure) -> String {
    match err {
        Failure::Call(CallError::Trap(_)) => "it trapped (the trap is in the task's log)".into(),
        Failure::Call(other) => other.to_string(),
        Failure::NoInstance(_) => "no instance could be started (see the task's log)".into(),
        Failure::NoResponse => "it sent no response".into(),
    }
}

pub(crate) fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
    let body = Full::new(Bytes::from(text.to_string())).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
