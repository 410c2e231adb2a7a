//! The memory limit on linear memory, and the cache sweep, against real wasmtime.

use std::io::Read;

use fabricks_engine::{Command, Compiler, Engine, EngineOptions, MemoryLimit, Stdio, Stopper, OOM_EXIT_CODE};

const MIB: u64 = 1024 * 1024;

fn engine(cache: &std::path::Path) -> Engine {
    Engine::new(EngineOptions { cache_dir: cache.to_path_buf(), compiler: Compiler::InProcess }).unwrap()
}

/// Starts with `initial` 64 KiB pages, then grows by `grow` pages; exits 0 if the growth
/// succeeded, 3 if memory.grow returned -1.
fn grower(initial: u32, grow: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") {initial})
            (func (export "_start")
                (if (i32.eq (memory.grow (i32.const {grow})) (i32.const -1))
                    (then (call $exit (i32.const 3))))
                (call $exit (i32.const 0))))"#
    ))
    .unwrap()
}

/// Runs `wasm` under `memory`; returns the status and what the module's stderr got, which
/// is also the exit reason the engine kept.
fn run_limited(wasm: &[u8], memory: MemoryLimit) -> (i32, String) {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine(cache.path());
    let err = tempfile::NamedTempFile::new().unwrap();
    let cmd = Command {
        args: vec!["grow.wasm".into()],
        stderr: Stdio::File(err.reopen().unwrap()),
        memory,
        ..Default::default()
    };
    let reason = cmd.reason.clone();
    let module = engine.load_bytes(wasm).unwrap();
    let code = engine.run(&module, cmd, &Stopper::new()).unwrap();
    let mut text = String::new();
    err.reopen().unwrap().read_to_string(&mut text).unwrap();
    if code != 0 && !text.is_empty() {
        assert_eq!(reason.get().as_deref(), Some(text.trim_end()), "the exit reason is the report on stderr");
    }
    (code, text)
}

#[test]
fn growing_past_the_limit_ends_with_the_oom_status_and_says_why() {
    let limit = MemoryLimit::bytes(2 * MIB);
    let (code, stderr) = run_limited(&grower(1, 100), limit.clone());
    assert_eq!(code, OOM_EXIT_CODE);
    assert!(limit.exceeded());
    assert!(stderr.contains("out of memory"), "{stderr}");
    assert!(stderr.contains("memory limit of 2.0 MiB"), "{stderr}");
    assert!(stderr.contains("6.3 MiB"), "the size asked for: {stderr}");
}

#[test]
fn growing_within_the_limit_succeeds_and_is_counted() {
    let limit = MemoryLimit::bytes(16 * MIB);
    let (code, stderr) = run_limited(&grower(1, 100), limit.clone());
    assert_eq!(code, 0, "{stderr}");
    assert!(!limit.exceeded());
    assert_eq!(limit.used(), 101 * 64 * 1024);
}

#[test]
fn an_initial_memory_past_the_limit_is_the_same_oom() {
    let limit = MemoryLimit::bytes(MIB);
    let (code, stderr) = run_limited(&grower(64, 0), limit.clone());
    assert_eq!(code, OOM_EXIT_CODE);
    assert!(stderr.contains("out of memory"), "{stderr}");
}

#[test]
fn no_limit_leaves_memory_to_wasm() {
    let (code, _) = run_limited(&grower(1, 100), MemoryLimit::unlimited());
    assert_eq!(code, 0);
}

#[test]
fn the_sweep_removes_entries_of_gone_images_unless_in_use() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine(cache.path());
    let (wasm_a, wasm_b, wasm_c) = (grower(1, 1), grower(1, 2), grower(1, 3));
    let (_, pin_a) = engine.load_pinned(&wasm_a).unwrap();
    let entry_a = pin_a.path().to_path_buf();
    drop(pin_a);
    let (_, pin_b) = engine.load_pinned(&wasm_b).unwrap();
    let (_, pin_c) = engine.load_pinned(&wasm_c).unwrap();
    let (entry_b, entry_c) = (pin_b.path().to_path_buf(), pin_c.path().to_path_buf());
    drop(pin_c);
    engine.cache().record_origin(&entry_a, "ns", "gone:a").unwrap();
    engine.cache().record_origin(&entry_b, "ns", "gone:b").unwrap();
    engine.cache().record_origin(&entry_c, "ns", "gone:c").unwrap();
    engine.cache().record_origin(&entry_c, "ns", "kept:c").unwrap();

    let swept = engine.cache().sweep(|_, image| image.starts_with("kept")).unwrap();
    assert_eq!(swept.modules, 1);
    assert!(!entry_a.exists(), "all its images gone, not in use: removed");
    assert!(!entry_a.with_extension("origins").exists());
    assert!(entry_b.exists(), "pinned by a running task: kept");
    assert!(entry_c.exists(), "one of its images is still there: kept");

    drop(pin_b);
    assert_eq!(engine.cache().sweep(|_, image| image.starts_with("kept")).unwrap().modules, 1);
    assert!(!entry_b.exists());
}

#[test]
fn the_sweep_removes_other_engines_caches() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine(cache.path());
    let old = cache.path().join("wasmtime-35.0.0-0000000000000000");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("x.cwasm"), b"old").unwrap();
    let swept = engine.cache().sweep(|_, _| true).unwrap();
    assert_eq!(swept.engines, 1);
    assert!(!old.exists());
    assert!(engine.cache().dir().exists());
}
