//! The task service's lifecycle rules against a recording event sink and a scripted
//! workload (the unit boundary: real workloads are tested in `node.rs`, the engine's and the
//! end-to-end suites).

use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use super::*;
use containerd_shim::protos::ttrpc::Code;

/// What the service published, in order: (topic, container id, exit status).
#[derive(Default)]
struct Recorder(Mutex<Vec<(&'static str, String, u32)>>);

impl Events for Arc<Recorder> {
    fn publish(&self, event: TaskEvent) {
        let entry = match event {
            TaskEvent::Create(e) => ("create", e.container_id, 0),
            TaskEvent::Start(e) => ("start", e.container_id, 0),
            TaskEvent::Oom(e) => ("oom", e.container_id, 0),
            TaskEvent::Exit(e) => ("exit", e.container_id, e.exit_status),
            TaskEvent::Delete(e) => ("delete", e.container_id, e.exit_status),
        };
        self.0.lock().unwrap().push(entry);
    }
}

impl Recorder {
    fn topics(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().iter().map(|(t, ..)| *t).collect()
    }

    fn exits(&self) -> Vec<u32> {
        self.0.lock().unwrap().iter().filter(|(t, ..)| *t == "exit").map(|(.., code)| *code).collect()
    }

    /// The exits once the first is published: a `Wait` answers when the exit is recorded and
    /// the event follows (as in runc's shim; containerd relies on neither order). The bound
    /// only keeps a lost event from hanging the test.
    fn exits_once_published(&self) -> Vec<u32> {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.exits().is_empty() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.exits()
    }
}

/// How a scripted workload behaves.
#[derive(Clone, Copy, Default)]
struct Script {
    /// Ends by itself right after start, with this.
    ends: Option<Ended>,
    /// A hard kill ends it (it reports `128 + signal` at once) unless it is stuck.
    stuck: bool,
    /// Kills are delivered to something that reports its own exit (a runc process).
    native: bool,
}

struct Scripted {
    script: Script,
    exited: Mutex<Option<ExitSink>>,
    deleted: AtomicBool,
}

impl Scripted {
    fn end(&self, ended: Ended) {
        if let Some(sink) = self.exited.lock().unwrap().take() {
            sink(ended);
        }
    }
}

impl Workload for Arc<Scripted> {
    fn pid(&self) -> u32 {
        4242
    }

    fn start(&self) -> Result<()> {
        if let Some(ended) = self.script.ends {
            self.end(ended);
        }
        Ok(())
    }

    fn kill(&self, signal: u32, _all: bool) -> Result<Kill> {
        if self.script.native {
            self.end(Ended { code: 128 + signal, out_of_memory: false });
            return Ok(Kill::Delivered);
        }
        if !self.script.stuck {
            self.end(Ended { code: 128 + signal, out_of_memory: false });
        }
        Ok(Kill::Ending)
    }

    fn delete(&self) -> Result<()> {
        assert!(!self.deleted.swap(true, Ordering::SeqCst), "deleted twice");
        Ok(())
    }

    fn metrics(&self) -> Result<Metrics> {
        Ok(Metrics::default())
    }
}

/// Creates workloads from the script; a bundle named `bad` fails as bad input would.
#[derive(Default)]
struct Scripts {
    next: Mutex<Script>,
    made: Mutex<Vec<Arc<Scripted>>>,
}

impl Runtime for Arc<Scripts> {
    type Workload = Arc<Scripted>;

    fn create(&self, req: &CreateTaskRequest, _spec: &ContainerSpec, exited: ExitSink) -> Result<Arc<Scripted>> {
        if req.id == "bad" {
            return Err(invalid("the entrypoint /x.wasm does not exist in the image"));
        }
        if req.id == "broken" {
            anyhow::bail!("mounting the rootfs: permission denied");
        }
        let workload = Arc::new(Scripted {
            script: *self.next.lock().unwrap(),
            exited: Mutex::new(Some(exited)),
            deleted: AtomicBool::new(false),
        });
        self.made.lock().unwrap().push(workload.clone());
        Ok(workload)
    }
}

struct Fixture {
    service: Service<Arc<Recorder>, Arc<Scripts>>,
    events: Arc<Recorder>,
    scripts: Arc<Scripts>,
    idle: Arc<AtomicBool>,
    bundle: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let bundle = tempfile::tempdir().unwrap();
    std::fs::write(
        bundle.path().join("config.json"),
        r#"{"ociVersion":"1.0.2","process":{"args":["/m.wasm"],"cwd":"/","user":{"uid":0,"gid":0}}}"#,
    )
    .unwrap();
    let (events, scripts, idle) =
        (Arc::new(Recorder::default()), Arc::new(Scripts::default()), Arc::new(AtomicBool::new(false)));
    let flag = idle.clone();
    let mut service = Service::new(events.clone(), scripts.clone(), move || flag.store(true, Ordering::SeqCst));
    service.stop_grace = Duration::from_millis(50);
    Fixture { service, events, scripts, idle, bundle }
}

impl Fixture {
    fn create(&self, id: &str, script: Script) -> Reply<CreateTaskResponse> {
        *self.scripts.next.lock().unwrap() = script;
        let req =
            CreateTaskRequest { id: id.into(), bundle: self.bundle.path().display().to_string(), ..Default::default() };
        self.service.create_task(&req)
    }

    fn start(&self, id: &str) -> Reply<StartResponse> {
        self.service.start_task(&StartRequest { id: id.into(), ..Default::default() })
    }

    fn kill(&self, id: &str, signal: u32) -> Reply<()> {
        self.service.kill_task(&KillRequest { id: id.into(), signal, ..Default::default() })
    }

    fn delete(&self, id: &str) -> Reply<DeleteResponse> {
        self.service.delete_task(&DeleteRequest { id: id.into(), ..Default::default() })
    }

    fn status(&self, id: &str) -> (Status, u32) {
        let state = self.service.task_state(&StateRequest { id: id.into(), ..Default::default() }).unwrap();
        (state.status.enum_value_or_default(), state.exit_status)
    }

    fn wait(&self, id: &str) -> u32 {
        self.service.wait_task(&WaitRequest { id: id.into(), ..Default::default() }).unwrap().exit_status
    }
}

fn code<T: std::fmt::Debug>(reply: Reply<T>) -> Code {
    reply.unwrap_err().code()
}

#[test]
fn a_task_runs_to_its_exit_and_is_deleted() {
    let f = fixture();
    let ends = Some(Ended { code: 3, out_of_memory: false });
    assert_eq!(f.create("t1", Script { ends, ..Default::default() }).unwrap().pid, 4242);
    assert_eq!(f.status("t1").0, Status::CREATED);
    f.start("t1").unwrap();
    assert_eq!(f.wait("t1"), 3);
    assert_eq!(f.status("t1"), (Status::STOPPED, 3));
    assert_eq!(f.delete("t1").unwrap().exit_status, 3);
    assert_eq!(f.events.topics(), ["create", "start", "exit", "delete"]);
    assert_eq!(code(f.delete("t1")), Code::NOT_FOUND);
}

#[test]
fn kill_before_start_ends_the_task_at_once() {
    let f = fixture();
    f.create("t1", Script { stuck: true, ..Default::default() }).unwrap();
    f.kill("t1", 9).unwrap();
    assert_eq!(f.status("t1"), (Status::STOPPED, 137));
    assert_eq!(code(f.start("t1")), Code::FAILED_PRECONDITION);
    f.delete("t1").unwrap();
    assert_eq!(f.events.topics(), ["create", "exit", "delete"]);
}

#[test]
fn the_exit_is_reported_once() {
    let f = fixture();
    f.create("t1", Script::default()).unwrap();
    f.start("t1").unwrap();
    // The kill ends it (the workload reports 137); later kills and the workload's own late
    // report change nothing.
    f.kill("t1", 9).unwrap();
    f.kill("t1", 15).unwrap();
    f.scripts.made.lock().unwrap()[0].end(Ended { code: 0, out_of_memory: false });
    std::thread::sleep(f.service.stop_grace * 3);
    assert_eq!(f.events.exits(), [137]);
    assert_eq!(f.wait("t1"), 137);
}

#[test]
fn a_stuck_task_is_reported_stopped_after_the_grace_period() {
    let f = fixture();
    f.create("t1", Script { stuck: true, ..Default::default() }).unwrap();
    f.start("t1").unwrap();
    f.kill("t1", 9).unwrap();
    assert_eq!(f.wait("t1"), 137);
    assert_eq!(f.events.exits_once_published(), [137]);
    // The thread finishing later does not report again.
    f.scripts.made.lock().unwrap()[0].end(Ended { code: 0, out_of_memory: false });
    assert_eq!(f.events.exits(), [137]);
}

#[test]
fn a_native_kill_leaves_the_exit_to_the_process() {
    let f = fixture();
    f.create("p", Script { native: true, ..Default::default() }).unwrap();
    f.start("p").unwrap();
    f.kill("p", 15).unwrap();
    assert_eq!(f.wait("p"), 143);
    assert_eq!(f.events.exits_once_published(), [143]);
}

#[test]
fn oom_is_published_before_the_exit() {
    let f = fixture();
    f.create("t1", Script { ends: Some(Ended { code: 137, out_of_memory: true }), ..Default::default() }).unwrap();
    f.start("t1").unwrap();
    assert_eq!(f.events.topics(), ["create", "start", "oom", "exit"]);
}

#[test]
fn a_running_task_cannot_be_deleted() {
    let f = fixture();
    f.create("t1", Script::default()).unwrap();
    f.start("t1").unwrap();
    let err = f.delete("t1").unwrap_err();
    assert_eq!(err.code(), Code::FAILED_PRECONDITION);
    assert!(err.message().contains("still running"), "{}", err.message());
    assert!(!f.scripts.made.lock().unwrap()[0].deleted.load(Ordering::SeqCst));
    f.kill("t1", 9).unwrap();
    f.wait("t1");
    f.delete("t1").unwrap();
}

#[test]
fn a_second_create_of_an_id_is_refused_and_leaves_the_first_alone() {
    let f = fixture();
    f.create("t1", Script { ends: Some(Ended { code: 5, out_of_memory: false }), ..Default::default() }).unwrap();
    let err = f.create("t1", Script::default()).unwrap_err();
    assert_eq!(err.code(), Code::ALREADY_EXISTS);
    assert_eq!(f.scripts.made.lock().unwrap().len(), 1, "the runtime was asked to create it again");
    f.start("t1").unwrap();
    assert_eq!(f.wait("t1"), 5);
}

#[test]
fn errors_carry_the_right_codes() {
    let f = fixture();
    assert_eq!(code(f.start("nope")), Code::NOT_FOUND);
    assert_eq!(code(f.kill("nope", 9)), Code::NOT_FOUND);
    let bad = f.create("bad", Script::default()).unwrap_err();
    assert_eq!(bad.code(), Code::INVALID_ARGUMENT);
    assert!(bad.message().contains("does not exist in the image"), "{}", bad.message());
    assert_eq!(code(f.create("broken", Script::default())), Code::INTERNAL);
    // A failed create leaves nothing: the id can be used again.
    assert_eq!(code(f.start("bad")), Code::NOT_FOUND);
    f.create("t1", Script::default()).unwrap();
    let exec = StartRequest { id: "t1".into(), exec_id: "e1".into(), ..Default::default() };
    assert_eq!(code(f.service.start_task(&exec)), Code::UNIMPLEMENTED);
    let terminal = CreateTaskRequest {
        id: "tty".into(),
        bundle: f.bundle.path().display().to_string(),
        terminal: true,
        ..Default::default()
    };
    assert_eq!(code(f.service.create_task(&terminal)), Code::INVALID_ARGUMENT);
}

#[test]
fn shutdown_waits_for_the_last_task() {
    let f = fixture();
    f.create("t1", Script { ends: Some(Ended { code: 0, out_of_memory: false }), ..Default::default() }).unwrap();
    f.service.shutdown_if_idle();
    assert!(!f.idle.load(Ordering::SeqCst));
    f.start("t1").unwrap();
    f.wait("t1");
    f.delete("t1").unwrap();
    f.service.shutdown_if_idle();
    assert!(f.idle.load(Ordering::SeqCst));
}
