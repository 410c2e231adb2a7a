//! What a command module sees: argv, environment, working directory, directories, stdio.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use cap_std::ambient_authority;
use wasi_common::file::FileAccessMode;
use wasi_common::pipe::{ReadPipe, WritePipe};
use wasi_common::sync::WasiCtxBuilder;
use wasi_common::{WasiCtx, WasiFile};

use crate::errno::ErrnoDir;

/// A command to run: the WASI preview-1 view of a process.
#[derive(Debug, Default)]
pub struct Command {
    /// argv; argv[0] is the program name.
    pub args: Vec<String>,
    /// The export to run instead of `_start` (an entrypoint `module.wasm#export`): a
    /// function without parameters returning nothing or its exit status (an `i32`), run
    /// after `_initialize` if the module has one.
    pub entry: Option<String>,
    pub env: Vec<(String, String)>,
    /// The guest's working directory; Go's wasip1 runtime takes it from `PWD`.
    pub cwd: String,
    /// Host directories visible to the guest, in this order (fd 3, 4, …).
    pub dirs: Vec<Preopen>,
    /// Listening sockets handed to the guest after the directories: Go's wasip1 runtime
    /// scans pre-opens from fd 3 and stops at the first that is not a directory.
    pub sockets: Vec<Socket>,
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    /// The container's memory limit, applied to the module's linear memory.
    pub memory: crate::MemoryLimit,
    /// Where the engine's report of why the program ended abnormally is kept too.
    pub reason: crate::ExitReason,
}

#[derive(Debug, Clone)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
}

/// A bound, listening TCP socket and the name the guest asks for it by.
#[derive(Debug)]
pub struct Socket {
    pub name: String,
    pub listener: std::net::TcpListener,
}

#[derive(Debug, Default)]
pub enum Stdio {
    /// Reads see end of file, writes are discarded.
    #[default]
    Null,
    /// This process's own stream.
    Inherit,
    File(File),
}

/// Where a trap report goes: the module's own stderr, so `ctr run` and pod logs show it.
pub(crate) type TrapSink = Option<Box<dyn Write + Send>>;

pub(crate) fn wasi_context(cmd: Command) -> Result<(WasiCtx, TrapSink)> {
    let mut b = WasiCtxBuilder::new();
    b.args(&cmd.args).map_err(|e| anyhow!("argv: {e}"))?;
    b.envs(&with_pwd(cmd.env, &cmd.cwd)).map_err(|e| anyhow!("environment: {e}"))?;
    b.stdin(input(cmd.stdin));
    b.stdout(output(cmd.stdout, false)?.0);
    let (stderr, trap_sink) = output(cmd.stderr, true)?;
    b.stderr(stderr);
    let mut ctx = b.build();
    // Directories first: Go's wasip1 runtime scans pre-opens from fd 3 and stops at the
    // first descriptor that is not a directory.
    for dir in &cmd.dirs {
        let opened = cap_std::fs::Dir::open_ambient_dir(&dir.host, ambient_authority())
            .with_context(|| format!("opening {} for the guest path {}", dir.host.display(), dir.guest))?;
        let dir_file = Box::new(ErrnoDir(Box::new(wasi_common::sync::dir::Dir::from_cap_std(opened))));
        ctx.push_preopened_dir(dir_file, &dir.guest).map_err(|e| anyhow!("pre-opening {}: {e:?}", dir.guest))?;
    }
    let mut fds = Vec::new();
    for socket in cmd.sockets {
        // Go's wasip1 runtime is single-threaded: one blocking accept would stall it.
        socket.listener.set_nonblocking(true).context("making the listener non-blocking")?;
        let listener = wasi_common::sync::net::Socket::from(cap_std::net::TcpListener::from_std(socket.listener));
        let fd = ctx
            .push_file(listener.into(), FileAccessMode::READ | FileAccessMode::WRITE)
            .map_err(|e| anyhow!("pre-opening socket {}: {e:?}", socket.name))?;
        fds.push((socket.name, fd));
    }
    if !fds.is_empty() {
        let fds = fabricks_listen::format_fds(fds.iter().map(|(name, fd)| (name.as_str(), *fd)));
        ctx.push_env(fabricks_listen::ENV_LISTEN_FDS, &fds).map_err(|e| anyhow!("environment: {e}"))?;
    }
    Ok((ctx, trap_sink))
}

fn with_pwd(mut env: Vec<(String, String)>, cwd: &str) -> Vec<(String, String)> {
    if !env.iter().any(|(k, _)| k == "PWD") {
        let cwd = if cwd.is_empty() { "/" } else { cwd };
        env.push(("PWD".into(), cwd.into()));
    }
    env
}

fn input(stdio: Stdio) -> Box<dyn WasiFile> {
    match stdio {
        Stdio::Null => Box::new(ReadPipe::from(Vec::new())),
        Stdio::Inherit => Box::new(wasi_common::sync::stdio::stdin()),
        Stdio::File(f) => wasi_file(f),
    }
}

fn output(stdio: Stdio, keep_copy: bool) -> Result<(Box<dyn WasiFile>, TrapSink)> {
    Ok(match stdio {
        Stdio::Null => (Box::new(WritePipe::new(std::io::sink())), None),
        Stdio::Inherit if keep_copy => {
            (Box::new(wasi_common::sync::stdio::stderr()), Some(Box::new(std::io::stderr())))
        }
        Stdio::Inherit => (Box::new(wasi_common::sync::stdio::stdout()), None),
        Stdio::File(f) => {
            let copy: TrapSink =
                if keep_copy { Some(Box::new(f.try_clone().context("duplicating the stderr handle")?)) } else { None };
            (wasi_file(f), copy)
        }
    })
}

fn wasi_file(f: File) -> Box<dyn WasiFile> {
    Box::new(wasi_common::sync::file::File::from_cap_std(cap_std::fs::File::from_std(f)))
}
