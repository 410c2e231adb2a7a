//! fabricks-node-installer: run on every selected node (by the chart's DaemonSet, with the
//! host's root mounted), it copies the Fabricks shim onto the host, registers the `fabricks`
//! runtime in containerd's config (or k3s/RKE2's template), restarts containerd and labels
//! the node; `uninstall` undoes all of it. Both are idempotent.

mod config;
mod host;
mod install;
mod k3s;
mod node;
mod restart;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use config::Schema;
use host::Host;
use install::{ConfigEdit, Edit, TemplateEdit};
use k3s::Distro;
use std::path::{Path, PathBuf};

const SHIM_NAME: &str = "containerd-shim-fabricks-v1";
const LABEL_VALUE: &str = "installed";

#[derive(Parser)]
#[command(version, about = "Installs the Fabricks containerd shim on a Kubernetes node")]
struct Cli {
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Copy the shim, register the runtime, restart containerd, label the node.
    Install(Options),
    /// Remove the label, restore containerd's config, restart containerd, remove the shim.
    Uninstall(Options),
}

#[derive(Args)]
struct Options {
    /// Where the host's root filesystem is mounted.
    #[arg(long, env = "FABRICKS_HOST_ROOT", default_value = "/host")]
    host_root: PathBuf,
    /// containerd's config, as a host path (default: RKE2's or k3s's if present, else
    /// /etc/containerd/config.toml).
    #[arg(long, env = "FABRICKS_CONTAINERD_CONFIG")]
    config: Option<PathBuf>,
    /// Major version (1 or 2) of the host's containerd, for a node without a config file
    /// (default: asks the host's `containerd --version`).
    #[arg(long, env = "FABRICKS_CONTAINERD_VERSION")]
    containerd_version: Option<u64>,
    /// The shim binary to copy onto the host.
    #[arg(long, default_value = "/opt/fabricks/containerd-shim-fabricks-v1")]
    shim: PathBuf,
    /// Host directory for the shim: one on containerd's PATH.
    #[arg(long, default_value = "/usr/local/bin")]
    bin_dir: PathBuf,
    /// Do not restart containerd after changing its config.
    #[arg(long)]
    no_restart: bool,
    /// systemd unit to restart, the first active one of those given (default: containerd; on
    /// k3s k3s, k3s-agent; on RKE2 rke2-server, rke2-agent).
    #[arg(long = "unit")]
    units: Vec<String>,
    /// Node to label (the chart passes the pod's node name); none: no label.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Label set to `installed` once the runtime is registered (the RuntimeClass selects it).
    #[arg(long, default_value = "fabricks.io/runtime")]
    label: String,
    /// Keep running after the work is done, until SIGTERM (a DaemonSet's pod must not exit).
    #[arg(long)]
    stay: bool,
}

/// A file we edit on the host (host path) and how.
struct Target {
    path: PathBuf,
    edit: Box<dyn Edit>,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let (options, result) = match cli.command {
        Action::Install(o) => {
            let r = install(&o);
            (o, r)
        }
        Action::Uninstall(o) => {
            let r = uninstall(&o);
            (o, r)
        }
    };
    if let Err(e) = result {
        log::error!("{e:#}");
        std::process::exit(1);
    }
    if options.stay {
        wait_for_termination();
    }
}

fn install(o: &Options) -> Result<()> {
    let host = Host { root: o.host_root.clone() };
    let mut changes = Vec::new();
    let shim = o.bin_dir.join(SHIM_NAME);
    if install::copy_binary(&o.shim, &host.path(&shim))? {
        changes.push(format!("copied the shim to {}", shim.display()));
    }
    let target = install_target(&host, o)?;
    let config_changed = install::apply(&host.path(&target.path), target.edit.as_ref())?;
    if config_changed {
        changes.push(format!("registered runtime `fabricks` in {}", target.path.display()));
    }
    let config = host.config_path(o.config.as_deref());
    restart_if_owed(&host, o, &config, config_changed, &mut changes)?;
    if let Some(node) = &o.node_name {
        node::set_label(node, &o.label, Some(LABEL_VALUE))?;
        log::info!("node {node}: label {}={LABEL_VALUE}", o.label);
    }
    report("install", &changes);
    Ok(())
}

