//! cgroup v1 placement of a wasm container: its module thread goes into the container's
//! `cpu` and `cpuacct` cgroups, so CPU limits (shares, quota) apply to it and its CPU time
//! is accounted to it.
//!
//! Only those controllers: cgroup v1 lets single threads join them (`tasks`), while memory,
//! pids and the others charge the whole process — the shim, shared by the pod. Memory is
//! capped on the module's linear memory instead (`fabricks_engine::MemoryLimit`).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use anyhow::{Context, Result};

use crate::error::invalid;
use crate::spec::ContainerSpec;

const CONTROLLERS: &[&str] = &["cpu", "cpuacct"];

/// The container's cgroups (one directory per controller), created at create time.
pub struct Cgroup {
    /// (controller, directory of the container's cgroup, directory the thread came from)
    dirs: Vec<(&'static str, PathBuf, PathBuf)>,
    /// Set by delete: the thread that leaves last removes the directories.
    deleted: AtomicBool,
    /// The module thread inside (0: none yet).
    tid: AtomicI64,
}

impl Cgroup {
    /// Creates the container's cgroups from `linux.cgroupsPath` (ctr: `/<ns>/<id>`; CRI with
    /// cgroupfs: `/k8s.io/<id>` or the pod's parent) and applies its CPU limits. `None` on a
    /// host without cgroup v1 `cpu`/`cpuacct` hierarchies.
    pub fn create(spec: &ContainerSpec, namespace: &str, id: &str) -> Result<Option<Self>> {
        let path = cgroups_path(spec, namespace, id)?;
        let origin = own_cgroups()?;
        let mut dirs = Vec::new();
        for controller in CONTROLLERS {
            let Some(mount) = mount_point(controller)? else { continue };
            let dir = mount.join(&path);
            fs::create_dir_all(&dir).with_context(|| format!("creating cgroup {}", dir.display()))?;
            let from = mount.join(
                origin.iter().find(|(c, _)| c == controller).map_or("", |(_, p)| p.as_str()).trim_start_matches('/'),
            );
            dirs.push((*controller, dir, from));
        }
        if dirs.is_empty() {
            log::warn!("no cgroup v1 cpu/cpuacct hierarchy: container {id} runs in the shim's cgroup");
            return Ok(None);
        }
        let cgroup = Self { dirs, deleted: AtomicBool::new(false), tid: AtomicI64::new(0) };
        if let Err(e) = cgroup.apply_cpu(spec) {
            cgroup.remove();
            return Err(e);
        }
        Ok(Some(cgroup))
    }

