//! The engine against real wasmtime, with small hand-written command modules.

use std::io::Read;
use std::time::Duration;

use fabricks_engine::{Command, Compiler, Engine, EngineOptions, Stdio, Stopper, TRAP_EXIT_CODE};

fn engine(cache: &std::path::Path) -> Engine {
    Engine::new(EngineOptions { cache_dir: cache.to_path_buf(), compiler: Compiler::InProcess }).unwrap()
}

fn module(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).unwrap()
}

/// `_start` calls `proc_exit(code)`.
fn exits_with(code: i32) -> Vec<u8> {
    module(&format!(
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func (export "_start") (call $exit (i32.const {code}))))"#
    ))
}

const TRAPS: &str = r#"(module
    (memory (export "memory") 1)
    (func $deep (unreachable))
    (func (export "_start") (call $deep)))"#;

const SPINS: &str = r#"(module
    (memory (export "memory") 1)
    (func (export "_start") (loop $l (br $l))))"#;

/// Writes "hi\n" to stdout with fd_write, then returns from `_start`.
const WRITES: &str = r#"(module
    (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 16) "hi\n")
    (func (export "_start")
        (i32.store (i32.const 0) (i32.const 16))
        (i32.store (i32.const 4) (i32.const 3))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

fn command() -> Command {
    Command { args: vec!["test.wasm".into()], cwd: "/".into(), ..Default::default() }
}

fn run(engine: &Engine, wasm: &[u8], cmd: Command) -> i32 {
    let module = engine.load_bytes(wasm).unwrap();
    engine.run(&module, cmd, &Stopper::new()).unwrap()
}

#[test]
fn proc_exit_code_is_the_status() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine(cache.path());
    assert_eq!(run(&engine, &exits_with(0), command()), 0);
    assert_eq!(run(&engine, &exits_with(7), command()), 7);
}

#[test]
fn returning_from_start_is_status_zero_and_stdout_reaches_the_file() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine(cache.path());
    let out = tempfile::NamedTempFile::new().unwrap();
    let cmd = Command { stdout: Stdio::File(out.reopen().unwrap()), ..command() };
    assert_eq!(run(&engine, &module(WRITES), cmd), 0);
    let mut text = String::new();
    out.reopen().unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "hi\n");
}

#[test]
fn a_trap_reports_its_backtrace_on_stderr() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine(cache.path());
    let err = tempfile::NamedTempFile::new().unwrap();
    let cmd = Command { stderr: Stdio::File(err.reopen().unwrap()), ..command() };
    let reason = cmd.reason.clone();
    assert_eq!(run(&engine, &module(TRAPS), cmd), TRAP_EXIT_CODE);
    let mut text = String::new();
    err.reopen().unwrap().read_to_string(&mut text).unwrap();
    assert!(text.contains("test.wasm trapped"), "{text}");
    assert_eq!(reason.get().as_deref(), Some(text.trim_end()), "the exit reason is the report on stderr");
    assert!(text.contains("unreachable"), "{text}");
    assert!(text.contains("$deep") || text.contains("deep"), "backtrace names the function: {text}");
}

#[test]
fn a_stop_ends_a_spinning_module_with_128_plus_signal() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine(cache.path());
    let module = engine.load_bytes(&module(SPINS)).unwrap();
    let stopper = Stopper::new();
    let remote = stopper.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        remote.stop(9);
    });
    assert_eq!(engine.run(&module, command(), &stopper).unwrap(), 137);
    killer.join().unwrap();
}

#[test]
fn a_stop_before_the_start_still_stops_it() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine(cache.path());
    let module = engine.load_bytes(&module(SPINS)).unwrap();
    let stopper = Stopper::new();
    stopper.stop(15);
    assert_eq!(engine.run(&module, command(), &stopper).unwrap(), 143);
}

#[test]
fn junk_and_components_are_refused_with_a_reason() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine(cache.path());
    let err = engine.load_bytes(b"#!/bin/sh\necho hi\n").err().unwrap();
    assert!(format!("{err:#}").contains("not a WebAssembly module"), "{err:#}");
    let component = [b"\0asm".as_slice(), &[0x0d, 0, 1, 0]].concat();
    let err = engine.load_bytes(&component).err().unwrap();
    assert!(format!("{err:#}").contains("not a core module"), "{err:#}");
    let mut truncated = exits_with(0);
    truncated.truncate(truncated.len() - 3);
    let err = engine.load_bytes(&truncated).err().unwrap();
    let err = format!("{err:#}");
    assert!(err.contains("invalid WebAssembly") && err.contains("end-of-file"), "{err}");
}

#[test]
fn a_module_without_start_or_with_foreign_imports_is_no_command() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine(cache.path());
    let reactor = engine.load_bytes(&module(r#"(module (func (export "_initialize")))"#)).unwrap();
    let err = engine.check_command(&reactor, "r.wasm", None).err().unwrap();
    assert!(format!("{err:#}").contains("no `_start` function"), "{err:#}");
    let foreign = module(r#"(module (import "wasi:http/handler" "handle" (func)) (func (export "_start")))"#);
    let foreign = engine.load_bytes(&foreign).unwrap();
    let err = engine.check_command(&foreign, "f.wasm", None).err().unwrap();
    assert!(format!("{err:#}").contains("only WASI preview 1"), "{err:#}");
}

#[test]
fn a_module_compiles_once_and_later_engines_load_it_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let wasm = exits_with(3);
    let first = engine(cache.path());
    first.load_bytes(&wasm).unwrap();
    first.load_bytes(&wasm).unwrap();
    assert_eq!(first.cache().compiles(), 1);
    assert!(first.cache().entry_path(&wasm).exists());

    let second = engine(cache.path());
    assert_eq!(run(&second, &wasm, command()), 3);
    assert_eq!(second.cache().compiles(), 0, "a new engine (a new shim) reuses the compiled file");
}

#[test]
fn a_corrupt_cache_entry_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let wasm = exits_with(4);
    let engine = engine(cache.path());
    engine.load_bytes(&wasm).unwrap();
    std::fs::write(engine.cache().entry_path(&wasm), b"garbage").unwrap();
    assert_eq!(run(&engine, &wasm, command()), 4);
    assert_eq!(engine.cache().compiles(), 2);
}

#[test]
fn the_guest_sees_its_preopened_directory() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(cache.path());
    // path_open on the preopen (fd 3) creating "made", then proc_exit(errno).
    let wasm = module(
        r#"(module
        (import "wasi_snapshot_preview1" "path_open"
            (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (data (i32.const 16) "made")
        (func (export "_start")
            (call $exit (call $open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 4)
                (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 64)))))"#,
    );
    let cmd =
        Command { dirs: vec![fabricks_engine::Preopen { host: dir.path().into(), guest: "/".into() }], ..command() };
    assert_eq!(run(&engine, &wasm, cmd), 0);
    assert!(dir.path().join("made").exists());
}
