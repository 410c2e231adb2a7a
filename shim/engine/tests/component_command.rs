//! `wasi:cli` components made by other people's toolchains (test-cluster/components/build.sh:
//! componentize-py, componentize-js, runwasi's prebuilt hello world), run in-process as the
//! shim runs them. Without the built components (FABRICKS_TEST_COMPONENTS unset) each test
//! says it is skipped and why.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fabricks_engine::{
    Command, Compiler, ComponentKind, Engine, EngineOptions, MemoryLimit, Network, Preopen, Program, Stdio, Stopper,
    OOM_EXIT_CODE, TRAP_EXIT_CODE,
};

const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

/// The built component `name`, or None after saying why the test is skipped.
fn built(name: &str) -> Option<Vec<u8>> {
    let Some(dir) = std::env::var_os("FABRICKS_TEST_COMPONENTS") else {
        println!("skipped: FABRICKS_TEST_COMPONENTS unset (build them with test-cluster/components/build.sh)");
        return None;
    };
    let path = PathBuf::from(dir).join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => panic!("FABRICKS_TEST_COMPONENTS is set but {} cannot be read: {e}", path.display()),
    }
}

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

struct Fixture {
    engine: Engine,
    program: Program,
}

/// One compiled-component cache for all tests: Cranelift takes a while on an 18 MB CPython.
fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

impl Fixture {
    fn new(wasm: &[u8]) -> Self {
        let options = EngineOptions { cache_dir: shared_cache(), compiler: Compiler::InProcess };
        let engine = Engine::new(options).unwrap();
        let program = engine.load_program(wasm).unwrap();
        Self { engine, program }
    }

    fn run(&self, args: &[&str], tweak: impl FnOnce(&mut Command, &mut Network, &Stopper)) -> Run {
        self.run_stopped(args, Stopper::new(), tweak)
    }

    fn run_stopped(
        &self,
        args: &[&str],
        stop: Stopper,
        tweak: impl FnOnce(&mut Command, &mut Network, &Stopper),
    ) -> Run {
        let out = tempfile::NamedTempFile::new().unwrap();
        let err = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command {
            args: std::iter::once("app.wasm").chain(args.iter().copied()).map(String::from).collect(),
            env: vec![("FABRICKS_TEST".into(), "from-the-test".into())],
            cwd: "/".into(),
            stdout: Stdio::File(out.reopen().unwrap()),
            stderr: Stdio::File(err.reopen().unwrap()),
            ..Default::default()
        };
        let mut network = Network::default();
        tweak(&mut cmd, &mut network, &stop);
        let status = self.engine.run_program(&self.program, cmd, &network, &stop).unwrap();
        Run { status, stdout: read(&out), stderr: read(&err) }
    }
}

fn read(file: &tempfile::NamedTempFile) -> String {
    let mut text = String::new();
    file.reopen().unwrap().read_to_string(&mut text).unwrap();
    text
}

fn no_change(_: &mut Command, _: &mut Network, _: &Stopper) {}

fn stop_after(stop: &Stopper, delay: Duration, signal: i32) {
    let stop = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        stop.stop(signal);
    });
}

#[test]
fn runwasi_hello_world_runs_as_a_command() {
    let Some(wasm) = built("component-hello-world.wasm") else { return };
    let fixture = Fixture::new(&wasm);
    let Program::Component(component) = &fixture.program else { panic!("loaded as a module") };
    assert_eq!(component.kind(), ComponentKind::Command);
    let run = fixture.run(&[], no_change);
    assert_eq!(run.status, 0, "stderr: {}", run.stderr);
    assert!(run.stdout.to_lowercase().contains("hello"), "stdout: {:?}", run.stdout);
}

#[test]
fn python_and_js_commands_see_args_and_env_and_exit_with_their_code() {
    for name in ["py-cli.wasm", "js-cli.wasm"] {
        let Some(wasm) = built(name) else { return };
        let fixture = Fixture::new(&wasm);
        let run = fixture.run(&["exit", "3"], no_change);
        assert_eq!(run.status, 3, "{name} stderr: {}", run.stderr);
        assert!(run.stdout.contains("hello from componentize-"), "{name}: {:?}", run.stdout);
        assert!(run.stdout.contains("args: exit 3"), "{name}: {:?}", run.stdout);
        assert!(run.stdout.contains("env FABRICKS_TEST: from-the-test"), "{name}: {:?}", run.stdout);
        assert_eq!(fixture.run(&[], no_change).status, 0, "{name} without a verb");
    }
}

#[test]
fn a_trap_is_134_with_the_trap_on_stderr() {
    let Some(wasm) = built("py-cli.wasm") else { return };
    let run = Fixture::new(&wasm).run(&["trap"], no_change);
    assert_eq!(run.status, TRAP_EXIT_CODE, "stdout: {} stderr: {}", run.stdout, run.stderr);
    assert!(run.stderr.contains("Error: app.wasm trapped:"), "{}", run.stderr);
}

