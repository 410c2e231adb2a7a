//! Child processes of the shim. The shim is a subreaper whose reaper thread collects every
//! exit, so a child's status arrives through containerd-shim's exit monitor, never through
//! `Child::wait` (which would race the reaper and see ECHILD).

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use containerd_shim::monitor::{monitor_subscribe, wait_pid, Subscription, Topic};

/// Runs `cmd` to completion with `input` on stdin; returns its stderr, or an error naming
/// `what` with the child's own message when it fails.
pub fn run(mut cmd: Command, input: &[u8], what: &str) -> Result<String> {
    let exits = subscribe()?;
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
    let code = wait_pid(child.id() as i32, exits);
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
