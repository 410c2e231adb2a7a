//! Command-line interface definitions.

use anyhow::{bail, ensure, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use fabricks_image::oci_spec::image::{Arch, Os, Platform, PlatformBuilder};
use fabricks_image::LayerKind;
use std::path::PathBuf;

/// Build Go and .NET projects, or any prebuilt .wasm, into WebAssembly OCI images for the
/// Fabricks containerd shim, push them, and run them locally on the same engine.
#[derive(Debug, Parser)]
#[command(name = "fabricks", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Build(BuildArgs),
    Run(RunArgs),
    Push(PushArgs),
}

/// How to reach a registry and whom to be there.
///
/// Credentials come from --username with --password-stdin, else from
/// FABRICKS_REGISTRY_USERNAME/FABRICKS_REGISTRY_PASSWORD, else from the docker
/// config ($DOCKER_CONFIG/config.json or ~/.docker/config.json: `credHelpers`,
/// `credsStore`, `auths`), else none.
#[derive(Debug, Clone, Default, Args)]
pub struct RegistryArgs {
    /// Speak plain HTTP to the registry (the default for localhost, 127.0.0.1 and [::1]).
    #[arg(long)]
    pub insecure: bool,

    /// Registry user name (the password from --password-stdin or FABRICKS_REGISTRY_PASSWORD).
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,

    /// Read the registry password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
}

impl RegistryArgs {
    pub fn auth_flags(&self) -> crate::auth::Flags {
        crate::auth::Flags { username: self.username.clone(), password_stdin: self.password_stdin }
    }
}

/// Push an image archive to a registry: one `fabricks build` wrote, or any OCI image-layout
/// archive of one image (`skopeo copy … oci-archive:`, `oras push --oci-layout` then tar),
/// including the CNCF wasm artifact layout (`application/vnd.wasm.config.v0+json` config,
/// `application/wasm` layer).
///
/// Blobs the registry already has are not uploaded again. The manifests go
/// up by digest, then the image index under TAG: the image under its own
/// platform and, for a wasm image, again under each --node-platform so that
/// Kubernetes nodes' CRI pulls it. Prints the digest the tag points to.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// OCI image-layout archive (tar, or tar.gz).
    #[arg(value_name = "IMAGE.tar")]
    pub image: PathBuf,

    /// Where to push, REGISTRY/REPO:TAG, e.g. 127.0.0.1:5000/examples/go-hello:dev.
    #[arg(value_name = "REGISTRY/REPO:TAG")]
    pub reference: String,

    /// Print {"reference", "digest", "uploaded_bytes", "skipped_blobs", …} as JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,

    #[command(flatten)]
    pub index: IndexArgs,
}

/// The node platforms a pushed wasm image is listed under (see `fabricks_image::index`).
#[derive(Debug, Clone, Args)]
pub struct IndexArgs {
    /// Node platforms (OS/ARCH, comma-separated or repeated) under which the
    /// tag's index also lists the image, so that a Kubernetes node's CRI,
    /// which pulls only its own platform, finds it; `none` lists wasi/wasm only.
    #[arg(long = "node-platform", value_name = "OS/ARCH", value_delimiter = ',', default_value = DEFAULT_NODE_PLATFORMS)]
    pub node_platforms: Vec<String>,
}

/// The node platforms listed unless --node-platform says otherwise.
const DEFAULT_NODE_PLATFORMS: &str = "linux/amd64,linux/arm64";

impl IndexArgs {
    /// The platforms asked for, checked: `none` gives none.
    pub fn platforms(&self) -> Result<Vec<Platform>> {
        if self.node_platforms.iter().any(|p| p == "none") {
            ensure!(self.node_platforms.len() == 1, "--node-platform none cannot be combined with platforms");
            return Ok(Vec::new());
        }
        self.node_platforms.iter().map(|p| parse_platform(p)).collect()
    }
}

fn parse_platform(text: &str) -> Result<Platform> {
    let Some((os, arch)) = text.split_once('/') else {
        bail!("node platform {text:?} is not OS/ARCH, e.g. linux/amd64");
    };
    ensure!(
        !os.is_empty() && !arch.is_empty() && !arch.contains('/'),
        "node platform {text:?} is not OS/ARCH, e.g. linux/amd64"
    );
    Ok(PlatformBuilder::default().os(Os::from(os)).architecture(Arch::from(arch)).build()?)
}

