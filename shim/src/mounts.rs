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

use crate::spec::ContainerSpec;

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

/// The device files every container has, bound from the host's: harmless ones only, as
/// runc's defaults.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

/// Size of the private `/tmp` a container gets when its spec mounts nothing there and sets
/// no memory limit (with one, the limit: tmpfs pages are memory).
const TMP_SIZE: u64 = 256 << 20;

/// Lays out the container's filesystem inside its rootfs as a container runtime would, so
/// the module's `/` pre-open shows it: the spec's tmpfs and bind mounts at their
/// destinations, the usual device files in `/dev`, a private writable `/tmp`, and the
/// rootfs read-only if the spec says so. Other mount types (proc, sysfs, devpts, mqueue,
/// cgroup) have no WASI meaning and are skipped. Everything is mounted below the rootfs,
/// so [`unmount_all`] takes it all away.
pub fn container_filesystem(spec: &ContainerSpec) -> Result<()> {
    let rootfs = &spec.rootfs;
    if spec.readonly_rootfs {
        // A mount of its own, so it can be made read-only below its submounts.
        mount(Some(rootfs), rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .with_context(|| format!("bind-mounting the rootfs {} onto itself", rootfs.display()))?;
    }
    let root = Dir::open_ambient_dir(rootfs, ambient_authority())
        .with_context(|| format!("opening the rootfs {}", rootfs.display()))?;
    for m in &spec.mounts {
        let dest = m.destination();
        let options = m.options().as_deref().unwrap_or_default();
        match kind(m) {
            Kind::Bind => {
                let Some(source) = m.source() else { continue };
                bind_one(&root, source, dest, options)
                    .with_context(|| format!("mounting {} at {}", source.display(), dest.display()))?;
            }
            Kind::Tmpfs => {
                tmpfs_one(&root, dest, options).with_context(|| format!("mounting a tmpfs at {}", dest.display()))?
            }
            Kind::Other => {}
        }
    }
    devices(&root, &spec.mounts)?;
    if !spec.mounts.iter().any(|m| m.destination() == Path::new("/tmp")) {
        let size = format!("size={}", spec.memory_limit.unwrap_or(TMP_SIZE));
        tmpfs_one(&root, Path::new("/tmp"), &["nosuid".into(), "nodev".into(), "mode=1777".into(), size])
            .context("mounting the container's private /tmp")?;
    }
    if spec.readonly_rootfs {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, rootfs, None::<&str>, flags, None::<&str>)
            .with_context(|| format!("making the rootfs {} read-only", rootfs.display()))?;
    }
    Ok(())
}

enum Kind {
    Bind,
    Tmpfs,
    Other,
}

/// Whether `m` binds a host path (its type, or the `bind`/`rbind` option, says so).
pub fn is_bind(m: &Mount) -> bool {
    let options = m.options().as_deref().unwrap_or_default();
    m.typ().as_deref() == Some("bind") || options.iter().any(|o| o == "bind" || o == "rbind")
}

fn kind(m: &Mount) -> Kind {
    if is_bind(m) {
        Kind::Bind
    } else if m.typ().as_deref() == Some("tmpfs") {
        Kind::Tmpfs
    } else {
        Kind::Other
    }
}

/// `/dev/null` and friends, bound from the host's onto files in the container's `/dev`
/// (unless the spec binds something there itself).
fn devices(root: &Dir, mounts: &[Mount]) -> Result<()> {
    root.create_dir_all("dev").context("creating /dev in the rootfs")?;
    for name in DEVICES {
        let dest = Path::new("/dev").join(name);
        if mounts.iter().any(|m| *m.destination() == dest) {
            continue;
        }
        bind_one(root, &Path::new("/dev").join(name), &dest, &[])
            .with_context(|| format!("providing {}", dest.display()))?;
    }
    Ok(())
}

/// A tmpfs at `dest` inside the rootfs; the spec's options (size=, mode=, nosuid, ro…) apply.
fn tmpfs_one(root: &Dir, dest: &Path, options: &[String]) -> Result<()> {
    let relative = dest.strip_prefix("/").unwrap_or(dest);
    root.create_dir_all(relative)?;
    let (flags, data) = tmpfs_options(options);
    let (target, _open) = open_path(root, relative)?;
    mount(Some("tmpfs"), target.as_str(), Some("tmpfs"), flags, Some(data.as_str()))?;
    Ok(())
}

/// Mount flags and the data string tmpfs takes (`size=16m,mode=1777`).
fn tmpfs_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        match option.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "rw" | "exec" | "suid" | "dev" | "atime" | "rprivate" | "private" => {}
            other => data.push(other),
        }
    }
    (flags, data.join(","))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_options_split_into_flags_and_data() {
        let opts: Vec<String> = ["nosuid", "strictatime", "mode=755", "size=65536k", "rw"].map(String::from).into();
        let (flags, data) = tmpfs_options(&opts);
        assert_eq!(flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(data, "mode=755,size=65536k");
    }
}
