//! Project kinds: how to recognise a project and compile it to a WASI
//! preview-1 module. Each language is one module here plus one entry in
//! [`TOOLCHAINS`].

mod dotnet;
mod go;

use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// A language toolchain that turns a project directory into a wasm module.
pub trait Toolchain: Sync {
    /// The language, for messages: `Go`, `.NET`.
    fn language(&self) -> &'static str;

    /// The file that marks a project of this kind, for the message when no
    /// toolchain recognises a directory: `go.mod`, `*.csproj`.
    fn marker(&self) -> &'static str;

    /// The project in `dir` if it is one of this kind.
    fn detect(&self, dir: &Path) -> Result<Option<Project>>;

    /// Compiles `project` for `target` to `out` (an absolute path).
    fn build(&self, project: &Project, target: Target, out: &Path) -> Result<()>;
}

/// What a build produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A WASI preview-1 module: what Fabricks runs.
    Wasi,
    /// A WASI preview-1 reactor: exports `_initialize` and the Fabricks HTTP ABI
    /// (docs/reactor-abi.md) instead of `_start`.
    Reactor,
    /// A static executable for this machine's Linux: the same program for
    /// runc, as the baseline the benchmarks compare against.
    Native,
}

impl std::fmt::Debug for dyn Toolchain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.language())
    }
}

/// A recognised project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// Absolute project directory.
    pub dir: PathBuf,
    /// The file that identified it (`go.mod`, `app.csproj`).
    pub marker: PathBuf,
}

/// Every supported toolchain, asked in this order.
static TOOLCHAINS: &[&dyn Toolchain] = &[&go::Go, &dotnet::DotNet];

/// Finds the toolchain for `dir`; the error lists everything looked for.
pub fn detect(dir: &Path) -> Result<(&'static dyn Toolchain, Project)> {
    for toolchain in TOOLCHAINS {
        if let Some(project) = toolchain.detect(dir)? {
            log::debug!("{} is a {} project ({})", dir.display(), toolchain.language(), project.marker.display());
            return Ok((*toolchain, project));
        }
    }
    let looked_for: Vec<String> = TOOLCHAINS.iter().map(|t| format!("{} ({})", t.marker(), t.language())).collect();
    bail!(
        "no project found in {}: looked for {}; point fabricks at a project directory",
        dir.display(),
        looked_for.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_means_go() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("go.mod"), "module x\n\ngo 1.24\n").unwrap();
        let (toolchain, project) = detect(dir.path()).unwrap();
        assert_eq!(toolchain.language(), "Go");
        assert_eq!(project.marker, dir.path().join("go.mod"));
    }

    #[test]
    fn csproj_means_dotnet_which_is_not_built_yet() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Hello.csproj"), "<Project Sdk=\"Microsoft.NET.Sdk\" />\n").unwrap();
        let (toolchain, project) = detect(dir.path()).unwrap();
        assert_eq!(toolchain.language(), ".NET");
        let err = toolchain.build(&project, Target::Wasi, &dir.path().join("out.wasm")).unwrap_err();
        assert!(err.to_string().contains(".NET support lands in a later release"), "{err}");
        assert!(err.to_string().contains("Hello.csproj"), "{err}");
    }

    #[test]
    fn empty_directory_lists_what_was_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let err = detect(dir.path()).unwrap_err().to_string();
        for expected in ["go.mod", "*.csproj", &dir.path().display().to_string()] {
            assert!(err.contains(expected), "{expected:?} missing from: {err}");
        }
    }

    #[test]
    fn a_go_mod_directory_is_not_a_csproj_match() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("go.mod.csproj")).unwrap();
        assert!(detect(dir.path()).is_err(), "directories are not project files");
    }
}
