//! fabricks-installer-image: writes the node installer's OCI image archive (linux, this
//! machine's architecture) without a container engine: fabricks-node-installer, the shim it
//! copies onto nodes, and the shared libraries the installer loads (it runs in the image; the
//! shim runs on the node, against the node's libc). Push it with `fabricks push ARCHIVE REF`.
//! A tool of the build, so it lives beside the CLI rather than in the crate that runs on nodes.

use anyhow::{bail, Context, Result};
use clap::Parser;
use fabricks_image::{ArchiveFile, Image, ImageOptions, LayerKind, Payload, Publisher, Reference, Tree};
use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALLER_PATH: &str = "/usr/local/bin/fabricks-node-installer";
/// Where the chart's DaemonSet expects the shim (the installer's default --shim).
const SHIM_PATH: &str = "/opt/fabricks/containerd-shim-fabricks-v1";

#[derive(Parser)]
#[command(version, about = "Writes the Fabricks node installer image as an OCI archive")]
struct Args {
    /// The archive to write.
    #[arg(short, long)]
    out: PathBuf,
    /// The image's name, e.g. localhost:5001/fabricks/node-installer:0.1.0.
    #[arg(short = 't', long, default_value = "localhost/fabricks/node-installer:latest")]
    tag: String,
    /// The installer binary (default: fabricks-node-installer beside this program).
    #[arg(long)]
    installer: Option<PathBuf>,
    /// The shim binary (default: containerd-shim-fabricks-v1 beside this program).
    #[arg(long)]
    shim: Option<PathBuf>,
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let installer = args.installer.map_or_else(|| beside("fabricks-node-installer"), Ok)?;
    let shim = args.shim.map_or_else(|| beside("containerd-shim-fabricks-v1"), Ok)?;
    let mut tree = Tree::new();
    add(&mut tree, &installer, INSTALLER_PATH)?;
    add(&mut tree, &shim, SHIM_PATH)?;
    for library in shared_libraries(&installer)? {
        let path = library.to_str().context("library paths are UTF-8")?.to_owned();
        add(&mut tree, &library, &path)?;
    }
    let reference: Reference = args.tag.parse().with_context(|| format!("the image name {:?}", args.tag))?;
    let payload = Payload::Tree {
        root: "/".to_owned(),
        tree,
        entrypoint: vec![INSTALLER_PATH.to_owned()],
        args: Vec::new(),
        workdir: None,
    };
    let mut options = ImageOptions::new(reference);
    options.layer = LayerKind::Tar;
    // The build machine's binaries: its architecture.
    options.platform = fabricks_image::host_platform();
    let image = Image::build(&payload, &options)?;
    ArchiveFile::new(&args.out).publish(&image)?;
    println!("wrote {} ({})", args.out.display(), args.tag);
    Ok(())
}

fn beside(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    Ok(exe.with_file_name(name))
}

/// `source` at the absolute image path `path`, executable (shared objects are mapped as such).
fn add(tree: &mut Tree, source: &Path, path: &str) -> Result<()> {
    let data = std::fs::read(source)
        .with_context(|| format!("reading {}; build it first (cargo build --release --workspace)", source.display()))?;
    log::info!("{path} ({} bytes)", data.len());
    tree.add_file(path.trim_start_matches('/'), data, true)
}

/// The shared objects `binary` loads, the dynamic loader included, as `ldd` resolves them here
/// (the image gets this machine's copies, so they match the binary).
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output().context("running ldd (glibc's, from libc-bin)")?;
    if !out.status.success() {
        bail!("ldd {} failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

/// Paths in ldd's lines `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x...)`; the kernel's vDSO has none.
fn parse_ldd(output: &str) -> Vec<PathBuf> {
    output
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = line.split_once("=>").map_or(line, |(_, target)| target.trim());
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x1)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x2)\n\t/lib64/ld-linux-x86-64.so.2 (0x3)\n";
        assert_eq!(
            parse_ldd(out),
            ["/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
                .map(PathBuf::from)
        );
    }
}
