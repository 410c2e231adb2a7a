//! One request between hyper (async) and an instance (a blocking thread): the request body
//! is read frame by frame as the module asks, the response head goes back through a
//! oneshot channel and the body through a bounded channel, so memory stays flat whatever
//! the sizes.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use fabricks_engine::Exchange;
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

/// Response body chunks in flight per request: enough to keep the socket busy while the
/// module produces the next one.
const BODY_CHUNKS: usize = 4;

pub type BodyResult = Result<Frame<Bytes>, std::io::Error>;

/// The response body: whatever the module writes, as it writes it.
pub struct ChannelBody {
    chunks: mpsc::Receiver<BodyResult>,
    /// Set when the response was cut short (a trap, the deadline): the end of the
    /// channel is then an error, so hyper aborts the response rather than completing it.
    aborted: Arc<AtomicBool>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<BodyResult>> {
        match self.chunks.poll_recv(cx) {
            Poll::Ready(None) if self.aborted.load(Ordering::SeqCst) => {
                Poll::Ready(Some(Err(std::io::Error::other("the module's response was cut short"))))
            }
            other => other,
        }
    }
}

pub struct HyperExchange {
    runtime: Handle,
    deadline: tokio::time::Instant,
    request: Incoming,
    /// Request body bytes received but not yet read by the module.
    pending: Bytes,
    head: Option<(oneshot::Sender<Response<ChannelBody>>, mpsc::Receiver<BodyResult>)>,
    body: mpsc::Sender<BodyResult>,
    aborted: Arc<AtomicBool>,
}

impl HyperExchange {
    /// The exchange, and where the response head will arrive.
    pub fn new(request: Incoming, deadline: Instant) -> (Self, oneshot::Receiver<Response<ChannelBody>>) {
        let (head_tx, head_rx) = oneshot::channel();
        let (body_tx, body_rx) = mpsc::channel(BODY_CHUNKS);
        let exchange = Self {
            runtime: Handle::current(),
            deadline: deadline.into(),
            request,
            pending: Bytes::new(),
            head: Some((head_tx, body_rx)),
            body: body_tx,
            aborted: Arc::default(),
        };
        (exchange, head_rx)
    }

    /// Waits for `f` on the server's runtime, until the request's deadline at most.
    fn wait<T>(&self, f: impl std::future::Future<Output = T>) -> Result<T> {
        self.runtime
            .block_on(tokio::time::timeout_at(self.deadline, f))
            .map_err(|_| anyhow!("the request deadline passed"))
    }
}

impl Exchange for HyperExchange {
    fn read_body(&mut self, buf: &mut [u8]) -> Result<usize> {
        while self.pending.is_empty() {
            let frame = {
                let request = &mut self.request;
                self.runtime.block_on(tokio::time::timeout_at(self.deadline, request.frame()))
            };
            match frame.map_err(|_| anyhow!("the request deadline passed"))? {
                None => return Ok(0),
                Some(frame) => {
                    // Trailers carry no body bytes; the ABI does not pass them on.
                    if let Ok(data) = frame.context("reading the request body")?.into_data() {
                        self.pending = data;
                    }
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }

    fn send_head(&mut self, status: u16, headers: &[u8]) -> Result<()> {
        let (head_tx, body_rx) = self.head.take().context("the module sent the response head twice")?;
        let mut response = Response::new(ChannelBody { chunks: body_rx, aborted: self.aborted.clone() });
        *response.status_mut() = StatusCode::from_u16(status)
            .ok()
            .filter(|s| !s.is_informational())
            .with_context(|| format!("the module answered with the invalid status {status}"))?;
        *response.headers_mut() = fabricks_reactor_abi::response_headers(headers)?;
        head_tx.send(response).map_err(|_| anyhow!("the client went away"))
    }

    fn write_body(&mut self, chunk: &[u8]) -> Result<()> {
        if self.head.is_some() {
            bail!("the module wrote body bytes before the response head");
        }
        let frame = Ok(Frame::data(Bytes::copy_from_slice(chunk)));
        // Usually there is room: no timer, no trip through the runtime.
        let frame = match self.body.try_send(frame) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => bail!("the client went away"),
            Err(mpsc::error::TrySendError::Full(frame)) => frame,
        };
        let body = self.body.clone();
        let sent = self.wait(body.send(frame));
        if sent.is_err() {
            // Past the deadline: whatever the module does next, this response is incomplete.
            self.aborted.store(true, Ordering::SeqCst);
        }
        sent?.map_err(|_| anyhow!("the client went away"))
    }

    fn fail(&mut self, why: &str) {
        log::debug!("response aborted: {why}");
        self.aborted.store(true, Ordering::SeqCst);
    }
}
