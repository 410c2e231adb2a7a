//! The shim's side of a runner: starts it, hands it the task, waits until it is prepared,
//! then asks it to start, signal or report, and reports its exit once the process is gone.

use std::io::{BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use containerd_shim::monitor::{wait_pid, Subscription};

use super::wire::{self, Report, Request, Task, CONTROL_FD};
use crate::cgroup::Cgroup;
use crate::child;
use crate::error::invalid;
use crate::service::{Ended, ExitSink};

/// How long a prepared runner may take to answer a request: it answers from a thread that
/// does nothing else.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// What a runner is started with.
pub struct Launch<'a> {
    pub task: Task,
    pub wasm: &'a [u8],
}

pub struct RunnerTask {
    pid: u32,
    /// One request at a time: a request and its answer.
    control: Mutex<Control>,
    cache_entry: PathBuf,
    cgroup: Option<Cgroup>,
    /// Set once the runner was reaped: its pid may then be another process's.
    reaped: Arc<AtomicBool>,
}

struct Control {
    to: UnixStream,
    answers: mpsc::Receiver<Report>,
}

impl RunnerTask {
    /// Starts the runner and waits until it has prepared the program (compiled, imports
    /// checked, stdio opened, ports bound) or said why it cannot. Then `place` makes the
    /// container's cgroups, which the runner joins as a whole process; `exited` hears of the
    /// program's end once the runner is gone.
    pub fn spawn(launch: Launch, place: impl FnOnce() -> Result<Option<Cgroup>>, exited: ExitSink) -> Result<Self> {
        let id = launch.task.id.clone();
        let (ours, theirs) = UnixStream::pair().context("making the runner's control socket")?;
        let exits = child::subscribe()?;
        let pid = start_process(&theirs)?;
        drop(theirs);
        let reaped = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (answers_tx, answers_rx) = mpsc::channel();
        let (sink_tx, sink_rx) = mpsc::channel::<ExitSink>();
        let from = ours.try_clone().context("duplicating the runner's control socket")?;
        let listener =
            Listener { id: id.clone(), pid, exits, ready: ready_tx, answers: answers_tx, reaped: reaped.clone() };
        std::thread::Builder::new()
            .name(format!("runner-{}", &id[..id.len().min(8)]))
            .spawn(move || listener.listen(from, sink_rx))
            .context("starting the runner's listener thread")?;
        let mut to = ours;
        let handed = wire::send(&mut to, &launch.task).and_then(|()| to.write_all(launch.wasm));
        let mut task = Self {
            pid,
            control: Mutex::new(Control { to, answers: answers_rx }),
            cache_entry: PathBuf::new(),
            cgroup: None,
            reaped,
        };
        // From here a failure drops `task`, which kills the runner.
        handed.context("handing the task to its runner")?;
        let cache_entry = match ready_rx.recv() {
            Ok(Report::Ready { cache_entry }) => cache_entry,
            Ok(Report::Failed { error, invalid: true }) => return Err(invalid(error)),
            Ok(Report::Failed { error, .. }) => return Err(anyhow!(error)),
            Ok(other) => bail!("the runner of {id} said {other:?} before it was ready"),
            Err(_) => {
                bail!("the runner of {id} (pid {pid}) ended before it was ready; the shim log has its last lines")
            }
        };
        task.cache_entry = cache_entry;
        task.cgroup = place()?;
        if let Some(Err(e)) = task.cgroup.as_ref().map(|c| c.adopt(pid)) {
            task.delete();
            return Err(e);
        }
        let _ = sink_tx.send(exited);
        Ok(task)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn cache_entry(&self) -> &Path {
        &self.cache_entry
    }

    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    pub fn start(&self) -> Result<()> {
        match self.request(Request::Start)? {
            Report::Started(started) => started.map_err(|e| anyhow!(e)),
            other => bail!("the runner answered a start with {other:?}"),
        }
    }

    /// True if the signal is ending the program. SIGKILL ends the runner itself, as the
    /// kernel would a process; any other signal is the runner's to deliver.
    pub fn signal(&self, signal: u32) -> bool {
        if signal == libc::SIGKILL as u32 {
            self.kill();
            return true;
        }
        match self.request(Request::Signal(signal)) {
            Ok(Report::Signalled(ending)) => ending,
            Ok(other) => {
                log::warn!("the runner (pid {}) answered a signal with {other:?}", self.pid);
                false
            }
            // Gone already: its exit is being reported.
            Err(e) => {
                log::debug!("signal {signal} to runner {}: {e:#}", self.pid);
                false
            }
        }
    }

    /// Bytes of linear memory the program holds, and its limit; nothing once it is gone.
    pub fn memory(&self) -> (u64, Option<u64>) {
        match self.request(Request::Memory) {
            Ok(Report::Memory { used, limit }) => (used, limit),
            _ => (0, None),
        }
    }

    /// Removes the container's cgroups; a runner never started is ended first.
    pub fn delete(&self) {
        self.kill();
        if let Some(cgroup) = &self.cgroup {
            // The kernel frees a cgroup only once its last process is reaped.
            for _ in 0..100 {
                if self.reaped.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            cgroup.delete();
        }
    }

    fn request(&self, request: Request) -> Result<Report> {
        let control = self.control.lock().unwrap();
        wire::send(&control.to, &request).context("the runner is gone")?;
        control.answers.recv_timeout(ANSWER_WITHIN).map_err(|e| anyhow!("the runner did not answer: {e}"))
    }

    fn kill(&self) {
        if !self.reaped.load(Ordering::SeqCst) {
            // SAFETY: a plain kill of our own unreaped child: its pid cannot be reused yet.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

impl Drop for RunnerTask {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Forks the runner (`zygote`), else execs it, with `control` as its fd 3 and no other
/// descriptor of the shim's.
fn start_process(control: &UnixStream) -> Result<u32> {
    if let Some(forked) = super::zygote::fork_runner(control) {
        return forked;
    }
    let exe = std::env::current_exe().context("locating the shim binary")?;
    let fd = control.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg(super::SUBCOMMAND).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: dup2, fcntl and close_range are async-signal-safe and touch only the child.
    unsafe {
        cmd.pre_exec(move || {
            if fd == CONTROL_FD {
                libc::fcntl(fd, libc::F_SETFD, 0);
            } else if libc::dup2(fd, CONTROL_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            child::close_on_exec_from(CONTROL_FD + 1);
            Ok(())
        });
    }
    let child = cmd.spawn().context("starting the task's runner")?;
    Ok(child.id())
}

/// Reads what the runner says until it is gone, then reports how the program ended.
struct Listener {
    id: String,
    pid: u32,
    exits: Subscription,
    ready: mpsc::Sender<Report>,
    answers: mpsc::Sender<Report>,
    reaped: Arc<AtomicBool>,
}

impl Listener {
    fn listen(self, from: UnixStream, sink: mpsc::Receiver<ExitSink>) {
        let mut from = BufReader::new(from);
        let mut ended = None;
        loop {
            match wire::receive::<Report>(&mut from) {
                Ok(Some(Report::Log { level, text })) => {
                    log::log!(level.parse().unwrap_or(log::Level::Info), "{text}");
                }
                Ok(Some(report @ (Report::Ready { .. } | Report::Failed { .. }))) => {
                    let _ = self.ready.send(report);
                }
                Ok(Some(Report::Exited { code, out_of_memory })) => {
                    ended = Some(Ended { code: code as u32, out_of_memory });
                }
                Ok(Some(answer)) => {
                    let _ = self.answers.send(answer);
                }
                Ok(None) => break,
                Err(e) => {
                    log::warn!("task {}: reading its runner: {e}; ending it", self.id);
                    // SAFETY: our unreaped child.
                    unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
                    break;
                }
            }
        }
        drop((self.ready, self.answers));
        let status = wait_pid(self.pid as i32, self.exits);
        self.reaped.store(true, Ordering::SeqCst);
        // A runner that died without saying how the program ended (killed, crashed) ended
        // with its own status, 128 + the signal, as a process does.
        let ended = ended.unwrap_or(Ended { code: status as u32, out_of_memory: false });
        if ended.code != 0 {
            log::info!("task {}: runner {} exited with status {status}", self.id, self.pid);
        }
        // No sink: the create failed and nothing waits for this task.
        if let Ok(exited) = sink.recv() {
            exited(ended);
        }
    }
}
