//! HTTP tasks: the shim serves HTTP on the task's listeners itself and calls the program
//! per request (fabricks-http): a pool of instances of a reactor module, or a fresh
//! instance of a `wasi:http` component.

use std::sync::Arc;

use anyhow::{Context, Result};
use fabricks_engine::{Command, Component, Engine, HttpService, Module, Network, Reactor, Socket, Stdio, Stopper};
use fabricks_http::{Pool, Settings};

use crate::error::invalid;
use crate::spec::ContainerSpec;

/// Everything a started reactor task needs; made at create, so a module that cannot be
/// instantiated (or speaks another ABI) fails the create.
pub struct ReactorTask {
    pub pool: Arc<Pool>,
    pub settings: Settings,
    pub listeners: Vec<std::net::TcpListener>,
}

/// `command` is the WASI view every instance gets (its stdio handles are duplicated per
/// instance); `sockets` are served by the shim, not handed to the module.
pub fn prepare(
    module: &Module,
    program: &str,
    spec: &ContainerSpec,
    command: Command,
    sockets: Vec<Socket>,
    stopper: &Stopper,
) -> Result<ReactorTask> {
    if sockets.is_empty() {
        return Err(invalid(format!(
            "{program} is a reactor module (it serves HTTP through the host) but the container has no \
             listen spec: set the annotation fabricks.io/listen, the env FABRICKS_LISTEN, or build the \
             image with a listen setting (fabricks.toml `listen = \"http=8080\"`)"
        )));
    }
    let settings = settings(spec).context("reading the reactor settings")?;
    let template = Arc::new(command);
    let factory = move || duplicate(&template);
    let reactor = Reactor::new(module, program, Arc::new(factory), stopper, settings.instance_memory)?;
    let pool = Arc::new(Pool::new(reactor, &settings)?);
    log::info!(
        "{program}: reactor with {} instances, queue {}, timeout {}s, memory per instance {}",
        settings.instances,
        settings.queue,
        settings.timeout.as_secs(),
        settings.instance_memory.map_or("unlimited".into(), |b| format!("{} MiB", b >> 20))
    );
    Ok(ReactorTask { pool, settings, listeners: sockets.into_iter().map(|s| s.listener).collect() })
}

/// A `wasi:http` component served by the shim; made at create, so a component whose
/// imports cannot be satisfied fails the create.
pub struct HttpComponentTask {
    pub service: Arc<HttpService>,
    pub settings: Settings,
    pub listeners: Vec<std::net::TcpListener>,
}

/// `command` is the WASI view every instance gets; `sockets` are served by the shim, so the
/// component's own binds are refused (its ports are the shim's).
pub fn prepare_component(
    engine: &Engine,
    component: &Component,
    program: &str,
    spec: &ContainerSpec,
    command: Command,
    sockets: Vec<Socket>,
    stopper: &Stopper,
) -> Result<HttpComponentTask> {
    let settings = settings(spec).context("reading the HTTP settings")?;
    let service = HttpService::new(engine, component, command, &Network::default(), stopper, settings.instance_memory)?;
    log::info!(
        "{program}: wasi:http component, {} requests at once, queue {}, timeout {}s, memory per instance {}",
        settings.instances,
        settings.queue,
        settings.timeout.as_secs(),
        settings.instance_memory.map_or("unlimited".into(), |b| format!("{} MiB", b >> 20))
    );
    let listeners = sockets.into_iter().map(|s| s.listener).collect();
    Ok(HttpComponentTask { service: Arc::new(service), settings, listeners })
}

/// Settings from the annotation (a pod's, passed on by CRI) or else the container's
/// environment; defaults from the spec's CPU and memory limits.
fn settings(spec: &ContainerSpec) -> Result<Settings> {
    Settings::resolve(|annotation, var| spec.setting(annotation, var), spec.cpu.limit(), spec.memory_limit)
        .map_err(|e| invalid(format!("{e:#}")))
}

/// A copy of `command` with its own stdio handles: instances never share a WASI file.
fn duplicate(command: &Command) -> Result<Command> {
    Ok(Command {
        args: command.args.clone(),
        entry: None,
        env: command.env.clone(),
        cwd: command.cwd.clone(),
        dirs: command.dirs.clone(),
        sockets: Vec::new(),
        // A request server reads requests, not stdin.
        stdin: Stdio::Null,
        stdout: duplicate_stdio(&command.stdout)?,
        stderr: duplicate_stdio(&command.stderr)?,
        // Each instance's store gets its share of the container's limit from the pool's
        // settings (`Settings::resolve`), not from the command.
        memory: Default::default(),
        // A request's trap is the response's 500, not why the task ended.
        reason: Default::default(),
    })
}

fn duplicate_stdio(stdio: &Stdio) -> Result<Stdio> {
    Ok(match stdio {
        Stdio::Null => Stdio::Null,
        Stdio::Inherit => Stdio::Inherit,
        Stdio::File(f) => Stdio::File(f.try_clone().context("duplicating the task's output")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Cpu;

    fn spec(quota: i64, memory: u64, env: &[&str]) -> ContainerSpec {
        ContainerSpec {
            cpu: Cpu { quota: Some(quota), period: Some(100_000), shares: None },
            memory_limit: Some(memory),
            env: env.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_cpu_limit_sizes_the_pool_and_memory_is_split() {
        let s = settings(&spec(250_000, 300 << 20, &[])).unwrap();
        assert_eq!(s.instances, 3);
        assert_eq!(s.instance_memory, Some(100 << 20));
        let s = settings(&spec(250_000, 300 << 20, &["FABRICKS_INSTANCES=6"])).unwrap();
        assert_eq!(s.instances, 6);
        assert_eq!(s.instance_memory, Some(50 << 20));
    }
}
