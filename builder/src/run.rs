//! `fabricks run`: a project or module, run in-process on the shim's engine.

use crate::cli::RunArgs;
use crate::compile;
use crate::progress::Step;
use crate::project::Project;
use crate::signals;
use anyhow::{bail, ensure, Context, Result};
use fabricks_engine::{
    Command, Compiler, ComponentKind, Engine, EngineOptions, HttpService, ModuleKind, Network, Preopen, Program,
    Socket, Stdio, Stopper,
};
use fabricks_listen::ListenSpec;
use std::path::{Path, PathBuf};

/// Runs the module or component and returns its exit status.
pub fn run(args: RunArgs) -> Result<i32> {
    // Read before anything slow, so a bad --listen fails at once.
    let declared = declared_listen(&args)?;
    let (path, program) = match crate::pull::remote_reference(&args.target) {
        Some(reference) => {
            let step = Step::start(format!("Pulling {reference}"));
            let pulled = crate::pull::pull_module(&reference, &args.registry, &pulled_dir()?)?;
            step.done(format!("Pulled {reference}"));
            (pulled.path, Runnable { argv: vec![pulled.entrypoint], root: None })
        }
        None => module_for(&args)?,
    };
    let engine = Engine::new(EngineOptions { cache_dir: cache_dir()?, compiler: Compiler::InProcess })?;
    let loaded = load(&engine, &path)?;
    let http_component = matches!(&loaded, Program::Component(c) if c.kind() == ComponentKind::HttpService);
    let listen = listen_spec(&args, declared, http_component)?;

    let mut argv = program.argv;
    argv.extend(args.args);
    // A bundle is the guest's `/`, as in its image; the --dir directories come after it.
    let mut dirs: Vec<Preopen> = program.root.into_iter().map(|host| Preopen { host, guest: "/".into() }).collect();
    for spec in &args.dir {
        dirs.push(preopen(spec)?);
    }
    let command = Command {
        args: argv,
        entry: None,
        env: environment(&args.env)?,
        cwd: args.cwd,
        dirs,
        sockets: Vec::new(),
        stdin: Stdio::Inherit,
        stdout: Stdio::Inherit,
        stderr: Stdio::Inherit,
        // The CLI runs as the user's own process: no container limit to apply.
        memory: Default::default(),
        // The reason is on stderr, where the user sees it.
        reason: Default::default(),
    };
    let stopper = Stopper::new();
    signals::forward_to(&stopper)?;
    match loaded {
        Program::Module(module) => {
            let command = Command { sockets: bind(&listen)?, ..command };
            match engine.module_kind(&module, &command.args[0])? {
                ModuleKind::Command => engine.run(&module, command, &stopper),
                ModuleKind::Reactor => serve_reactor(&module, command, &stopper),
            }
        }
        Program::Component(component) => match component.kind() {
            // It binds its own sockets through wasi:sockets, on the listen spec's ports only.
            ComponentKind::Command => {
                let network = Network::new(listen.endpoints().iter().map(|e| e.addr).collect());
                engine.run_component(&component, command, &network, &stopper)
            }
            ComponentKind::HttpService => serve_component(&engine, &component, command, &listen, &stopper),
        },
    }
}

/// A `wasi:http` component: this process serves HTTP on the listen spec with a fresh
/// instance per request, as the shim does.
fn serve_component(
    engine: &Engine,
    component: &fabricks_engine::Component,
    command: Command,
    listen: &ListenSpec,
    stopper: &Stopper,
) -> Result<i32> {
    let program = command.args[0].clone();
    let settings = fabricks_http::Settings::resolve(|_, var| std::env::var(var).ok(), None, None)?;
    let service = HttpService::new(engine, component, command, &Network::default(), stopper, settings.instance_memory)?;
    let listeners = bind(listen)?.into_iter().map(|s| s.listener).collect();
    log::info!("Serving {program} (wasi:http), {} requests at once", settings.instances);
    fabricks_http::serve_component(std::sync::Arc::new(service), &settings, listeners, stopper)
}

/// A reactor module: this process serves HTTP on the listeners with a pool of instances,
/// exactly as the shim does (fabricks-http). Settings come from the environment
/// (`FABRICKS_INSTANCES`, …); the pool defaults to one instance per CPU.
fn serve_reactor(module: &fabricks_engine::Module, mut command: Command, stopper: &Stopper) -> Result<i32> {
    let program = command.args[0].clone();
    let sockets = std::mem::take(&mut command.sockets);
    ensure!(
        !sockets.is_empty(),
        "{program} is a reactor module (it serves HTTP through the host): give it a port with \
         --listen http=8080 (or `listen` in fabricks.toml)"
    );
    let settings = fabricks_http::Settings::resolve(|_, var| std::env::var(var).ok(), None, None)?;
    // Every instance writes to this process's stdout and stderr.
    let factory = move || {
        Ok(Command {
            args: command.args.clone(),
            env: command.env.clone(),
            cwd: command.cwd.clone(),
            dirs: command.dirs.clone(),
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            ..Command::default()
        })
    };
    let reactor = fabricks_engine::Reactor::new(
        module,
        &program,
        std::sync::Arc::new(factory),
        stopper,
        settings.instance_memory,
    )?;
    let pool = std::sync::Arc::new(fabricks_http::Pool::new(reactor, &settings)?);
    log::info!("Serving {program} with {} instances", settings.instances);
    let listeners = sockets.into_iter().map(|s| s.listener).collect();
    fabricks_http::serve(pool, &settings, listeners, stopper)
}

