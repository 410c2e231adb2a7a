//! From a project directory to a compiled module in its build directory.

use crate::progress::Step;
use crate::toolchain::{self, Target};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};

/// Build directory inside a project, where modules and default archives go.
pub const BUILD_DIR: &str = ".fabricks";

/// A project compiled to a module.
pub struct Compiled {
    /// The project directory's name, which names the module and image.
    pub name: String,
    pub build_dir: PathBuf,
    pub module: PathBuf,
    pub target: Target,
}

impl Compiled {
    /// Where the module sits inside an image, and its argv[0]:
    /// `/<name>.wasm` (`/<name>` for a native executable).
    pub fn entrypoint(&self) -> String {
        format!("/{}", file_name(&self.name, self.target))
    }
}

fn file_name(name: &str, target: Target) -> String {
    match target {
        Target::Wasi | Target::Reactor => format!("{name}.wasm"),
        Target::Native => name.to_owned(),
    }
}

pub fn compile(dir: &Path, target: Target) -> Result<Compiled> {
    let dir = project_dir(dir)?;
    let (toolchain, project) = toolchain::detect(&dir)?;
    let name = dir_name(&dir)?;
    let build_dir = build_dir(&dir)?;
    let module = build_dir.join(file_name(&name, target));

    let what = match target {
        Target::Wasi => toolchain.language().to_owned(),
        Target::Native => format!("{}, native", toolchain.language()),
        Target::Reactor => format!("{}, reactor", toolchain.language()),
    };
    let step = Step::start(format!("Building {name} ({what})"));
    toolchain.build(&project, target, &module)?;
    ensure!(module.is_file(), "the {} build finished but left no module at {}", toolchain.language(), module.display());
    step.done(format!("Built {}", module.display()));
    Ok(Compiled { name, build_dir, module, target })
}

fn project_dir(dir: &Path) -> Result<PathBuf> {
    let absolute = dir.canonicalize().with_context(|| format!("project directory {} not found", dir.display()))?;
    ensure!(absolute.is_dir(), "{} is not a directory; give a project directory", dir.display());
    Ok(absolute)
}

fn dir_name(dir: &Path) -> Result<String> {
    let name = dir.file_name().with_context(|| {
        format!("{} has no name to call the module by; use a project directory below it", dir.display())
    })?;
    Ok(name.to_string_lossy().into_owned())
}

/// Creates `dir/.fabricks` with a `.gitignore` of its own, so build output
/// never shows up in the project's version control.
fn build_dir(dir: &Path) -> Result<PathBuf> {
    let build_dir = dir.join(BUILD_DIR);
    std::fs::create_dir_all(&build_dir).with_context(|| {
        format!("creating the build directory {}; is {} writable?", build_dir.display(), dir.display())
    })?;
    let ignore = build_dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "# Written by fabricks: build output only.\n*\n")
            .with_context(|| format!("writing {}", ignore.display()))?;
    }
    Ok(build_dir)
}