    /// Removes the cgroups of a container whose shim died (its threads died with it).
    pub fn remove_after_crash(spec: &ContainerSpec, namespace: &str, id: &str) -> Result<()> {
        let path = cgroups_path(spec, namespace, id)?;
        for controller in CONTROLLERS {
            if let Some(mount) = mount_point(controller)? {
                let dir = mount.join(&path);
                match fs::remove_dir(&dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e).with_context(|| format!("removing cgroup {}", dir.display()));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn apply_cpu(&self, spec: &ContainerSpec) -> Result<()> {
        let Some(dir) = self.dir("cpu") else { return Ok(()) };
        // Period before quota: the kernel checks the quota against the current period.
        // (Zero values, which ctr writes for "not set", are already left out of the spec.)
        let cpu = &spec.cpu;
        let settings = [
            ("cpu.shares", cpu.shares.map(|v| v.to_string())),
            ("cpu.cfs_period_us", cpu.period.map(|v| v.to_string())),
            ("cpu.cfs_quota_us", cpu.quota.map(|v| v.to_string())),
        ];
        for (file, value) in settings {
            if let Some(value) = value {
                let path = dir.join(file);
                fs::write(&path, &value).with_context(|| format!("setting {} to {value}", path.display()))?;
            }
        }
        Ok(())
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs.iter().find(|(c, ..)| *c == controller).map(|(_, d, _)| d.as_path())
    }

    /// Moves the calling thread into the container's cgroups.
    pub fn enter(&self) -> Result<()> {
        let tid = gettid();
        self.tid.store(tid, Ordering::SeqCst);
        for (_, dir, _) in &self.dirs {
            let tasks = dir.join("tasks");
            fs::write(&tasks, tid.to_string())
                .with_context(|| format!("moving thread {tid} into {}", tasks.display()))?;
        }
        Ok(())
    }

    /// Moves the calling thread back where it came from, so the cgroups can be removed
    /// (rmdir fails while a thread is inside); removes them if the task was deleted already.
    pub fn leave(&self) {
        self.move_out(gettid());
        if self.deleted.load(Ordering::SeqCst) {
            self.remove();
        }
    }

    fn move_out(&self, tid: i64) {
        for (_, dir, from) in &self.dirs {
            if let Err(e) = fs::write(from.join("tasks"), tid.to_string()) {
                log::warn!("moving thread {tid} out of {}: {e}", dir.display());
            }
        }
    }

    /// Removes the directories. A module thread still inside (blocked in a host call after
    /// a kill, e.g. a long sleep) is moved out first: it may outlive the task by minutes,
    /// or the shim may exit with it inside, which would leave the directories behind.
    pub fn delete(&self) {
        self.deleted.store(true, Ordering::SeqCst);
        let tid = self.tid.load(Ordering::SeqCst);
        if tid != 0 && Path::new(&format!("/proc/self/task/{tid}")).exists() {
            self.move_out(tid);
        }
        self.remove();
    }

    fn remove(&self) {
        for (_, dir, _) in &self.dirs {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::debug!("cgroup {} not removed yet: {e}", dir.display()),
            }
        }
    }

    /// CPU time used by the container's threads, in nanoseconds.
    pub fn cpu_usage_ns(&self) -> Result<u64> {
        let dir = self.dir("cpuacct").context("no cpuacct cgroup")?;
        let path = dir.join("cpuacct.usage");
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        text.trim().parse().with_context(|| format!("parsing {}", path.display()))
    }
}

/// The container's cgroup under a hierarchy's mount point (ctr's default when the spec
/// names none).
fn cgroups_path(spec: &ContainerSpec, namespace: &str, id: &str) -> Result<PathBuf> {
    relative(&spec.cgroups_path.clone().unwrap_or_else(|| format!("/{namespace}/{id}").into()))
}

/// `linux.cgroupsPath` as a path under a hierarchy's mount point.
fn relative(path: &Path) -> Result<PathBuf> {
    let text = path.to_string_lossy();
    if text.contains(':') {
        return Err(invalid(format!("cgroupsPath {text} is in systemd form (slice:prefix:name); Fabricks supports cgroupfs paths: set SystemdCgroup = false for this runtime")));
    }
    if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(invalid(format!("cgroupsPath {text} contains `..`")));
    }
    Ok(path.strip_prefix("/").unwrap_or(path).to_path_buf())
}

/// Where the v1 hierarchy holding `controller` is mounted.
fn mount_point(controller: &str) -> Result<Option<PathBuf>> {
    let mounts = fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    Ok(mounts.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let has = f.len() > 3 && f[2] == "cgroup" && f[3].split(',').any(|o| o == controller);
        has.then(|| PathBuf::from(f[1]))
    }))
}

/// The calling thread's cgroup per v1 controller, from `/proc/thread-self/cgroup`.
fn own_cgroups() -> Result<Vec<(String, String)>> {
    let text = fs::read_to_string("/proc/thread-self/cgroup").context("reading /proc/thread-self/cgroup")?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        for c in controllers.split(',').filter(|c| !c.is_empty()) {
            out.push((c.to_string(), path.to_string()));
        }
    }
    Ok(out)
}

fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_paths_are_refused_with_the_fix() {
        let err = relative(Path::new("system.slice:cri:abc")).unwrap_err().to_string();
        assert!(err.contains("SystemdCgroup = false"), "{err}");
    }

    #[test]
    fn cgroupfs_paths_become_relative() {
        assert_eq!(relative(Path::new("/k8s.io/abc")).unwrap(), PathBuf::from("k8s.io/abc"));
        assert!(relative(Path::new("/a/../../etc")).is_err());
    }
}
