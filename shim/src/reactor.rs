//! A reactor task: the shim serves HTTP on the task's listeners itself and calls a pool of
//! instances of the module per request (fabricks-http), instead of running `_start`.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use fabricks_engine::{Command, Engine, Module, Reactor, Socket, Stdio, Stopper};
use fabricks_http::{Pool, Settings};
use oci_spec::runtime::Spec;

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
    engine: &Engine,
    module: &Module,
    program: &str,
    spec: &Spec,
    command: Command,
    sockets: Vec<Socket>,
    stopper: &Stopper,
) -> Result<ReactorTask> {
    if sockets.is_empty() {
        bail!(
            "{program} is a reactor module (it serves HTTP through the host) but the container has no \
             listen spec: set the annotation fabricks.io/listen, the env FABRICKS_LISTEN, or build the \
             image with a listen setting (fabricks.toml `listen = \"http=8080\"`)"
        );
    }
    let settings = settings(spec).context("reading the reactor settings")?;
    let template = Arc::new(command);
    let factory = move || duplicate(&template);
    let reactor = Reactor::new(engine, module, program, Arc::new(factory), stopper, settings.instance_memory)?;
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

/// Settings from the annotation (a pod's, passed on by CRI) or else the container's
/// environment; defaults from the spec's CPU and memory limits.
fn settings(spec: &Spec) -> Result<Settings> {
    let annotations = spec.annotations().clone().unwrap_or_default();
    let env: Vec<String> = spec.process().as_ref().and_then(|p| p.env().clone()).unwrap_or_default();
    let lookup = |annotation: &str, var: &str| {
        annotations.get(annotation).cloned().or_else(|| {
            let prefix = format!("{var}=");
            env.iter().find_map(|kv| kv.strip_prefix(&prefix).map(str::to_string))
        })
    };
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let cpu_limit = resources.and_then(|r| r.cpu().as_ref()).and_then(|cpu| match (cpu.quota(), cpu.period()) {
        (Some(quota), Some(period)) if quota > 0 && period > 0 => Some(quota as f64 / period as f64),
        _ => None,
    });
    let memory_limit =
        resources.and_then(|r| r.memory().as_ref()).and_then(|m| m.limit()).filter(|&l| l > 0).map(|l| l as u64);
    Settings::resolve(lookup, cpu_limit, memory_limit)
}

/// A copy of `command` with its own stdio handles: instances never share a WASI file.
fn duplicate(command: &Command) -> Result<Command> {
    Ok(Command {
        args: command.args.clone(),
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
    use oci_spec::runtime::{LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};

    fn spec(quota: i64, memory: i64, env: &[&str]) -> Spec {
        let resources = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().quota(quota).period(100_000u64).build().unwrap())
            .memory(LinuxMemoryBuilder::default().limit(memory).build().unwrap())
            .build()
            .unwrap();
        let mut spec = Spec::default();
        spec.set_linux(Some(LinuxBuilder::default().resources(resources).build().unwrap()));
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_env(Some(env.iter().map(|s| s.to_string()).collect()));
        spec.set_process(Some(process));
        spec
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
