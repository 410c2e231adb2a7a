//! Reactor modules against real wasmtime: the ABI checks at load, one request through a
//! hand-written reactor, and the ways a call can fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

/// A response head as the module sent it: status and header lines.
type Head = (u16, Vec<u8>);
use fabricks_engine::{
    CallError, Command, Compiler, Engine, EngineOptions, Exchange, ModuleKind, Problem, Reactor, ReactorInstance,
    Stopper, Unrunnable,
};

const SIGKILL: i32 = 9;

fn engine(cache: &std::path::Path) -> Engine {
    Engine::new(EngineOptions { cache_dir: cache.to_path_buf(), compiler: Compiler::InProcess }).unwrap()
}

/// A reactor speaking ABI `version`: `handle(n)` answers 200 with the header `x-len: 1`
/// and the request head it was given as the body; `$extra` runs first (a trap, a loop).
fn reactor(version: u32, extra: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "fabricks_http" "response_head" (func $head (param i32 i32 i32) (result i32)))
            (import "fabricks_http" "response_write" (func $write (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "x-len: 1\n")
            (func (export "_initialize"))
            (func (export "fabricks_http_abi_version") (result i32) (i32.const {version}))
            (func (export "fabricks_http_alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "fabricks_http_handle") (param $n i32) (result i32)
                {extra}
                (drop (call $head (i32.const 200) (i32.const 16) (i32.const 9)))
                (drop (call $write (i32.const 1024) (local.get $n)))
                (i32.const 0)))"#
    ))
    .unwrap()
}

#[derive(Default, Clone)]
struct Recorded {
    head: Arc<Mutex<Option<Head>>>,
    body: Arc<Mutex<Vec<u8>>>,
    failed: Arc<AtomicBool>,
}

impl Exchange for Recorded {
    fn read_body(&mut self, _buf: &mut [u8]) -> Result<usize> {
        Ok(0)
    }
    fn send_head(&mut self, status: u16, headers: &[u8]) -> Result<()> {
        *self.head.lock().unwrap() = Some((status, headers.to_vec()));
        Ok(())
    }
    fn write_body(&mut self, chunk: &[u8]) -> Result<()> {
        self.body.lock().unwrap().extend_from_slice(chunk);
        Ok(())
    }
    fn fail(&mut self, _why: &str) {
        self.failed.store(true, Ordering::SeqCst);
    }
}

fn prepare(engine: &Engine, wasm: &[u8], stopper: &Stopper) -> Result<Reactor> {
    let module = engine.load_bytes(wasm)?;
    assert_eq!(engine.module_kind(&module, "r.wasm")?, ModuleKind::Reactor);
    let command = || Ok(Command { args: vec!["r.wasm".into()], cwd: "/".into(), ..Default::default() });
    Reactor::new(&module, "r.wasm", Arc::new(command), stopper, Some(16 << 20))
}

/// An initialised instance of `reactor(1, extra)`; the cache directory lives as long as it.
fn ready(extra: &str, stopper: &Stopper) -> (tempfile::TempDir, Reactor, ReactorInstance) {
    let cache = tempfile::tempdir().unwrap();
    let reactor = prepare(&engine(cache.path()), &reactor(1, extra), stopper).unwrap();
    let instance = reactor.instantiate().unwrap();
    (cache, reactor, instance)
}

#[test]
fn a_request_head_goes_in_and_the_response_comes_out() {
    let (_cache, _reactor, mut instance) = ready("", &Stopper::new());
    for request in ["GET\n/a\nHTTP/1.1\n1.2.3.4:5", "POST\n/bb\nHTTP/1.1\n1.2.3.4:6\nhost: x"] {
        let rec = Recorded::default();
        instance.handle(request.as_bytes(), Box::new(rec.clone()), Instant::now() + Duration::from_secs(60)).unwrap();
        assert_eq!(*rec.head.lock().unwrap(), Some((200, b"x-len: 1\n".to_vec())));
        assert_eq!(*rec.body.lock().unwrap(), request.as_bytes());
        assert!(!rec.failed.load(Ordering::SeqCst));
    }
}

#[test]
fn another_abi_version_is_refused_as_unrunnable() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine(cache.path());
    let reactor = prepare(&engine, &reactor(2, ""), &Stopper::new()).unwrap();
    let err = reactor.instantiate().err().unwrap();
    assert_eq!(err.downcast_ref::<Unrunnable>().map(|u| u.problem), Some(Problem::AbiMismatch));
    let err = format!("{err:#}");
    assert!(err.contains("ABI version 2") && err.contains("version 1"), "{err}");
}

#[test]
fn a_reactor_without_the_abi_is_refused_as_unrunnable() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine(cache.path());
    let plain = wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_initialize")))"#).unwrap();
    let err = prepare(&engine, &plain, &Stopper::new()).err().unwrap();
    assert_eq!(err.downcast_ref::<Unrunnable>().map(|u| u.problem), Some(Problem::NotHttpReactor));
    assert!(format!("{err:#}").contains("fabricks_http_abi_version"), "{err:#}");
    let neither = wat::parse_str(r#"(module (func (export "main")))"#).unwrap();
    let module = engine.load_bytes(&neither).unwrap();
    let err = format!("{:#}", engine.module_kind(&module, "n.wasm").unwrap_err());
    assert!(err.contains("neither `_start` nor `_initialize`"), "{err}");
}

#[test]
fn a_trap_fails_the_call_and_marks_the_response() {
    let (_cache, _reactor, mut instance) = ready("(unreachable)", &Stopper::new());
    let rec = Recorded::default();
    let err = instance.handle(b"GET\n/\nHTTP/1.1\nx", Box::new(rec.clone()), Instant::now() + Duration::from_secs(60));
    assert!(matches!(err, Err(CallError::Trap(ref report)) if report.contains("unreachable")), "{err:?}");
    assert!(rec.failed.load(Ordering::SeqCst));
    assert!(rec.head.lock().unwrap().is_none());
}

/// The deadline is checked at epoch ticks; the test ticks until the call returns, so it
/// asserts what ends the call, not when.
#[test]
fn a_call_past_its_deadline_ends_as_a_timeout() {
    let (_cache, reactor, mut instance) = ready("(loop $l (br $l))", &Stopper::new());
    let done = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (reactor, done) = (reactor.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                reactor.tick();
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let err = instance.handle(
        b"GET\n/\nHTTP/1.1\nx",
        Box::new(Recorded::default()),
        Instant::now() + Duration::from_millis(50),
    );
    done.store(true, Ordering::SeqCst);
    ticker.join().unwrap();
    assert!(matches!(err, Err(CallError::Timeout)), "{err:?}");
}

#[test]
fn a_hard_stop_ends_a_running_call() {
    let stopper = Stopper::new();
    let (_cache, _reactor, mut instance) = ready("(loop $l (br $l))", &stopper);
    let stop = stopper.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        stop.stop(SIGKILL);
    });
    let err = instance.handle(
        b"GET\n/\nHTTP/1.1\nx",
        Box::new(Recorded::default()),
        Instant::now() + Duration::from_secs(3600),
    );
    killer.join().unwrap();
    assert!(matches!(err, Err(CallError::Stopped(9))), "{err:?}");
}
