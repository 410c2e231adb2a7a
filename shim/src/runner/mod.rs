//! A wasm container's runner: a process of its own, exec'd from this binary at create
//! (`containerd-shim-fabricks-v1 runner`), that loads the program and runs it to its end
//! while the shim keeps the containerd API, the mounts and the cgroups. Its pid is the
//! task's, so a signal, `kill -9`, a cgroup and `ps` see it as a container's process, and a
//! guest that escaped wasm holds the runner, not the shim (docs/design.md, "Runners").

mod handle;
mod process;
mod wire;
mod zygote;

pub use handle::{Launch, RunnerTask};
pub use process::runner_main;
pub use wire::Task;
pub use zygote::start_helper;

/// The runner's first argument.
pub const SUBCOMMAND: &str = "runner";
