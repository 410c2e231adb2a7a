//! The one typed view of a container's OCI runtime spec (`config.json` in the bundle): read
//! once at create, so the rest of the shim never picks the spec apart itself.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

/// CRI puts every container of a pod in this annotation, so one shim serves the pod.
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// CRI names the container's image in this annotation, which saves a lookup.
pub const CRI_IMAGE_NAME: &str = "io.kubernetes.cri.image-name";

/// Which network namespace the container's sockets belong in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Network {
    /// The spec names no network namespace: the host's (`ctr run --net-host`).
    Host,
    /// The spec asks for a namespace of its own without a path: a new one.
    #[default]
    New,
    /// A namespace that exists (a pod's, made by CRI).
    Path(PathBuf),
}

/// CPU settings of `linux.resources.cpu`; zero or absent values are not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpu {
    pub shares: Option<u64>,
    pub quota: Option<i64>,
    pub period: Option<u64>,
}

impl Cpu {
    /// The CPU limit in CPUs (`quota / period`), if both are set.
    pub fn limit(&self) -> Option<f64> {
        match (self.quota, self.period) {
            (Some(quota), Some(period)) if quota > 0 && period > 0 => Some(quota as f64 / period as f64),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// `process.args`; the first names the program.
    pub args: Vec<String>,
    /// `process.env` as `KEY=VALUE` entries, in order.
    pub env: Vec<String>,
    /// `process.cwd` (empty: `/`).
    pub cwd: String,
    pub annotations: HashMap<String, String>,
    /// The rootfs directory on the host (`root.path`, resolved against the bundle).
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    /// `linux.resources.memory.limit` in bytes, when positive.
    pub memory_limit: Option<u64>,
    pub cpu: Cpu,
    pub network: Network,
    /// `linux.cgroupsPath`, as written.
    pub cgroups_path: Option<PathBuf>,
    pub mounts: Vec<Mount>,
}

impl ContainerSpec {
    /// Reads `config.json` of `bundle`.
    pub fn load(bundle: &Path) -> Result<Self> {
        let path = bundle.join("config.json");
        let spec = Spec::load(&path).with_context(|| format!("reading the bundle's {}", path.display()))?;
        Ok(Self::from_spec(&spec, bundle))
    }

    pub fn from_spec(spec: &Spec, bundle: &Path) -> Self {
        let process = spec.process().clone().unwrap_or_default();
        let linux = spec.linux().clone().unwrap_or_default();
        let resources = linux.resources().clone().unwrap_or_default();
        let cpu = resources.cpu().clone().unwrap_or_default();
        let root = spec.root().as_ref();
        let rootfs = match root.map(|r| r.path()) {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => bundle.join(p),
            None => bundle.join("rootfs"),
        };
        Self {
            args: process.args().clone().unwrap_or_default(),
            env: process.env().clone().unwrap_or_default(),
            cwd: process.cwd().to_string_lossy().into_owned(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            rootfs,
            readonly_rootfs: root.and_then(|r| r.readonly()).unwrap_or(false),
            memory_limit: resources.memory().as_ref().and_then(|m| m.limit()).filter(|&l| l > 0).map(|l| l as u64),
            cpu: Cpu {
                shares: cpu.shares().filter(|&s| s != 0),
                quota: cpu.quota().filter(|&q| q != 0),
                period: cpu.period().filter(|&p| p != 0),
            },
            network: network(spec),
            cgroups_path: linux.cgroups_path().clone(),
            mounts: spec.mounts().clone().unwrap_or_default(),
        }
    }

    /// The program `process.args[0]` names, if any.
    pub fn program(&self) -> Option<&str> {
        self.args.first().map(String::as_str)
    }

    /// The value of environment variable `name`.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    /// The environment as pairs; entries without `=` are dropped.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A Fabricks setting: the annotation (a pod's, passed on by CRI) if set, else the
    /// container's environment variable.
    pub fn setting(&self, annotation: &str, env_var: &str) -> Option<String> {
        self.annotations.get(annotation).cloned().or_else(|| self.env_var(env_var).map(str::to_string))
    }

    /// The pod this container belongs to (CRI), which groups containers onto one shim.
    pub fn sandbox_id(&self) -> Option<&str> {
        self.annotations.get(SANDBOX_ID).map(String::as_str)
    }

    /// The image the container runs, when CRI says.
    pub fn image_name(&self) -> Option<&str> {
        self.annotations.get(CRI_IMAGE_NAME).map(String::as_str)
    }
}

fn network(spec: &Spec) -> Network {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    match namespaces.into_iter().flatten().find(|n| n.typ() == LinuxNamespaceType::Network) {
        None => Network::Host,
        Some(ns) => match ns.path() {
            Some(path) => Network::Path(path.clone()),
            None => Network::New,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> ContainerSpec {
        let spec: Spec = serde_json::from_str(json).unwrap();
        ContainerSpec::from_spec(&spec, Path::new("/b"))
    }

    #[test]
    fn reads_what_the_shim_needs_once() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs","readonly":true},
                "process":{"args":["/app.wasm","a"],"env":["A=1","FABRICKS_X=env"],"cwd":"/w","user":{"uid":0,"gid":0}},
                "annotations":{"fabricks.io/x":"annotation","io.kubernetes.cri.sandbox-id":"pod1"},
                "linux":{"cgroupsPath":"/k8s.io/c1",
                         "resources":{"memory":{"limit":1048576},"cpu":{"quota":50000,"period":100000,"shares":0}},
                         "namespaces":[{"type":"network","path":"/run/netns/p"}]}}"#,
        );
        assert_eq!(s.args, ["/app.wasm", "a"]);
        assert_eq!(s.program(), Some("/app.wasm"));
        assert_eq!((s.cwd.as_str(), s.rootfs.as_path(), s.readonly_rootfs), ("/w", Path::new("/b/rootfs"), true));
        assert_eq!(s.memory_limit, Some(1 << 20));
        assert_eq!(s.cpu, Cpu { shares: None, quota: Some(50000), period: Some(100000) });
        assert_eq!(s.cpu.limit(), Some(0.5));
        assert_eq!(s.network, Network::Path("/run/netns/p".into()));
        assert_eq!(s.cgroups_path.as_deref(), Some(Path::new("/k8s.io/c1")));
        assert_eq!(s.sandbox_id(), Some("pod1"));
        assert_eq!(s.env_var("A"), Some("1"));
    }

    #[test]
    fn settings_prefer_the_annotation() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","process":{"args":["x"],"env":["FABRICKS_X=env","FABRICKS_Y=y"],"cwd":"/","user":{"uid":0,"gid":0}},
                "annotations":{"fabricks.io/x":"annotation"}}"#,
        );
        assert_eq!(s.setting("fabricks.io/x", "FABRICKS_X").as_deref(), Some("annotation"));
        assert_eq!(s.setting("fabricks.io/y", "FABRICKS_Y").as_deref(), Some("y"));
        assert_eq!(s.setting("fabricks.io/z", "FABRICKS_Z"), None);
        // No `linux` section: the host's network, no limits.
        assert_eq!(s.network, Network::Host);
        assert_eq!((s.memory_limit, s.cpu.limit()), (None, None));
    }

    #[test]
    fn zero_and_negative_limits_are_unset() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","linux":{"resources":{"memory":{"limit":0},"cpu":{"quota":-1,"period":100000}},
                "namespaces":[{"type":"network"}]}}"#,
        );
        assert_eq!(s.memory_limit, None);
        assert_eq!(s.cpu.limit(), None);
        assert_eq!(s.network, Network::New);
        assert_eq!(s.rootfs, Path::new("/b/rootfs"));
    }
}