/// Build an OCI image: compile a project to WebAssembly and pack it, or pack a .wasm module or
/// component built by any other toolchain.
///
/// A directory is a project, detected from its files: `go.mod` means Go (built with
/// `GOOS=wasip1 GOARCH=wasm go build -trimpath`; DIR may be any package directory of the
/// module); one `*.csproj` means .NET (`dotnet publish -c Release -r wasi-wasm`, with the
/// wasi-experimental workload or componentize-dotnet); a directory with `dotnet.wasm` and
/// `managed/` is an AppBundle that was already published, packed as it is. The module is built
/// into DIR/.fabricks/ (which carries its own .gitignore); the image holds it at /<name>.wasm
/// as its entrypoint (an AppBundle: its files at the image's root, entrypoint
/// `/dotnet.wasm <App>`). A Go module builds the main package at its root, else every main
/// package under ./cmd/ (one image each, named after the package directory), unless PACKAGE
/// arguments name them. DIR/fabricks.toml, if present, declares what the project needs without
/// flags: `listen = "http=8080"`, `mode`, `package`, `ldflags`, `tags` (the flags replace them).
///
/// A file is a prebuilt wasm binary (a preview-1 module or a preview-2 component, e.g. from
/// componentize-py, jco, cargo component, TinyGo): it is packed as it is, at /<file name>
/// [default archive: NAME.tar beside it]. The label fabricks.io/wasm-kind says which of the
/// two it is (the shim tells them by their bytes).
///
/// Import the archive with `ctr images import --platform wasi/wasm IMAGE.tar`, or push it
/// with --push. Timestamps come from SOURCE_DATE_EPOCH (else 1970-01-01), so the same module
/// gives the same digest.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Project directory, or a compiled .wasm module or component.
    #[arg(default_value = ".", value_name = "DIR|FILE.wasm")]
    pub source: PathBuf,

    /// Go main packages to build, each into its own image: `./cmd/server`,
    /// `server` (for ./cmd/server), an import path, or `./cmd/...`
    /// [default: `package` of fabricks.toml, else the package at DIR, else ./cmd/*].
    #[arg(value_name = "PACKAGE")]
    pub packages: Vec<String>,

    /// Go: `go build -ldflags`, e.g. '-s -w -X main.version=1.2.3' [default: `ldflags` of fabricks.toml].
    #[arg(long, value_name = "FLAGS", allow_hyphen_values = true)]
    pub ldflags: Option<String>,

    /// Go: build tags, comma-separated or repeated [default: `tags` of fabricks.toml]. GOFLAGS
    /// in the environment applies as for `go build`.
    #[arg(long = "tags", value_name = "TAG,…")]
    pub tags: Vec<String>,

    /// Where to write the OCI image-layout archive [default: DIR/.fabricks/<name>.tar,
    /// or NAME.tar beside FILE.wasm].
    #[arg(short, long, value_name = "IMAGE.tar")]
    pub output: Option<PathBuf>,

    /// Image reference [default: localhost/<dir or file name>:latest]. Short names are
    /// normalised like Docker's: `app` becomes docker.io/library/app:latest.
    #[arg(short, long = "tag", value_name = "REF")]
    pub tag: Option<String>,

    /// How the module is stored in the image's single layer.
    #[arg(long, value_enum, default_value_t = LayerArg::Tar)]
    pub layer: LayerArg,

    /// Build a static native executable for this machine's Linux instead, in
    /// a linux/<arch> image run by runc: the same program as a plain
    /// container, for comparing against [default tag: localhost/<dir name>:native].
    #[arg(long)]
    pub native: bool,

    /// How the wasm program serves: `command` runs main; `reactor` builds with
    /// -buildmode=c-shared and the host calls the handler registered with
    /// fabricks.Handle per request [default: `mode` of DIR/fabricks.toml, else command].
    #[arg(long, value_enum, conflicts_with = "native")]
    pub mode: Option<crate::project::Mode>,

    /// Default environment variable of the module (repeatable).
    #[arg(short, long, value_name = "KEY=VALUE", value_parser = key_value)]
    pub env: Vec<(String, String)>,

    /// TCP endpoint the module serves, as NAME=[ADDR:]PORT[/tcp] (repeatable, or
    /// comma-separated), e.g. `http=8080` or `admin=[::1]:9090`. A bare port
    /// binds 0.0.0.0 and is named `port-PORT`. Sets the config's ExposedPorts
    /// and the label `fabricks.io/listen` (the shim binds the ports and hands
    /// them to the module; Go programs take them with the Fabricks Go SDK).
    /// Replaces `listen` of DIR/fabricks.toml (`--listen ''`: no ports at all).
    #[arg(long, value_name = "SPEC")]
    pub listen: Vec<String>,

    /// Image config label (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
    pub label: Vec<(String, String)>,

    /// Manifest annotation, e.g. org.opencontainers.image.source=URL (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
    pub annotation: Vec<(String, String)>,

    /// Also push the image to REGISTRY/REPO:TAG (it is then the image's name unless -t is given).
    #[arg(long, value_name = "REGISTRY/REPO:TAG")]
    pub push: Option<String>,

    /// With --push: print the push result as JSON instead of text.
    #[arg(long, requires = "push")]
    pub json: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,

    #[command(flatten)]
    pub index: IndexArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayerArg {
    /// A gzip tar holding the module: unpacks with any containerd snapshotter.
    Tar,
    /// The raw module as an `application/wasm` blob: nothing to unpack (import with `ctr images import --no-unpack`).
    Wasm,
}