/// `--listen`, else (for a project directory) `listen` of its fabricks.toml.
fn declared_listen(args: &RunArgs) -> Result<ListenSpec> {
    let project = match args.target.is_dir() {
        true => Project::load(&args.target)?,
        false => Project::default(),
    };
    project.listen_spec(&args.listen)
}

/// The declared spec (for a `wasi:http` component with none, the shim's default
/// `http=8080`), with each `-p` applied.
fn listen_spec(args: &RunArgs, declared: ListenSpec, http_component: bool) -> Result<ListenSpec> {
    let spec = match declared.is_empty() && http_component {
        true => ListenSpec::parse(fabricks_listen::HTTP_COMPONENT_DEFAULT)?,
        false => declared,
    };
    args.publish.iter().try_fold(spec, |spec, p| publish(spec, p))
}

/// Moves the endpoint serving PORT to `[IP:]HOST_PORT`, keeping its name.
fn publish(spec: ListenSpec, mapping: &str) -> Result<ListenSpec> {
    let (host, port) = mapping
        .rsplit_once(':')
        .with_context(|| format!("-p {mapping}: expected [IP:]HOST_PORT:PORT, e.g. 8080:8080"))?;
    let port: u16 = port.parse().with_context(|| format!("-p {mapping}: {port:?} is not a port"))?;
    let target = spec.endpoints().iter().find(|e| e.port() == port).with_context(|| {
        let names: Vec<String> = spec.endpoints().iter().map(ToString::to_string).collect();
        format!(
            "-p {mapping}: the module has no listener on port {port} (its listen spec: {}); \
             give one with --listen or in fabricks.toml",
            if names.is_empty() { "none".to_string() } else { names.join(",") }
        )
    })?;
    let host_addr = match host.rsplit_once(':') {
        Some((ip, host_port)) => format!("{ip}:{host_port}"),
        None => format!("{}:{host}", bracketed(target.addr.ip())),
    };
    let entries = spec.endpoints().iter().map(|e| match e.name == target.name {
        true => format!("{}={host_addr}", e.name),
        false => format!("{}={}", e.name, e.addr),
    });
    ListenSpec::parse_all(entries).with_context(|| format!("-p {mapping}"))
}

fn bracketed(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}

/// Binds every endpoint on this host, as the shim does in the pod's network.
fn bind(listen: &ListenSpec) -> Result<Vec<Socket>> {
    listen
        .endpoints()
        .iter()
        .map(|endpoint| {
            let listener = std::net::TcpListener::bind(endpoint.addr)
                .with_context(|| format!("binding {endpoint} ({})", endpoint.addr))?;
            log::info!("Listening on {} as {:?}", endpoint.addr, endpoint.name);
            Ok(Socket { name: endpoint.name.clone(), listener })
        })
        .collect()
}

/// How a module starts: the image's `Entrypoint` (argv[0] and what follows it), and the
/// directory that is the guest's `/` for a bundle.
struct Runnable {
    argv: Vec<String>,
    root: Option<PathBuf>,
}

/// The module to run and how: a project's module is called by its image entrypoint,
/// as under the shim; a file by the path it was given as.
fn module_for(args: &RunArgs) -> Result<(PathBuf, Runnable)> {
    let target = &args.target;
    if target.is_dir() {
        let plan = compile::plan(&compile::Request {
            mode: args.mode,
            packages: args.package.as_slice(),
            ..compile::Request::new(target)
        })?;
        let program = plan.single("`fabricks run`")?;
        let compiled = plan.compile(&program)?;
        let mut argv = vec![compiled.entry_path()];
        argv.extend(compiled.entry_args());
        let root = compiled.bundle().map(|b| b.dir.clone());
        return Ok((compiled.module(), Runnable { argv, root }));
    }
    ensure!(
        target.is_file(),
        "{} does not exist; give a project directory or a compiled .wasm module",
        target.display()
    );
    Ok((target.to_owned(), Runnable { argv: vec![target.display().to_string()], root: None }))
}

fn load(engine: &Engine, path: &Path) -> Result<Program> {
    let step = Step::start(format!("Preparing {} for this machine", path.display()));
    let module = engine.load_program_file(path)?;
    let done = if engine.cache().compiles() > 0 {
        format!("Compiled {} to native code", path.display())
    } else {
        format!("Loaded {} from the module cache", path.display())
    };
    step.done(done);
    Ok(module)
}

