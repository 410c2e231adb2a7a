//! .NET: `*.csproj` projects. Recognised now so such a directory gets a clear
//! answer; building them (target `wasi-wasm`) lands in a later release.

use super::{Project, Target, Toolchain};
use anyhow::{bail, Context, Result};
use std::path::Path;

pub struct DotNet;

impl Toolchain for DotNet {
    fn language(&self) -> &'static str {
        ".NET"
    }

    fn marker(&self) -> &'static str {
        "*.csproj"
    }

    fn detect(&self, dir: &Path) -> Result<Option<Project>> {
        let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
            if path.extension().is_some_and(|ext| ext == "csproj") && path.is_file() {
                return Ok(Some(Project { dir: dir.to_owned(), marker: path }));
            }
        }
        Ok(None)
    }

    fn build(&self, project: &Project, _target: Target, _out: &Path) -> Result<()> {
        bail!(
            "{} is a .NET project; .NET support lands in a later release. \
             Today fabricks builds Go projects (a directory with go.mod)",
            project.marker.display()
        )
    }
}