#[test]
fn an_uncaught_js_exception_fails_the_command() {
    let Some(wasm) = built("js-cli.wasm") else { return };
    let run = Fixture::new(&wasm).run(&["throw"], no_change);
    // componentize-js 0.23 prints nothing about the exception; the run fails (its `run`
    // returns err: 1) or StarlingMonkey aborts (a trap: 134).
    assert!([1, TRAP_EXIT_CODE].contains(&run.status), "status {} stderr: {}", run.status, run.stderr);
    println!("js-cli throw: status {}, stderr {:?}", run.status, run.stderr);
}

#[test]
fn a_stop_ends_a_spinning_command_with_128_plus_the_signal() {
    for name in ["py-cli.wasm", "js-cli.wasm"] {
        let Some(wasm) = built(name) else { return };
        let run =
            Fixture::new(&wasm).run(&["spin"], |_, _, stop| stop_after(stop, Duration::from_millis(300), SIGTERM));
        assert_eq!(run.status, 128 + SIGTERM, "{name}: {}", run.stderr);
    }
}

#[test]
fn a_kill_ends_a_command_waiting_in_a_host_call_at_once() {
    let Some(wasm) = built("py-cli.wasm") else { return };
    let started = Instant::now();
    let run =
        Fixture::new(&wasm).run(&["sleep", "600"], |_, _, stop| stop_after(stop, Duration::from_millis(300), SIGKILL));
    assert_eq!(run.status, 128 + SIGKILL, "{}", run.stderr);
    println!("sleeping command killed after {:?} (stop sent at 300 ms)", started.elapsed());
}

#[test]
fn memory_past_the_limit_is_137_with_the_reason() {
    let Some(wasm) = built("py-cli.wasm") else { return };
    let limit = MemoryLimit::bytes(96 << 20);
    let seen = limit.clone();
    let run = Fixture::new(&wasm).run(&["grow"], move |cmd, _, _| cmd.memory = limit);
    assert_eq!(run.status, OOM_EXIT_CODE, "{}", run.stderr);
    assert!(seen.exceeded(), "the shim publishes TaskOOM from this");
    assert!(run.stderr.contains("fabricks: app.wasm: out of memory"), "{}", run.stderr);
    assert!(run.stderr.contains("memory limit of 96.0 MiB"), "{}", run.stderr);
}

#[test]
fn the_rootfs_is_the_guests_root() {
    let Some(wasm) = built("py-cli.wasm") else { return };
    let rootfs = tempfile::tempdir().unwrap();
    std::fs::write(rootfs.path().join("marker-file"), "x").unwrap();
    let dirs = vec![Preopen { host: rootfs.path().to_path_buf(), guest: "/".into() }];
    let run = Fixture::new(&wasm).run(&["ls", "/"], move |cmd, _, _| cmd.dirs = dirs);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stdout.contains("ls: marker-file"), "{}", run.stdout);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_declared_port_can_be_bound_and_serves_until_the_stop_closes_it() {
    let Some(wasm) = built("py-cli.wasm") else { return };
    let port = free_port();
    let fixture = Fixture::new(&wasm);
    let stop = Stopper::new();
    let probe = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            let connected = loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break true;
                }
                if Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            stop.stop(SIGTERM);
            connected
        })
    };
    let declared = Network::new(vec![format!("0.0.0.0:{port}").parse().unwrap()]);
    let run = fixture.run_stopped(&["bind", &port.to_string()], stop, move |_, network, _| *network = declared);
    assert!(probe.join().unwrap(), "nothing listened on the declared port; stderr: {}", run.stderr);
    assert_eq!(run.status, 128 + SIGTERM, "{}", run.stderr);
    assert!(run.stdout.contains(&format!("listening on {port}")), "{}", run.stdout);
    // The store is gone with the run: so is the listener.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "the component's listener outlived it");
}

#[test]
fn an_undeclared_port_is_refused_with_a_clear_error() {
    let Some(wasm) = built("py-cli.wasm") else { return };
    let port = free_port();
    let run = Fixture::new(&wasm).run(&["bind", &port.to_string()], |_, network, _| {
        *network = Network::new(vec!["0.0.0.0:1".parse().unwrap()]);
    });
    assert_eq!(run.status, 3, "the guest saw the bind fail; stderr: {}", run.stderr);
    assert!(run.stderr.contains(&format!("refused to bind TCP 0.0.0.0:{port}")), "{}", run.stderr);
    assert!(run.stderr.contains("fabricks.io/listen"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("bind {port} failed")), "{}", run.stderr);
}

#[test]
fn a_component_compiles_once_and_loads_from_the_cache_after() {
    let Some(wasm) = built("js-cli.wasm") else { return };
    let cache = tempfile::tempdir().unwrap();
    let options = || EngineOptions { cache_dir: cache.path().to_path_buf(), compiler: Compiler::InProcess };
    let first = Engine::new(options()).unwrap();
    let (_, pin) = first.load_program_pinned(&wasm, fabricks_engine::FirstStart::Optimized).unwrap();
    assert_eq!(first.cache().compiles(), 1);
    assert!(pin.path().to_string_lossy().ends_with(".component.cwasm"), "{}", pin.path().display());
    let second = Engine::new(options()).unwrap();
    second.load_program(&wasm).unwrap();
    assert_eq!(second.cache().compiles(), 0, "the second start compiled");
}
