//! The node as the installer sees it: its root filesystem mounted at `root` (the chart mounts
//! it at /host; tests use a scratch directory), which config it runs containerd with, and
//! which containerd version it has.

use crate::config;
use crate::k3s::Distro;
use anyhow::{bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DEFAULT_CONFIG: &str = "/etc/containerd/config.toml";

pub struct Host {
    pub root: PathBuf,
}

impl Host {
    /// Where the host's `path` (absolute on the host) is seen from here.
    pub fn path(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The host path of containerd's config: `given`, else RKE2's or k3s's if their agent
    /// directory exists, else containerd's default.
    pub fn config_path(&self, given: Option<&Path>) -> PathBuf {
        if let Some(path) = given {
            return path.to_owned();
        }
        for distro in [Distro::Rke2, Distro::K3s] {
            if self.path(&distro.config_dir()).is_dir() {
                return distro.config_dir().join("config.toml");
            }
        }
        PathBuf::from(DEFAULT_CONFIG)
    }

    /// The major version of the host's `containerd`, asked inside a chroot of the host root.
    pub fn containerd_major(&self) -> Result<u64> {
        let root = self.root.clone();
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "containerd --version"]);
        // SAFETY: between fork and exec only async-signal-safe calls (chroot, chdir) run.
        unsafe {
            command.pre_exec(move || {
                nix::unistd::chroot(&root).map_err(std::io::Error::from)?;
                nix::unistd::chdir("/").map_err(std::io::Error::from)
            });
        }
        let out = command.output().with_context(|| {
            format!("running `containerd --version` in {}; pass --containerd-version instead", self.root.display())
        })?;
        let text = String::from_utf8_lossy(&out.stdout);
        match config::containerd_major(&text) {
            Some(major) => Ok(major),
            None => bail!(
                "cannot tell the host's containerd version from `containerd --version` ({}{}); pass --containerd-version 1 or 2",
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }
}
