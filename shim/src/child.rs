//! Child processes of the shim. The shim is a subreaper whose reaper thread collects every
//! exit, so a child's status arrives through containerd-shim's exit monitor, never through
//! `Child::wait` (which would race the reaper and see ECHILD).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use containerd_shim::monitor::{monitor_subscribe, wait_pid, Subscription, Topic};

/// Set in a process without the shim's reaper (a runner): its children are waited for
/// directly.
static WAIT_DIRECTLY: AtomicBool = AtomicBool::new(false);

/// Makes [`run`] wait for its children itself: for a process with no reaper thread.
pub fn wait_directly() {
    WAIT_DIRECTLY.store(true, Ordering::SeqCst);
}

/// Runs `cmd` to completion with `input` on stdin; returns its stderr, or an error naming
/// `what` with the child's own message when it fails.
pub fn run(mut cmd: Command, input: &[u8], what: &str) -> Result<String> {
    let exits = if WAIT_DIRECTLY.load(Ordering::SeqCst) { None } else { Some(subscribe()?) };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A child that fails early closes its stdin; its stderr then says why.
    let _ = stdin.write_all(input);
    drop(stdin);
    let mut stderr = String::new();
    let _ = child.stderr.take().expect("piped stderr").read_to_string(&mut stderr);
    let code = match exits {
        Some(exits) => wait_pid(child.id() as i32, exits),
        None => {
            use std::os::unix::process::ExitStatusExt;
            let status = child.wait().with_context(|| format!("waiting for {what}"))?;
            status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
        }
    };
    if code != 0 {
        return Err(Failed { what: what.into(), code, stderr: stderr.trim().into() }.into());
    }
    Ok(stderr)
}

/// A child that ran and failed: its status and what it said.
#[derive(Debug)]
pub struct Failed {
    pub what: String,
    pub code: i32,
    pub stderr: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed (status {}): {}", self.what, self.code, self.stderr)
    }
}

impl std::error::Error for Failed {}

/// Subscribes to child exits; take it before spawning so an early exit is not missed.
pub fn subscribe() -> Result<Subscription> {
    monitor_subscribe(Topic::Pid).map_err(|e| anyhow::anyhow!("subscribing to child exits: {e}"))
}

/// Marks every descriptor from `first` on close-on-exec. The shim's own descriptors (its
/// ttrpc listener, the log FIFO) are inherited otherwise: a compile or a runner that outlives
/// the shim would keep a dead pod shim's socket accepting connections nobody answers, and a
/// runner would hold what its guest must not reach.
/// Async-signal-safe: it runs between fork and exec.
pub fn close_on_exec_from(first: libc::c_int) {
    // SAFETY: close_range only changes descriptor flags; fcntl on a closed fd fails harmlessly.
    unsafe {
        if libc::close_range(first as libc::c_uint, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) == 0 {
            return;
        }
        // Kernels before 5.11: one descriptor at a time, up to the soft limit.
        let max = match libc::sysconf(libc::_SC_OPEN_MAX) {
            n if n > 0 => n.min(1 << 16) as libc::c_int,
            _ => 1024,
        };
        for fd in first..max {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}
