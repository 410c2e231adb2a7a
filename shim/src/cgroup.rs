//! cgroup v1 placement of a wasm container: its runner process goes into the container's
//! `cpu` and `cpuacct` cgroups, so CPU limits (shares, quota) apply to it and its CPU time
//! is accounted to it. Memory is capped on the module's linear memory
//! (`fabricks_engine::MemoryLimit`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::invalid;
use crate::spec::ContainerSpec;

const CONTROLLERS: &[&str] = &["cpu", "cpuacct"];

/// The container's cgroups (one directory per controller), created at create time.
pub struct Cgroup {
    /// (controller, directory of the container's cgroup)
    dirs: Vec<(&'static str, PathBuf)>,
}

impl Cgroup {
    /// Creates the container's cgroups from `linux.cgroupsPath` (ctr: `/<ns>/<id>`; CRI with
    /// cgroupfs: `/k8s.io/<id>` or the pod's parent) and applies its CPU limits. `None` on a
    /// host without cgroup v1 `cpu`/`cpuacct` hierarchies.
    pub fn create(spec: &ContainerSpec, namespace: &str, id: &str) -> Result<Option<Self>> {
        let path = cgroups_path(spec, namespace, id)?;
        let mut dirs = Vec::new();
        for controller in CONTROLLERS {
            let Some(mount) = mount_point(controller)? else { continue };
            let dir = mount.join(&path);
            fs::create_dir_all(&dir).with_context(|| format!("creating cgroup {}", dir.display()))?;
            dirs.push((*controller, dir));
        }
        if dirs.is_empty() {
            log::warn!("no cgroup v1 cpu/cpuacct hierarchy: container {id} runs in the shim's cgroup");
            return Ok(None);
        }
        let cgroup = Self { dirs };
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
        self.dirs.iter().find(|(c, _)| *c == controller).map(|(_, d)| d.as_path())
    }

    /// Moves process `pid`, every thread of it, into the container's cgroups.
    pub fn adopt(&self, pid: u32) -> Result<()> {
        for (_, dir) in &self.dirs {
            let procs = dir.join("cgroup.procs");
            fs::write(&procs, pid.to_string()).with_context(|| format!("moving pid {pid} into {}", procs.display()))?;
        }
        Ok(())
    }

    /// Removes the directories (the kernel refuses while a process is inside: its runner
    /// is reaped first).
    pub fn delete(&self) {
        self.remove();
    }

    fn remove(&self) {
        for (_, dir) in &self.dirs {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cgroup {} not removed: {e}", dir.display()),
            }
        }
    }

    /// CPU time used by the container's runner, in nanoseconds.
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
