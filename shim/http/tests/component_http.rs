//! `wasi:http` components made by componentize-py and componentize-js
//! (test-cluster/components/build.sh), served in-process by the same server as reactors and
//! driven by a real HTTP client. Without the built components (FABRICKS_TEST_COMPONENTS
//! unset) each test says it is skipped and why.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fabricks_engine::{
    Command, Compiler, ComponentConfig, Engine, EngineOptions, HttpService, Network, Program, Stdio, Stopper,
};
use fabricks_http::Settings;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;
const SERVICES: [&str; 2] = ["py-http.wasm", "js-http.wasm"];

fn built(name: &str) -> Option<Vec<u8>> {
    let Some(dir) = std::env::var_os("FABRICKS_TEST_COMPONENTS") else {
        println!("skipped: FABRICKS_TEST_COMPONENTS unset (build them with test-cluster/components/build.sh)");
        return None;
    };
    let path = PathBuf::from(dir).join(name);
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{} cannot be read: {e}", path.display())))
}

struct Server {
    addr: SocketAddr,
    stopper: Stopper,
    thread: Option<JoinHandle<i32>>,
    stderr: tempfile::NamedTempFile,
    service: Arc<HttpService>,
}

impl Server {
    fn start(wasm: &[u8], components: ComponentConfig) -> Self {
        // One compiled-component cache for all tests: Cranelift takes a while on CPython.
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
        let options = EngineOptions { cache_dir: cache, compiler: Compiler::InProcess };
        let engine = Engine::with_components(options, components).unwrap();
        let Program::Component(component) = engine.load_program(wasm).unwrap() else { panic!("not a component") };
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let cmd = Command {
            args: vec!["app.wasm".into()],
            cwd: "/".into(),
            stdout: Stdio::Inherit,
            stderr: Stdio::File(stderr.reopen().unwrap()),
            ..Default::default()
        };
        let settings = Settings { instances: 2, queue: 16, timeout: Duration::from_secs(30), instance_memory: None };
        let stopper = Stopper::new();
        let service = Arc::new(
            HttpService::new(&engine, &component, cmd, &Network::default(), &stopper, settings.instance_memory)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // As the shim does at create: a SIGTERM before the server's first line is graceful.
        stopper.watch_listener(&listener).unwrap();
        let stop = stopper.clone();
        let served = service.clone();
        let thread = std::thread::spawn(move || {
            fabricks_http::serve_component(served, &settings, vec![listener], &stop).unwrap()
        });
        Self { addr, stopper, thread: Some(thread), stderr, service }
    }

    fn stop(&mut self, signal: i32) -> i32 {
        self.stopper.stop(signal);
        self.thread.take().unwrap().join().unwrap()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop(SIGKILL);
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::combinators::BoxBody<Bytes, Infallible>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

async fn get(sender: &mut Sender, path: &str) -> (u16, Vec<u8>) {
    let request = http::Request::get(path).header("host", "test").body(Empty::new().boxed()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

/// Deterministic bytes, produced and hashed chunk by chunk so the client holds no copy.
fn chunk(i: usize) -> Bytes {
    let seed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Bytes::from((0..64 * 1024).map(|j| (seed >> (j % 56)) as u8 ^ j as u8).collect::<Vec<u8>>())
}

/// POSTs `chunks` × 64 KiB to /echo, calling `midway` once the first half is sent and the
/// response head has come back (both services answer before reading the body): only then is
/// the request surely in the guest's hands, not still in the socket's buffers or the
/// listener's backlog, which a stop may rightly reset. Returns the status, the sha256 of
/// what was sent and of what came back.
async fn echo(addr: SocketAddr, chunks: usize, midway: impl FnOnce() + Send + 'static) -> (u16, String, String) {
    let mut sender = connect(addr).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(2);
    let (head_tx, head_rx) = tokio::sync::oneshot::channel::<()>();
    let sent = tokio::spawn(async move {
        let mut hash = Sha256::new();
        let mut midway = Some(midway);
        let mut head = Some(head_rx);
        for i in 0..chunks {
            if i == chunks / 2 {
                if let Some(head) = head.take() {
                    let _ = head.await;
                }
                if let Some(f) = midway.take() {
                    f();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let data = chunk(i);
            hash.update(&data);
            tx.send(Ok(Frame::data(data))).await.unwrap();
        }
        hex::encode(hash.finalize())
    });
    let body = StreamBody::new(tokio_stream(rx)).boxed();
    let request = http::Request::post("/echo").header("host", "test").body(body).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let _ = head_tx.send(());
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut hash = Sha256::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            hash.update(&data);
        }
    }
    (status, sent.await.unwrap(), hex::encode(hash.finalize()))
}

fn tokio_stream<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn get_greets_and_an_unknown_path_is_404() {
    for name in SERVICES {
        let Some(wasm) = built(name) else { return };
        let server = Server::start(&wasm, ComponentConfig::default());
        runtime().block_on(async {
            let mut sender = connect(server.addr).await;
            let (status, body) = get(&mut sender, "/").await;
            assert_eq!(status, 200, "{name}: {}", server.stderr());
            assert!(String::from_utf8_lossy(&body).starts_with("hello from componentize-"), "{name}");
            let (status, _) = get(&mut sender, "/nothing-here").await;
            assert_eq!(status, 404, "{name}");
        });
    }
}

#[test]
fn a_10_mib_post_is_echoed_back_streaming() {
    for name in SERVICES {
        let Some(wasm) = built(name) else { return };
        let server = Server::start(&wasm, ComponentConfig::default());
        let started = Instant::now();
        let (status, sent, received) = runtime().block_on(echo(server.addr, 160, || {}));
        assert_eq!(status, 200, "{name}: {}", server.stderr());
        assert_eq!(sent, received, "{name}: the echo differs from the request body");
        println!("{name}: 10 MiB echoed in {:?}", started.elapsed());
    }
}

fn sigterm_drains(name: &str) {
    let Some(wasm) = built(name) else { return };
    let mut server = Server::start(&wasm, ComponentConfig::default());
    let stopper = server.stopper.clone();
    let (status, sent, received) = runtime().block_on(echo(server.addr, 32, move || {
        stopper.stop(SIGTERM);
    }));
    assert_eq!(status, 200, "{name}");
    assert_eq!(sent, received, "{name}: the drained request was cut short");
    assert_eq!(server.stop(SIGTERM), 0, "{name}: a graceful stop exits 0");
    let refused = runtime().block_on(async { tokio::net::TcpStream::connect(server.addr).await.is_err() });
    assert!(refused, "{name}: still accepting after the drain");
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    sigterm_drains("py-http.wasm");
}

#[test]
fn sigterm_lets_the_js_request_in_flight_finish() {
    sigterm_drains("js-http.wasm");
}

#[test]
fn sigkill_cuts_the_request_in_flight_and_ends_with_137() {
    let Some(wasm) = built("py-http.wasm") else { return };
    let mut server = Server::start(&wasm, ComponentConfig::default());
    let stopper = server.stopper.clone();
    let addr = server.addr;
    let outcome = std::thread::spawn(move || {
        runtime().block_on(async move {
            tokio::time::timeout(
                Duration::from_secs(30),
                tokio::spawn(echo(addr, 32, move || {
                    stopper.stop(SIGKILL);
                })),
            )
            .await
        })
    });
    // The client sees the connection end (a panic in its task), never a complete echo.
    let finished = outcome.join().unwrap().expect("the client hung after the kill");
    assert!(finished.is_err_and(|e| e.is_panic()), "the response completed despite the kill");
    assert_eq!(server.stop(SIGKILL), 128 + SIGKILL);
}

/// Each request is a fresh instance, counted with its costs; prints (does not assert) what
/// one request costs, through the whole server and in the service's own accounting, with and
/// without the pooling allocator.
#[test]
fn every_request_is_a_fresh_instance_and_its_costs_are_counted() {
    const REQUESTS: u32 = 200;
    for name in SERVICES {
        let Some(wasm) = built(name) else { return };
        for pooling in [false, true] {
            let mut server = Server::start(&wasm, ComponentConfig { pooling, ..ComponentConfig::default() });
            let (first, mean, p50) = runtime().block_on(async {
                let mut sender = connect(server.addr).await;
                let started = Instant::now();
                assert_eq!(get(&mut sender, "/").await.0, 200);
                let first = started.elapsed();
                let mut times = Vec::new();
                for _ in 0..REQUESTS {
                    let started = Instant::now();
                    assert_eq!(get(&mut sender, "/").await.0, 200);
                    times.push(started.elapsed());
                }
                let mean = times.iter().sum::<Duration>() / times.len() as u32;
                times.sort();
                (first, mean, times[times.len() / 2])
            });
            // An instance is counted once it is gone, which may be just after its response
            // reached the client; a graceful stop waits for every instance to go.
            assert_eq!(server.stop(SIGTERM), 0);
            let costs = server.service.costs();
            assert_eq!(costs.instances, u64::from(REQUESTS) + 1, "{name}: one instance per request");
            assert!(!costs.instantiate.is_zero(), "{name}: instantiation was not timed");
            println!(
                "per-request {name} pooling={pooling}: first {first:?}, then mean {mean:?}, median {p50:?} \
                 (GET /, {REQUESTS} sequential requests, one connection); {costs}"
            );
        }
    }
}
