//! A command's first start on baseline (Winch) code while the optimized (Cranelift) entry
//! is written for later starts; services and engines without a background compiler wait.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fabricks_engine::{
    compile_into_cache, Command, Compiler, Engine, EngineOptions, FirstStart, Program, Stopper, Unrunnable,
};

/// The background compiler's calls, and whether it compiles them (synchronously, for the
/// test) or only records them.
#[derive(Default)]
struct Background {
    calls: Mutex<Vec<PathBuf>>,
}

fn engine(cache: &Path, background: &Arc<Background>, compiles: bool) -> Engine {
    let b = background.clone();
    let optimize = move |wasm: &[u8], entry: &Path| {
        b.calls.lock().unwrap().push(entry.to_path_buf());
        if compiles {
            compile_into_cache(wasm, entry)?;
        }
        Ok(())
    };
    Engine::new(EngineOptions { cache_dir: cache.to_path_buf(), compiler: Compiler::InProcess })
        .unwrap()
        .with_baseline_first_start(Arc::new(optimize))
        .unwrap()
}

fn exits_with(code: i32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func (export "_start") (call $exit (i32.const {code}))))"#
    ))
    .unwrap()
}

fn command() -> Command {
    Command { args: vec!["t.wasm".into()], cwd: "/".into(), ..Default::default() }
}

fn module(program: Program) -> fabricks_engine::Module {
    match program {
        Program::Module(m) => m,
        Program::Component(_) => panic!("a component"),
    }
}

#[test]
fn a_first_start_runs_baseline_code_and_later_starts_map_the_optimized_entry() {
    let cache = tempfile::tempdir().unwrap();
    let background = Arc::<Background>::default();
    let engine = engine(cache.path(), &background, true);
    let wasm = exits_with(7);
    let entry = engine.cache().entry_path(&wasm);

    let (first, pin) = engine.load_program_pinned(&wasm, FirstStart::Baseline).unwrap();
    let first = module(first);
    assert!(
        !wasmtime::Engine::same(first.engine(), engine.wasmtime()),
        "the first start is not on the optimized engine"
    );
    assert_eq!(engine.run(&first, command(), &Stopper::new()).unwrap(), 7);
    assert_eq!(pin.path(), entry, "the task names the entry its image will use");
    assert_eq!(*background.calls.lock().unwrap(), vec![entry.clone()], "one background compile, of that entry");
    assert_eq!(engine.cache().compiles(), 0, "nothing compiled in the foreground's cache path");
    let leftovers: Vec<_> = std::fs::read_dir(engine.cache().dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary file stays: {leftovers:?}");

    let (later, _pin) = engine.load_program_pinned(&wasm, FirstStart::Baseline).unwrap();
    let later = module(later);
    assert!(wasmtime::Engine::same(later.engine(), engine.wasmtime()), "a later start maps the optimized entry");
    assert_eq!(engine.run(&later, command(), &Stopper::new()).unwrap(), 7);
    assert_eq!(background.calls.lock().unwrap().len(), 1, "no second background compile");
    assert_eq!(engine.cache().compiles(), 0);
}

#[test]
fn until_the_optimized_entry_exists_every_first_start_is_baseline() {
    let cache = tempfile::tempdir().unwrap();
    let background = Arc::<Background>::default();
    let engine = engine(cache.path(), &background, false);
    let wasm = exits_with(0);
    for _ in 0..2 {
        let (program, _pin) = engine.load_program_pinned(&wasm, FirstStart::Baseline).unwrap();
        assert!(!wasmtime::Engine::same(module(program).engine(), engine.wasmtime()));
    }
    assert_eq!(background.calls.lock().unwrap().len(), 2);
    assert!(!engine.cache().entry_path(&wasm).exists());
}

#[test]
fn a_service_waits_for_optimized_code() {
    let cache = tempfile::tempdir().unwrap();
    let background = Arc::<Background>::default();
    let engine = engine(cache.path(), &background, true);
    let wasm = exits_with(3);
    let (program, _pin) = engine.load_program_pinned(&wasm, FirstStart::Optimized).unwrap();
    assert!(wasmtime::Engine::same(module(program).engine(), engine.wasmtime()));
    assert!(background.calls.lock().unwrap().is_empty());
    assert_eq!(engine.cache().compiles(), 1);
}

#[test]
fn an_engine_without_a_background_compiler_compiles_optimized_code() {
    let cache = tempfile::tempdir().unwrap();
    let engine =
        Engine::new(EngineOptions { cache_dir: cache.path().to_path_buf(), compiler: Compiler::InProcess }).unwrap();
    let (program, _pin) = engine.load_program_pinned(&exits_with(0), FirstStart::Baseline).unwrap();
    assert!(wasmtime::Engine::same(module(program).engine(), engine.wasmtime()));
    assert_eq!(engine.cache().compiles(), 1);
}

#[test]
fn a_stop_ends_a_spinning_module_on_baseline_code() {
    let cache = tempfile::tempdir().unwrap();
    let background = Arc::<Background>::default();
    let engine = engine(cache.path(), &background, false);
    let spins =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))"#).unwrap();
    let (program, _pin) = engine.load_program_pinned(&spins, FirstStart::Baseline).unwrap();
    let stopper = Stopper::new();
    let remote = stopper.clone();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        remote.stop(9);
    });
    assert_eq!(
        engine.run(&module(program), command(), &stopper).unwrap(),
        137,
        "epoch interruption works in Winch code"
    );
    killer.join().unwrap();
}

#[test]
fn invalid_wasm_is_refused_by_the_baseline_compile_without_a_background_compile() {
    let cache = tempfile::tempdir().unwrap();
    let background = Arc::<Background>::default();
    let engine = engine(cache.path(), &background, true);
    // Well-formed, but the body does not type-check: wat does not validate, wasmtime does.
    let bad = wat::parse_str(r#"(module (func (export "_start") (i32.add)))"#).unwrap();
    let err = engine.load_program_pinned(&bad, FirstStart::Baseline).err().expect("refused");
    assert!(err.chain().any(|e| e.is::<Unrunnable>()), "{err:#}");
    assert!(background.calls.lock().unwrap().is_empty(), "nothing to optimize");
}
