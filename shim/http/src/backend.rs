//! What answers the requests a server admits: a pool of reactor instances ([`crate::Pool`])
//! or a `wasi:http` component ([`ComponentBackend`]). The server, the queue, the timeout and
//! the mapping of failures to statuses are the same for both.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use fabricks_engine::{CallError, HttpService};
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

pub type ResponseBody = BoxBody<Bytes, std::io::Error>;
pub type Answer = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Failure>> + Send>>;

/// Why a request got no answer from the program.
#[derive(Debug)]
pub enum Failure {
    Call(CallError),
    /// No instance could be made (the module's `_initialize` fails now, say).
    NoInstance(String),
    /// The call ended without a response.
    NoResponse,
}

pub trait Backend: Send + Sync + 'static {
    /// Answers `request`, due by `deadline`. `turn` is the request's admission: hold it
    /// until the instance that serves it is done (after its body).
    fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
        remote: SocketAddr,
        deadline: Instant,
        turn: OwnedSemaphorePermit,
    ) -> Answer;

    /// Called every tick of the server's timer: running calls check their deadlines.
    fn tick(&self);

    fn program(&self) -> &str;
}

/// A `wasi:http` component: a fresh instance per request.
pub struct ComponentBackend(pub Arc<HttpService>);

impl Backend for ComponentBackend {
    fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
        _remote: SocketAddr,
        deadline: Instant,
        turn: OwnedSemaphorePermit,
    ) -> Answer {
        Box::pin(async move {
            match self.0.handle(request, deadline, turn).await {
                Ok(Some(response)) => {
                    Ok(response.map(|body| body.map_err(|code| std::io::Error::other(format!("{code:?}"))).boxed()))
                }
                Ok(None) => Err(Failure::NoResponse),
                Err(err) => Err(Failure::Call(err)),
            }
        })
    }

    fn tick(&self) {
        self.0.tick();
    }

    fn program(&self) -> &str {
        self.0.program()
    }
}