impl From<LayerArg> for LayerKind {
    fn from(arg: LayerArg) -> Self {
        match arg {
            LayerArg::Tar => LayerKind::Tar,
            LayerArg::Wasm => LayerKind::Wasm,
        }
    }
}

/// Run a project, a .wasm module or an image in a registry in this process, on the engine the shim uses.
///
/// A REGISTRY/REPO:TAG target is pulled first; it must be a wasm image (the
/// index's wasi/wasm entry, or a CNCF wasm artifact as `wkg`/`oras` push it),
/// whose module is its wasm layer or the tar layer's entrypoint file.
///
/// A directory is built first as `fabricks build` would (into DIR/.fabricks/),
/// without making an image. The module sees its arguments, the --env
/// variables, the --dir directories and this terminal's stdin/stdout/stderr;
/// nothing else of the host. Ctrl-C (SIGINT) or SIGTERM stops it (a second one
/// exits at once), and `fabricks` exits with the module's status: its exit
/// code, 128+N when stopped by signal N, 134 when it traps, and 125 when it
/// could not be started at all. Compiled
/// modules are cached in $XDG_CACHE_HOME/fabricks/modules (else
/// ~/.cache/fabricks/modules).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Project directory or compiled module (.wasm).
    #[arg(value_name = "DIR|MODULE.wasm|REGISTRY/REPO:TAG")]
    pub target: PathBuf,

    /// Environment variable for the module; KEY alone passes this process's value (repeatable).
    #[arg(short, long, value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,

    /// Host directory the module may use, at GUEST [default: the absolute HOST path] (repeatable).
    #[arg(long, value_name = "HOST[:GUEST]")]
    pub dir: Vec<String>,

    /// TCP endpoint to bind here and hand to the module, NAME=[ADDR:]PORT[/tcp]
    /// as for `build --listen` (repeatable, or comma-separated). For a project
    /// directory, `listen` of DIR/fabricks.toml is the default. The module
    /// finds the sockets through FABRICKS_LISTEN_FDS; SIGINT/SIGTERM shut them
    /// down and let it finish by itself.
    #[arg(long, value_name = "SPEC")]
    pub listen: Vec<String>,

    /// For a Go module holding several programs: the main package to run.
    #[arg(long, value_name = "PACKAGE")]
    pub package: Option<String>,

    /// For a project directory: build it as a `command` or a `reactor` [default:
    /// `mode` of DIR/fabricks.toml, else command]. A reactor module (found by its
    /// exports) is served by this process with a pool of instances, as the shim does;
    /// FABRICKS_INSTANCES, FABRICKS_QUEUE, FABRICKS_REQUEST_TIMEOUT and
    /// FABRICKS_INSTANCE_MEMORY size it.
    #[arg(long, value_enum)]
    pub mode: Option<crate::project::Mode>,

    /// Publish the module's port PORT on this host's [IP:]HOST_PORT instead of
    /// the address its listen spec names, as `docker run -p` does (repeatable).
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST_PORT:PORT")]
    pub publish: Vec<String>,

    /// Working directory of the module (a guest path).
    #[arg(long, default_value = "/", value_name = "GUEST_DIR")]
    pub cwd: String,

    /// Arguments for the module, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

fn key_value(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platforms(values: &[&str]) -> Result<Vec<Platform>> {
        IndexArgs { node_platforms: values.iter().map(|v| v.to_string()).collect() }.platforms()
    }

    #[test]
    fn node_platforms_parse_and_none_means_none() {
        let two = platforms(&["linux/amd64", "linux/arm64"]).unwrap();
        assert_eq!(two[1].architecture(), &Arch::ARM64);
        assert!(platforms(&["none"]).unwrap().is_empty());
        for bad in ["amd64", "linux/", "linux/amd64/v8/x"] {
            let err = platforms(&[bad]).unwrap_err();
            assert!(err.to_string().contains("OS/ARCH"), "{bad}: {err}");
        }
        let err = platforms(&["none", "linux/amd64"]).unwrap_err();
        assert!(err.to_string().contains("cannot be combined"), "{err}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
