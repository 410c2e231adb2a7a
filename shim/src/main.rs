//! containerd-shim-fabricks-v1: runs WASI preview-1 command modules as containerd tasks.

mod cgroup;
mod child;
mod compiler;
mod entrypoint;
mod error;
mod events;
mod hints;
mod image;
mod listen;
mod mounts;
mod native;
mod node;
mod reactor;
mod runner;
mod service;
mod shim;
mod spec;
mod state;
mod stats;
mod stdio;
mod sweep;
mod termination;
mod wasm;

const RUNTIME_ID: &str = "io.containerd.fabricks.v1";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().skip(1).any(|a| a == "-info" || a == "--info") {
        // containerd 2.x probes runtimes with `-info`; containerd-shim 0.10 predates it.
        if let Err(e) = print_runtime_info() {
            eprintln!("Error: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    if args.get(1).map(String::as_str) == Some("compile") {
        if let Err(e) = compiler::compile_main(&args[2..]) {
            eprintln!("Error: {e:#}");
            std::process::exit(compiler::exit_status(&e));
        }
        return;
    }
    if args.get(1).map(String::as_str) == Some(runner::SUBCOMMAND) {
        std::process::exit(runner::runner_main());
    }
    if !args.iter().skip(1).any(|a| a == "start" || a == "delete") {
        // The server, still one thread: the helper runners are forked from must be forked now.
        runner::start_helper();
    }
    containerd_shim::run::<shim::FabricksShim>(RUNTIME_ID, None);
}

/// A `containerd.types.RuntimeInfo` message on stdout: name and version, nothing else
/// (no options, features or annotations to announce).
fn print_runtime_info() -> anyhow::Result<()> {
    use containerd_shim::protos::protobuf::CodedOutputStream;
    use std::io::Write;
    let mut version = Vec::new();
    let mut os = CodedOutputStream::vec(&mut version);
    os.write_string(1, env!("CARGO_PKG_VERSION"))?;
    os.flush()?;
    drop(os);
    let mut info = Vec::new();
    let mut os = CodedOutputStream::vec(&mut info);
    os.write_string(1, RUNTIME_ID)?;
    os.write_bytes(2, &version)?;
    os.flush()?;
    drop(os);
    std::io::stdout().write_all(&info)?;
    Ok(())
}
