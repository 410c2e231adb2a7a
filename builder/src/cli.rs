//! Command-line interface definitions.

use clap::{Args, Parser, Subcommand, ValueEnum};
use fabricks_image::LayerKind;
use std::path::PathBuf;

/// Build Go and .NET projects into WebAssembly OCI images for the Fabricks
/// containerd shim, and run them locally on the same engine.
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

/// Push an image archive (as `fabricks build` writes it) to a registry.
///
/// Blobs the registry already has are not uploaded again. The manifests go
/// up by digest, then the image index under TAG: the image under wasi/wasm,
/// and again under each --node-platform so that Kubernetes nodes' CRI pulls
/// it. Prints the digest the tag points to.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// OCI image-layout archive.
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
    pub index: crate::index::IndexArgs,
}

/// Compile a project to WebAssembly and pack it as an OCI image archive.
///
/// The project kind is detected from DIR: `go.mod` means Go (built with
/// `GOOS=wasip1 GOARCH=wasm go build -trimpath`; DIR may be any package
/// directory of the module); one `*.csproj` means .NET (`dotnet publish -c
/// Release -r wasi-wasm`, with the wasi-experimental workload or
/// componentize-dotnet); a directory with `dotnet.wasm` and `managed/` is an
/// AppBundle that was already published, packed as it is. The module is built
/// into DIR/.fabricks/ (which carries its own .gitignore); the image holds it
/// at /<name>.wasm as its entrypoint (an AppBundle: its files at the image's
/// root, entrypoint `/dotnet.wasm <App>`). Import the archive with
/// `ctr images import --platform wasi/wasm IMAGE.tar`. Timestamps come from
/// SOURCE_DATE_EPOCH (else 1970-01-01), so the same module gives the same digest.
///
/// A Go module builds the main package at its root, else every main package
/// under ./cmd/ (one image each, named after the package directory), unless
/// PACKAGE arguments name them.
///
/// DIR/fabricks.toml, if present, declares what the project needs without
/// flags: `listen = "http=8080"`, `mode`, `package`, `ldflags`, `tags` (the
/// flags replace them).
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Project directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,

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

    /// Where to write the OCI image-layout archive [default: DIR/.fabricks/<name>.tar].
    #[arg(short, long, value_name = "IMAGE.tar")]
    pub output: Option<PathBuf>,

    /// Image reference [default: localhost/<dir name>:latest]. Short names are
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
    pub index: crate::index::IndexArgs,
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
/// A REGISTRY/REPO:TAG target is pulled first; it must be a wasi/wasm image,
/// whose module is the wasm layer or the tar layer's entrypoint file.
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

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}
