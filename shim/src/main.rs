//! containerd-shim-fabricks-v1: runs WASI preview-1 command modules as containerd tasks.

mod child;
mod compiler;
mod container;
mod entrypoint;
mod image;
mod mounts;
mod native;
mod service;
mod shim;
mod state;
mod stdio;
mod wasm;

const RUNTIME_ID: &str = "io.containerd.fabricks.v1";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("compile") {
        if let Err(e) = compiler::compile_main(&args[2..]) {
            eprintln!("Error: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    containerd_shim::run::<shim::FabricksShim>(RUNTIME_ID, None);
}
