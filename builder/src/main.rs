//! `fabricks`: builds Go and .NET projects into WebAssembly OCI images
//! for the Fabricks containerd shim, and runs them on the shim's engine.

mod auth;
mod build;
mod cli;
mod compile;
mod index;
mod oci_archive;
mod progress;
mod project;
mod provenance;
mod pull;
mod push;
mod registry;
mod run;
mod signals;
mod toolchain;

use clap::Parser;
use cli::{Cli, Command};
use std::io::Write;

/// Exit status of `fabricks run` when it could not run the module at all, so
/// it cannot be mistaken for the module's own status (as with `docker run`).
const RUN_FAILED: i32 = 125;

fn main() {
    init_logging();
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Build(args) => build::build(args).map(|()| 0).unwrap_or_else(|err| report(err, 1)),
        Command::Push(args) => push::push_command(args).map(|()| 0).unwrap_or_else(|err| report(err, 1)),
        Command::Run(args) => run::run(args).unwrap_or_else(|err| report(err, RUN_FAILED)),
    };
    // process::exit skips destructors: flush what Rust still buffers.
    let _ = std::io::stdout().flush();
    std::process::exit(status);
}

fn report(err: anyhow::Error, status: i32) -> i32 {
    eprintln!("error: {err:#}");
    status
}

/// `info` from the CLI, `warn` from everything else (the engine's info lines
/// repeat what the CLI's progress already says); `RUST_LOG` overrides. Info
/// lines are bare: they are progress, not diagnostics.
fn init_logging() {
    let default = "warn,fabricks=info";
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format(|out, record| match record.level() {
            log::Level::Info => writeln!(out, "{}", record.args()),
            level => writeln!(out, "{}: {}", level.as_str().to_lowercase(), record.args()),
        })
        .init();
}
