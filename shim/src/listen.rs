//! Which ports a module serves on, and binding them where the container's network is.

use std::fs::File;
use std::net::TcpListener;

use anyhow::{bail, Context, Result};
use fabricks_engine::Socket;
use fabricks_listen::{ListenSpec, ANNOTATION, ENV_LISTEN, LABEL};
use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// The container's listen spec, from the first place that has one: the annotation
/// (a pod's, passed on by CRI), the container's environment, then the image config (its
/// `fabricks.io/listen` label, else its `ExposedPorts`). `image` is asked only if needed.
pub fn resolve(spec: &Spec, image: impl FnOnce() -> Result<Option<ImageConfiguration>>) -> Result<ListenSpec> {
    if let Some(text) = spec.annotations().as_ref().and_then(|a| a.get(ANNOTATION)) {
        return ListenSpec::parse(text).with_context(|| format!("the annotation {ANNOTATION}={text:?}"));
    }
    let env = spec.process().as_ref().and_then(|p| p.env().as_ref());
    let prefix = format!("{ENV_LISTEN}=");
    if let Some(text) = env.into_iter().flatten().find_map(|kv| kv.strip_prefix(&prefix)) {
        return ListenSpec::parse(text).with_context(|| format!("the environment variable {ENV_LISTEN}={text:?}"));
    }
    let Some(image) = image()? else { return Ok(ListenSpec::default()) };
    let Some(config) = image.config() else { return Ok(ListenSpec::default()) };
    if let Some(text) = config.labels().as_ref().and_then(|l| l.get(LABEL)) {
        return ListenSpec::parse(text).with_context(|| format!("the image label {LABEL}={text:?}"));
    }
    let ports = config.exposed_ports().clone().unwrap_or_default();
    if let Some(udp) = ports.iter().find(|p| !p.ends_with("/tcp") && p.contains('/')) {
        bail!("the image exposes {udp}: Fabricks modules serve TCP only");
    }
    ListenSpec::parse_all(ports.iter()).context("the image config's ExposedPorts")
}

/// Binds every endpoint inside the container's network namespace: the one the spec names
/// (a pod's), a new one if the spec asks for a new namespace, the host's if it has none.
pub fn bind(spec: &Spec, listen: &ListenSpec) -> Result<Vec<Socket>> {
    if listen.is_empty() {
        return Ok(Vec::new());
    }
    let netns = network_namespace(spec);
    // Entering a namespace changes the calling thread only, so a short-lived thread does it;
    // the sockets keep the namespace they were created in.
    std::thread::scope(|s| s.spawn(|| bind_in(netns, listen)).join().expect("binding thread panicked"))
}

enum NetNs {
    Host,
    New,
    Path(std::path::PathBuf),
}

fn network_namespace(spec: &Spec) -> NetNs {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    match namespaces.into_iter().flatten().find(|n| n.typ() == LinuxNamespaceType::Network) {
        None => NetNs::Host,
        Some(ns) => match ns.path() {
            Some(path) => NetNs::Path(path.clone()),
            None => NetNs::New,
        },
    }
}

fn bind_in(netns: NetNs, listen: &ListenSpec) -> Result<Vec<Socket>> {
    match netns {
        NetNs::Host => {}
        NetNs::New => unshare(CloneFlags::CLONE_NEWNET).context("creating the container's network namespace")?,
        NetNs::Path(path) => {
            let ns = File::open(&path).with_context(|| format!("opening the network namespace {}", path.display()))?;
            setns(ns, CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering the network namespace {}", path.display()))?;
        }
    }
    listen
        .endpoints()
        .iter()
        .map(|e| {
            let listener = TcpListener::bind(e.addr).map_err(|err| match err.kind() {
                std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
                    "listener {} cannot bind {}: the port is already in use in the container's network namespace",
                    e.name, e.addr
                ),
                _ => anyhow::anyhow!("listener {} cannot bind {}: {err}", e.name, e.addr),
            })?;
            log::info!("listening on {} as {}", e.addr, e.name);
            Ok(Socket { name: e.name.clone(), listener })
        })
        .collect()
}
