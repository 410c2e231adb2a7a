//! Go: `go.mod` projects, built with the Go toolchain's own wasip1 port.

use super::{Project, Target, Toolchain};
use anyhow::{bail, Context, Result};
use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Output};

pub struct Go;

impl Toolchain for Go {
    fn language(&self) -> &'static str {
        "Go"
    }

    fn marker(&self) -> &'static str {
        "go.mod"
    }

    fn detect(&self, dir: &Path) -> Result<Option<Project>> {
        let marker = dir.join("go.mod");
        Ok(marker.is_file().then(|| Project { dir: dir.to_owned(), marker }))
    }

    fn build(&self, project: &Project, target: Target, out: &Path) -> Result<()> {
        let output = go_build(&project.dir, target, out)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            bail!(
                "`go build` failed in {} ({}):\n{}{}",
                project.dir.display(),
                output.status,
                stderr.trim_end(),
                hint(&stderr)
            );
        }
        // Module downloads and similar notes are worth showing, not failing on.
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            log::info!("{line}");
        }
        Ok(())
    }
}

fn go_build(dir: &Path, target: Target, out: &Path) -> Result<Output> {
    let mut go = Command::new("go");
    go.args(["build", "-trimpath"]);
    match target {
        Target::Wasi => go.env("GOOS", "wasip1").env("GOARCH", "wasm"),
        // c-shared on wasip1 exports `_initialize` and the //go:wasmexport functions; the
        // tag compiles in the SDK's side of the ABI, which command builds must not import.
        Target::Reactor => {
            go.args(["-buildmode=c-shared", "-tags", "fabricks_reactor"]).env("GOOS", "wasip1").env("GOARCH", "wasm")
        }
        // Static (no cgo), so the image needs no libc; GOARCH stays the host's.
        Target::Native => go.env("GOOS", "linux").env("CGO_ENABLED", "0"),
    };
    go.arg("-o").arg(out).arg(".");
    let result = go.current_dir(dir).output();
    match result {
        Err(err) if err.kind() == ErrorKind::NotFound => bail!(
            "the `go` tool is not on PATH; install Go 1.21 or newer (https://go.dev/dl/) \
             and make sure `go version` works in this shell"
        ),
        other => other.with_context(|| format!("starting `go build` in {}", dir.display())),
    }
}

/// Points at the usual cause of an error, when the output shows it.
fn hint(stderr: &str) -> &'static str {
    if stderr.contains("unsupported GOOS/GOARCH pair wasip1/wasm") {
        "\nGo 1.21 or newer is needed for GOOS=wasip1; check `go version`"
    } else {
        ""
    }
}
