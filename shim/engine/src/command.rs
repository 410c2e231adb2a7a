//! What a command module sees: argv, environment, working directory, directories, stdio.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use cap_std::ambient_authority;
use wasi_common::pipe::{ReadPipe, WritePipe};
use wasi_common::sync::WasiCtxBuilder;
use wasi_common::{WasiCtx, WasiFile};

/// A command to run: the WASI preview-1 view of a process.
#[derive(Debug, Default)]
pub struct Command {
    /// argv; argv[0] is the program name.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The guest's working directory; Go's wasip1 runtime takes it from `PWD`.
    pub cwd: String,
    /// Host directories visible to the guest, in this order (fd 3, 4, …).
    pub dirs: Vec<Preopen>,
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

#[derive(Debug, Clone)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
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
    for dir in &cmd.dirs {
        let opened = cap_std::fs::Dir::open_ambient_dir(&dir.host, ambient_authority())
            .with_context(|| format!("opening {} for the guest path {}", dir.host.display(), dir.guest))?;
        b.preopened_dir(opened, &dir.guest)
            .map_err(|e| anyhow!("pre-opening {}: {e:?}", dir.guest))?;
    }
    b.stdin(input(cmd.stdin));
    b.stdout(output(cmd.stdout, false)?.0);
    let (stderr, trap_sink) = output(cmd.stderr, true)?;
    b.stderr(stderr);
    Ok((b.build(), trap_sink))
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
        Stdio::Inherit if keep_copy => (Box::new(wasi_common::sync::stdio::stderr()), Some(Box::new(std::io::stderr()))),
        Stdio::Inherit => (Box::new(wasi_common::sync::stdio::stdout()), None),
        Stdio::File(f) => {
            let copy: TrapSink = if keep_copy {
                Some(Box::new(f.try_clone().context("duplicating the stderr handle")?))
            } else {
                None
            };
            (wasi_file(f), copy)
        }
    })
}

fn wasi_file(f: File) -> Box<dyn WasiFile> {
    Box::new(wasi_common::sync::file::File::from_cap_std(cap_std::fs::File::from_std(f)))
}
