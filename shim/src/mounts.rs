//! The container's filesystem on the host: the rootfs snapshot containerd hands over, and
//! the spec's bind mounts placed inside it so the module's `/` preopen shows them.

use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use containerd_shim::protos::types::mount::Mount as RootfsMount;
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

/// Mounts the snapshot layers containerd prepared at `target` (empty: nothing to mount,
/// the bundle's rootfs directory is used as it is).
pub fn mount_rootfs(layers: &[RootfsMount], target: &Path) -> Result<()> {
    for layer in layers {
        let fs_type = (!layer.type_.is_empty()).then_some(layer.type_.as_str());
        let source = (!layer.source.is_empty()).then_some(layer.source.as_str());
        containerd_shim::mount::mount_rootfs(fs_type, source, &layer.options, target)
            .map_err(|e| anyhow!("mounting the rootfs ({}) at {}: {e}", layer.type_, target.display()))?;
    }
    Ok(())
}

/// Detaches everything mounted at or below `target`.
pub fn unmount_all(target: &Path) -> Result<()> {
    let target = target.to_str().context("rootfs path is not UTF-8")?;
    containerd_shim::mount::umount_recursive(Some(target), libc::MNT_DETACH)
        .map_err(|e| anyhow!("unmounting {target}: {e}"))
}

/// Bind-mounts the spec's bind mounts into `rootfs` at their destinations. Other mount
/// types (proc, sysfs, tmpfs, devpts…) have no WASI meaning and are skipped.
pub fn bind_mounts(rootfs: &Path, mounts: &[Mount]) -> Result<()> {
    let root = Dir::open_ambient_dir(rootfs, ambient_authority())
        .with_context(|| format!("opening the rootfs {}", rootfs.display()))?;
    for m in mounts.iter().filter(|m| is_bind(m)) {
        let (Some(source), dest) = (m.source(), m.destination()) else { continue };
        bind_one(&root, source, dest, m.options().as_deref().unwrap_or_default())
            .with_context(|| format!("mounting {} at {}", source.display(), dest.display()))?;
    }
    Ok(())
}

fn is_bind(m: &Mount) -> bool {
    let options = m.options().as_deref().unwrap_or_default();
    m.typ().as_deref() == Some("bind") || options.iter().any(|o| o == "bind" || o == "rbind")
}

fn bind_one(root: &Dir, source: &Path, dest: &Path, options: &[String]) -> Result<()> {
    let relative = dest.strip_prefix("/").unwrap_or(dest);
    // The mount point is created and opened through the rootfs handle, so a symlink in the
    // image cannot redirect the mount onto the host.
    if source.is_dir() {
        root.create_dir_all(relative)?;
    } else {
        if let Some(parent) = relative.parent() {
            root.create_dir_all(parent)?;
        }
        let mut opts = cap_std::fs::OpenOptions::new();
        opts.write(true).create(true);
        root.open_with(relative, &opts)?;
    }
    let mut flags = MsFlags::MS_BIND;
    if options.iter().any(|o| o == "rbind") {
        flags |= MsFlags::MS_REC;
    }
    let (target, _open) = open_path(root, relative)?;
    mount(Some(source), target.as_str(), None::<&str>, flags, None::<&str>)?;
    if options.iter().any(|o| o == "ro") {
        // A bind mount takes the read-only flag only on a remount of the new mount, which
        // a fresh open (crossing into it) reaches.
        let remount = flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        let (target, _open) = open_path(root, relative)?;
        mount(None::<&str>, target.as_str(), None::<&str>, remount, None::<&str>)?;
    }
    Ok(())
}

/// A `/proc/self/fd` path for `relative`, resolved inside the rootfs, with the open file
/// that keeps the path valid.
fn open_path(root: &Dir, relative: &Path) -> Result<(String, std::fs::File)> {
    let file = match root.open_dir(relative) {
        Ok(dir) => dir.into_std_file(),
        Err(_) => root.open(relative)?.into_std(),
    };
    Ok((format!("/proc/self/fd/{}", file.as_raw_fd()), file))
}