fn uninstall(o: &Options) -> Result<()> {
    let host = Host { root: o.host_root.clone() };
    let mut changes = Vec::new();
    // The label first: no new fabricks pod lands here while the runtime goes away.
    if let Some(node) = &o.node_name {
        node::set_label(node, &o.label, None)?;
        log::info!("node {node}: label {} removed", o.label);
    }
    let mut config_changed = false;
    for target in uninstall_targets(&host, o) {
        if install::revert(&host.path(&target.path), target.edit.as_ref())? {
            changes.push(format!("restored {}", target.path.display()));
            config_changed = true;
        }
    }
    let config = host.config_path(o.config.as_deref());
    restart_if_owed(&host, o, &config, config_changed, &mut changes)?;
    let shim = o.bin_dir.join(SHIM_NAME);
    if install::remove_binary(&host.path(&shim))? {
        changes.push(format!("removed {}", shim.display()));
    }
    report("uninstall", &changes);
    Ok(())
}

/// What install edits: containerd's config, or for k3s/RKE2 the template matching the schema
/// of the config they generate.
fn install_target(host: &Host, o: &Options) -> Result<Target> {
    let config = host.config_path(o.config.as_deref());
    let Some(distro) = Distro::owning(&config) else {
        let existing = install::read_optional(&host.path(&config))?;
        let new_schema = match existing {
            Some(_) => Schema::V2, // unused: the file's own version decides
            None => Schema::for_containerd_major(containerd_major(host, o)?),
        };
        return Ok(Target { path: config, edit: Box::new(ConfigEdit { new_schema }) });
    };
    let what = config.display().to_string();
    let generated = install::read_optional(&host.path(&config))?;
    let schema = match k3s::generated_schema(generated.as_deref(), &what)? {
        Some(schema) => schema,
        None => Schema::for_containerd_major(containerd_major(host, o)?),
    };
    log::info!("{} node: containerd config schema {}", distro.name(), schema.version());
    Ok(Target { path: template_path(&config, schema), edit: Box::new(TemplateEdit { schema }) })
}

/// What uninstall reverts: the config, or every template we may have written.
fn uninstall_targets(host: &Host, o: &Options) -> Vec<Target> {
    let config = host.config_path(o.config.as_deref());
    if Distro::owning(&config).is_none() {
        // The schema only matters for a missing file, which revert never creates.
        return vec![Target { path: config, edit: Box::new(ConfigEdit { new_schema: Schema::V2 }) }];
    }
    [Schema::V2, Schema::V3]
        .into_iter()
        .map(|schema| Target { path: template_path(&config, schema), edit: Box::new(TemplateEdit { schema }) })
        .collect()
}

fn template_path(config: &Path, schema: Schema) -> PathBuf {
    config.with_file_name(k3s::template_name(schema))
}

fn containerd_major(host: &Host, o: &Options) -> Result<u64> {
    match o.containerd_version {
        Some(major) => Ok(major),
        None => host.containerd_major(),
    }
}

/// Restarts containerd if this run changed its config (`changed`) or an earlier run changed it
/// and failed to restart (the marker beside `config`, a host path, says so).
fn restart_if_owed(host: &Host, o: &Options, config: &Path, changed: bool, changes: &mut Vec<String>) -> Result<()> {
    let marker = host.path(&install::restart_marker(config));
    let owed = marker.exists();
    if !changed && !owed {
        return Ok(());
    }
    if o.no_restart {
        log::info!("--no-restart: containerd keeps its old config until it restarts");
        return Ok(());
    }
    install::write_atomic(&marker, b"", 0o600)?;
    let defaults: &[&str] = match Distro::owning(config) {
        Some(distro) => distro.units(),
        None => &["containerd"],
    };
    let units: Vec<&str> = match o.units.is_empty() {
        true => defaults.to_vec(),
        false => o.units.iter().map(String::as_str).collect(),
    };
    restart::restart(&units).with_context(|| {
        format!("restarting containerd; the next run retries (until then {} stays)", marker.display())
    })?;
    install::remove_if_present(&marker)?;
    changes.push(if changed {
        "restarted containerd".to_owned()
    } else {
        "restarted containerd (owed by an earlier run)".to_owned()
    });
    Ok(())
}

/// The run's result on stdout: what changed, or that nothing did.
fn report(action: &str, changes: &[String]) {
    if changes.is_empty() {
        println!("fabricks-node-installer {action}: no change");
    }
    for change in changes {
        println!("fabricks-node-installer {action}: {change}");
    }
}

fn wait_for_termination() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    // As a pod's PID 1 the default SIGTERM action does nothing: handle it.
    match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
        Ok(mut signals) => {
            signals.forever().next();
        }
        Err(e) => log::error!("cannot wait for SIGTERM: {e}"),
    }
}