/// Modules pulled from registries: next to the module cache.
fn pulled_dir() -> Result<PathBuf> {
    let modules = cache_dir()?;
    Ok(modules.with_file_name("pulled"))
}

/// `$XDG_CACHE_HOME/fabricks/modules`, else `~/.cache/fabricks/modules`.
fn cache_dir() -> Result<PathBuf> {
    let absolute = |var: &str| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute());
    let base = match (absolute("XDG_CACHE_HOME"), absolute("HOME")) {
        (Some(cache), _) => cache,
        (None, Some(home)) => home.join(".cache"),
        (None, None) => bail!(
            "neither XDG_CACHE_HOME nor HOME is set to an absolute path; set one so compiled modules can be cached"
        ),
    };
    Ok(base.join("fabricks").join("modules"))
}

/// `KEY=VALUE` as given; a bare `KEY` takes this process's value and is left
/// out when unset, as `docker run -e KEY` does.
fn environment(specs: &[String]) -> Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    for spec in specs {
        let (key, value) = match spec.split_once('=') {
            Some((key, value)) => (key, Some(value.to_owned())),
            None => (spec.as_str(), std::env::var(spec).ok()),
        };
        ensure!(!key.is_empty(), "--env {spec:?} has no variable name; use KEY=VALUE");
        match value {
            Some(value) => env.push((key.to_owned(), value)),
            None => log::warn!("--env {key}: not set here, so not passed to the module"),
        }
    }
    Ok(env)
}

/// `HOST[:GUEST]`: HOST must be an existing directory; GUEST, an absolute
/// guest path, defaults to HOST's absolute path.
fn preopen(spec: &str) -> Result<Preopen> {
    let (host, guest) = match spec.split_once(':') {
        Some((host, guest)) => (host, Some(guest)),
        None => (spec, None),
    };
    let host =
        Path::new(host).canonicalize().with_context(|| format!("--dir {spec}: host directory {host} not found"))?;
    ensure!(host.is_dir(), "--dir {spec}: {} is not a directory", host.display());
    let guest = guest.map_or_else(|| host.display().to_string(), str::to_owned);
    ensure!(guest.starts_with('/'), "--dir {spec}: the guest path {guest:?} must be absolute, like /data");
    Ok(Preopen { host, guest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_every_endpoint_under_its_name() {
        // A spec cannot say port 0: take a free port and name it.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let listen: ListenSpec = format!("a=127.0.0.1:{port}").parse().unwrap();
        let sockets = bind(&listen).unwrap();
        assert_eq!(sockets.len(), 1);
        assert_eq!(sockets[0].name, "a");
        assert_eq!(sockets[0].listener.local_addr().unwrap(), listen.endpoints()[0].addr);
        // The same port again is taken: the error names the entry.
        let err = format!("{:#}", bind(&listen).unwrap_err());
        assert!(err.contains(&listen.endpoints()[0].to_string()), "{err}");
    }

    #[test]
    fn preopens_default_to_the_host_path() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().canonicalize().unwrap();
        let spec = dir.path().display().to_string();
        let open = preopen(&spec).unwrap();
        assert_eq!((open.host.clone(), open.guest), (host.clone(), host.display().to_string()));
        let open = preopen(&format!("{spec}:/data")).unwrap();
        assert_eq!((open.host, open.guest.as_str()), (host, "/data"));
        assert!(preopen(&format!("{spec}:data")).is_err());
        assert!(preopen("/no/such/dir").is_err());
    }

    #[test]
    fn environment_takes_pairs_and_passes_through_set_names() {
        let env = environment(&["A=1=2".into(), "PATH".into(), "FABRICKS_SURELY_UNSET_VAR".into()]).unwrap();
        assert_eq!(env[0], ("A".into(), "1=2".into()));
        assert_eq!(env[1].0, "PATH");
        assert_eq!(env.len(), 2);
        assert!(environment(&["=x".into()]).is_err());
    }

    #[test]
    fn publish_moves_the_endpoint_of_a_port_and_keeps_its_name() {
        let spec: ListenSpec = "http=8080,admin=127.0.0.1:9090".parse().unwrap();
        let moved = publish(spec.clone(), "18080:8080").unwrap();
        assert_eq!(moved.get("http").unwrap().addr, "0.0.0.0:18080".parse().unwrap());
        assert_eq!(moved.get("admin").unwrap().addr, "127.0.0.1:9090".parse().unwrap());
        let moved = publish(spec.clone(), "127.0.0.1:18081:9090").unwrap();
        assert_eq!(moved.get("admin").unwrap().addr, "127.0.0.1:18081".parse().unwrap());
        let err = format!("{:#}", publish(spec.clone(), "1:7777").unwrap_err());
        assert!(err.contains("no listener on port 7777"), "{err}");
        let err = format!("{:#}", publish(spec, "8080").unwrap_err());
        assert!(err.contains("expected [IP:]HOST_PORT:PORT"), "{err}");
    }
}
