//! What a component's store holds, and the WASI preview-2 view it gets: the same contract
//! as a preview-1 command (argv, env with `PWD`, the rootfs as `/`, stdio), plus the
//! network rules of `network.rs` and `wasi:http`.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::cli::{AsyncStdinStream, OutputFile};
use wasmtime_wasi::{DirPerms, FilePerms, SocketAddrUse, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use super::network::{address_check, Reporter};
use super::Network;
use crate::{Command, MemoryLimit, Preopen, Stdio};

/// The data of one component store: its WASI and HTTP contexts, resources, limits.
pub(crate) struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limits: Limits,
    /// When the HTTP request this store serves must be done (None for commands).
    pub(crate) deadline: Option<Instant>,
}

/// A command's memory counts against the container's limit (and reports OOM); an HTTP
/// instance gets its share of it (`StoreLimits`, as reactor instances do).
pub(crate) enum Limits {
    Container(MemoryLimit),
    Instance(StoreLimits),
}

impl ResourceLimiter for Limits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> Result<bool> {
        match self {
            Limits::Container(limit) => limit.memory_growing(current, desired, maximum),
            Limits::Instance(limits) => limits.memory_growing(current, desired, maximum),
        }
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> Result<bool> {
        match self {
            Limits::Container(limit) => limit.table_growing(current, desired, maximum),
            Limits::Instance(limits) => limits.table_growing(current, desired, maximum),
        }
    }
}

impl Host {
    pub(crate) fn new(wasi: WasiCtx, limits: Limits) -> Self {
        Self { wasi, http: WasiHttpCtx::new(), table: ResourceTable::new(), limits, deadline: None }
    }

    pub(crate) fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Host {
    fn ctx(&mut self) -> &mut WasiHttpCtx {
        &mut self.http
    }

    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

/// Everything wasmtime-wasi and wasmtime-wasi-http provide, on the async engine.
pub(crate) fn linker(engine: &wasmtime::Engine) -> Result<Linker<Host>> {
    let mut linker = Linker::new(engine);
    let mut options = wasmtime_wasi::p2::bindings::LinkOptions::default();
    // `exit-with-code` is how a component reports a status other than 0 or 1.
    options.cli_exit_with_code(true);
    wasmtime_wasi::p2::add_to_linker_with_options_async(&mut linker, &options)?;
    wasmtime_wasi_http::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

type AddressCheck = Arc<dyn Fn(SocketAddr, SocketAddrUse) -> bool + Send + Sync>;

/// The parts of a WASI context that every instance of a program shares, made once.
pub(crate) struct WasiTemplate {
    args: Vec<String>,
    env: Vec<(String, String)>,
    dirs: Vec<Preopen>,
    stdout: Output,
    stderr: Output,
    check: AddressCheck,
    /// The task's stderr, for trap reports and refused binds.
    pub(crate) report: Reporter,
}

#[derive(Clone)]
enum Output {
    Null,
    Inherit,
    File(OutputFile),
}

impl WasiTemplate {
    /// `cmd`'s view (its stdin and sockets are not part of it: see [`WasiTemplate::build`]).
    pub(crate) fn new(cmd: &mut Command, network: &Network, program: &str) -> Result<Self> {
        let stderr = match &cmd.stderr {
            Stdio::Null => None,
            Stdio::Inherit => Some(Box::new(std::io::stderr()) as Box<dyn Write + Send>),
            Stdio::File(f) => Some(Box::new(f.try_clone().context("duplicating the stderr handle")?) as _),
        };
        let report: Reporter = Arc::new(Mutex::new(cmd.reason.keeping(stderr)));
        let check = address_check(network, program, report.clone());
        Ok(Self {
            args: cmd.args.clone(),
            env: with_pwd(cmd.env.clone(), &cmd.cwd),
            dirs: cmd.dirs.clone(),
            stdout: output(std::mem::take(&mut cmd.stdout)),
            stderr: output(std::mem::take(&mut cmd.stderr)),
            check: Arc::new(check),
            report,
        })
    }

    /// A fresh context. Call inside the component's tokio runtime: an async stdin starts
    /// its reader task there.
    pub(crate) fn build(&self, stdin: Stdio) -> Result<WasiCtx> {
        let mut b = WasiCtxBuilder::new();
        b.args(&self.args).envs(&self.env);
        match stdin {
            Stdio::Null => {}
            Stdio::Inherit => {
                b.inherit_stdin();
            }
            // Read on tokio's blocking threads: a stop can then end a guest waiting for
            // input (a containerd FIFO nobody writes to) at once.
            Stdio::File(f) => {
                b.stdin(AsyncStdinStream::new(tokio::fs::File::from_std(f)));
            }
        }
        match self.stdout.clone() {
            Output::Null => {}
            Output::Inherit => {
                b.inherit_stdout();
            }
            Output::File(f) => {
                b.stdout(f);
            }
        }
        match self.stderr.clone() {
            Output::Null => {}
            Output::Inherit => {
                b.inherit_stderr();
            }
            Output::File(f) => {
                b.stderr(f);
            }
        }
        for dir in &self.dirs {
            b.preopened_dir(&dir.host, &dir.guest, DirPerms::all(), FilePerms::all())
                .with_context(|| format!("opening {} for the guest path {}", dir.host.display(), dir.guest))?;
        }
        let check = self.check.clone();
        b.socket_addr_check(move |addr, use_| {
            let allowed = check(addr, use_);
            Box::pin(async move { allowed })
        });
        b.allow_ip_name_lookup(true);
        Ok(b.build())
    }

    pub(crate) fn report(&self, line: &str) {
        if let Some(sink) = self.report.lock().unwrap().as_mut() {
            let _ = writeln!(sink, "{line}");
        }
    }
}

fn output(stdio: Stdio) -> Output {
    match stdio {
        Stdio::Null => Output::Null,
        Stdio::Inherit => Output::Inherit,
        // Writes go straight to the file (a containerd FIFO), in order, as preview 1's do.
        Stdio::File(f) => Output::File(OutputFile::new(f)),
    }
}

/// As for preview-1 commands: language runtimes take the working directory from `PWD`.
fn with_pwd(mut env: Vec<(String, String)>, cwd: &str) -> Vec<(String, String)> {
    if !env.iter().any(|(k, _)| k == "PWD") {
        let cwd = if cwd.is_empty() { "/" } else { cwd };
        env.push(("PWD".into(), cwd.into()));
    }
    env
}
