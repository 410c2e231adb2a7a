//! Restarting the host's containerd (or the k3s/RKE2 service that runs it) so it reads the
//! edited config. The installer runs in a pod with `hostPID: true`: the restart runs in the
//! mount namespace of the host's PID 1, where `systemctl` talks to the host's systemd
//! (`systemctl` refuses to act from a chroot).

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

/// Runs `script` with the host's `/bin/sh` in the host's mount namespace.
fn host_sh(script: &str) -> Result<Output> {
    let ns = File::open("/proc/1/ns/mnt")
        .context("opening /proc/1/ns/mnt; the installer pod needs hostPID: true and privileged: true")?;
    let mut command = Command::new("/bin/sh");
    command.args(["-c", script]);
    // SAFETY: between fork and exec only async-signal-safe calls (setns, chdir) run.
    unsafe {
        command.pre_exec(move || {
            setns(&ns, CloneFlags::CLONE_NEWNS).map_err(std::io::Error::from)?;
            nix::unistd::chdir("/").map_err(std::io::Error::from)
        });
    }
    command.output().context("running /bin/sh in the host's mount namespace")
}

/// Restarts the first of `units` that is active on the host.
pub fn restart(units: &[&str]) -> Result<()> {
    for unit in units {
        let active = host_sh(&format!("systemctl is-active --quiet {unit}"))?;
        if !active.status.success() {
            log::debug!("{unit} is not active");
            continue;
        }
        log::info!("restarting {unit} on the host");
        let out = host_sh(&format!("systemctl restart {unit}"))?;
        if !out.status.success() {
            bail!(
                "`systemctl restart {unit}` failed on the host: {}; check `journalctl -u {unit}` there",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        return Ok(());
    }
    bail!(
        "none of {} is an active systemd unit on the host; restart containerd by hand, or run with --no-restart",
        units.join(", ")
    )
}
