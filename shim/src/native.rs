//! Native (ELF) entrypoints, such as a pod's pause container, run under runc exactly as
//! containerd's own runc shim would run them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, Result};
use containerd_shim::monitor::Subscription;

use crate::child;
use crate::service::{Ended, ExitSink};

/// A container whose entrypoint is a native program, run by runc; its exit comes through
/// the shim's exit monitor (the shim is a subreaper).
pub struct NativeTask {
    runc: Arc<Runc>,
    id: String,
    bundle: PathBuf,
    pid: u32,
}

impl NativeTask {
    /// `runc create`; the process's exit is reported to `exited` whenever it comes, even
    /// before a start (a kill of a created container).
    pub fn create(
        runc: Arc<Runc>,
        id: &str,
        bundle: &Path,
        stdio: [Option<File>; 3],
        exited: ExitSink,
    ) -> Result<Self> {
        let (pid, exits) = runc.create(id, bundle, stdio)?;
        let code = move || containerd_shim::monitor::wait_pid(pid as i32, exits) as u32;
        std::thread::spawn(move || exited(Ended { code: code(), out_of_memory: false }));
        Ok(Self { runc, id: id.into(), bundle: bundle.into(), pid })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn start(&self) -> Result<()> {
        self.runc.start(&self.id, &self.bundle)
    }

    pub fn kill(&self, signal: u32, all: bool) -> Result<()> {
        self.runc.kill(&self.id, &self.bundle, signal, all)
    }

    pub fn delete(&self) -> Result<()> {
        self.runc.delete(&self.id, &self.bundle)
    }
}

pub struct Runc {
    root: PathBuf,
}

impl Runc {
    pub fn new(namespace: &str) -> Self {
        Self { root: Path::new("/run/containerd/fabricks/runc").join(namespace) }
    }

    fn command(&self, bundle: &Path) -> Command {
        let mut cmd = Command::new("runc");
        cmd.arg("--root").arg(&self.root).arg("--log").arg(bundle.join("runc.log")).arg("--log-format").arg("json");
        cmd
    }

    /// `runc create`: returns the container's init pid and the exit subscription to wait
    /// on it with. The container's stdio is runc's own, so the FIFOs are passed as such.
    pub fn create(&self, id: &str, bundle: &Path, stdio: [Option<File>; 3]) -> Result<(u32, Subscription)> {
        let exits = child::subscribe()?;
        let pid_file = bundle.join("init.pid");
        let mut cmd = self.command(bundle);
        cmd.args(["create", "--bundle"]).arg(bundle).arg("--pid-file").arg(&pid_file).arg(id);
        let [stdin, stdout, stderr] = stdio;
        cmd.stdin(stdin.map(Stdio::from).unwrap_or_else(Stdio::null));
        cmd.stdout(stdout.map(Stdio::from).unwrap_or_else(Stdio::null));
        cmd.stderr(stderr.map(Stdio::from).unwrap_or_else(Stdio::null));
        let status = spawn_and_wait(cmd, "runc create")?;
        if status != 0 {
            return Err(self.failure("runc create", bundle, status));
        }
        let pid = std::fs::read_to_string(&pid_file).with_context(|| format!("reading {}", pid_file.display()))?;
        Ok((pid.trim().parse().context("runc wrote an invalid pid")?, exits))
    }

    pub fn start(&self, id: &str, bundle: &Path) -> Result<()> {
        self.simple(bundle, &["start", id], "runc start")
    }

    pub fn kill(&self, id: &str, bundle: &Path, signal: u32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.simple(bundle, &args, "runc kill")
    }

    pub fn delete(&self, id: &str, bundle: &Path) -> Result<()> {
        self.simple(bundle, &["delete", "--force", id], "runc delete")
    }

    fn simple(&self, bundle: &Path, args: &[&str], what: &str) -> Result<()> {
        let mut cmd = self.command(bundle);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let status = spawn_and_wait(cmd, what)?;
        if status != 0 {
            return Err(self.failure(what, bundle, status));
        }
        Ok(())
    }

    /// runc's own reason, from the last error line of its JSON log.
    fn failure(&self, what: &str, bundle: &Path, status: i32) -> anyhow::Error {
        let log = std::fs::read_to_string(bundle.join("runc.log")).unwrap_or_default();
        let reason = log
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["level"] == "error")
            .and_then(|v| v["msg"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("exit status {status}"));
        anyhow::anyhow!("{what} failed: {reason}")
    }
}

fn spawn_and_wait(mut cmd: Command, what: &str) -> Result<i32> {
    let exits = child::subscribe()?;
    let child = cmd.spawn().with_context(|| format!("starting {what} (is runc installed on the node?)"))?;
    Ok(containerd_shim::monitor::wait_pid(child.id() as i32, exits))
}
