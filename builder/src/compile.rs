//! From a project directory to its compiled programs in the project's build directory:
//! first a [`Plan`] (the project, its settings, its programs, the prerequisites checked:
//! all fast), then one build per program.

use crate::progress::Step;
use crate::project::{self, Mode};
use crate::toolchain::{self, BuildContext, Bundle, Output, Program, Project, Settings, Target, Toolchain, Tools};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};

/// Build directory inside a project, where modules and default archives go.
pub const BUILD_DIR: &str = ".fabricks";

/// What the user asked for, as flags.
#[derive(Debug)]
pub struct Request<'a> {
    pub dir: &'a Path,
    pub native: bool,
    pub mode: Option<Mode>,
    pub packages: &'a [String],
    pub ldflags: Option<&'a str>,
    pub tags: &'a [String],
}

impl<'a> Request<'a> {
    /// A wasm command of `dir` with nothing else asked.
    pub fn new(dir: &'a Path) -> Self {
        Request { dir, native: false, mode: None, packages: &[], ldflags: None, tags: &[] }
    }
}

/// A project ready to build: everything that can be checked without building was.
pub struct Plan {
    toolchain: &'static dyn Toolchain,
    pub project: Project,
    /// The project's `fabricks.toml` (read from the project root).
    pub file: project::Project,
    pub target: Target,
    settings: Settings,
    /// The directory the user pointed at (inside the project).
    from: PathBuf,
    build_dir: PathBuf,
    tools: &'static dyn Tools,
}

/// A program compiled.
pub struct Compiled {
    /// Names the module and image.
    pub name: String,
    pub build_dir: PathBuf,
    pub output: Output,
    pub target: Target,
}

impl Compiled {
    /// The entry file's path inside an image, its argv[0]: `/<name>.wasm` (`/<name>` for a
    /// native executable); for a bundle, its entry at the image's root (`/dotnet.wasm`).
    pub fn entry_path(&self) -> String {
        match &self.output {
            Output::File(_) if self.target.is_native() => format!("/{}", self.name),
            Output::File(_) => format!("/{}.wasm", self.name),
            Output::Bundle(bundle) => format!("/{}", bundle.entry),
        }
    }

    /// What follows argv[0] in the image's `Entrypoint` (a bundle's `App`).
    pub fn entry_args(&self) -> Vec<String> {
        match &self.output {
            Output::File(_) => Vec::new(),
            Output::Bundle(bundle) => bundle.args.clone(),
        }
    }

    /// The file that runs, on this machine.
    pub fn module(&self) -> PathBuf {
        match &self.output {
            Output::File(path) => path.clone(),
            Output::Bundle(bundle) => bundle.entry_path(),
        }
    }

    pub fn bundle(&self) -> Option<&Bundle> {
        match &self.output {
            Output::Bundle(bundle) => Some(bundle),
            Output::File(_) => None,
        }
    }
}

pub fn plan(request: &Request) -> Result<Plan> {
    plan_with(request, &toolchain::tools::System)
}

fn plan_with(request: &Request, tools: &'static dyn Tools) -> Result<Plan> {
    let from = project_dir(request.dir)?;
    let (toolchain, project) = toolchain::locate(&from)?;
    let file = project::Project::load(&project.dir)?;
    let target = match request.native {
        true => Target::native(),
        false => Target::wasm(file.mode(request.mode)),
    };
    let settings = file.settings(request.packages, request.ldflags, request.tags);
    let build_dir = project.dir.join(BUILD_DIR);
    let plan = Plan { toolchain, project, file, target, settings, from, build_dir, tools };
    toolchain.check(&plan.context())?;
    Ok(plan)
}

impl Plan {
    fn context(&self) -> BuildContext<'_> {
        BuildContext {
            project: &self.project,
            target: self.target,
            settings: &self.settings,
            tools: self.tools,
            build_dir: &self.build_dir,
        }
    }

    pub fn language(&self) -> &'static str {
        self.toolchain.language()
    }

    /// The programs to build, as the project and the settings say.
    pub fn programs(&self) -> Result<Vec<Program>> {
        let programs = self.toolchain.programs(&self.context(), &self.from)?;
        ensure!(!programs.is_empty(), "{} holds nothing to build", self.project.dir.display());
        Ok(programs)
    }

    /// The one program, for what can only take one (`run`, `-o`, `-t`, `--push`).
    pub fn single(&self, why: &str) -> Result<Program> {
        let mut programs = self.programs()?;
        match programs.as_slice() {
            [_] => Ok(programs.remove(0)),
            several => bail!(
                "{} holds {} programs ({}); {why} takes one: name it as PACKAGE (or `package` in {})",
                self.project.dir.display(),
                several.len(),
                several.iter().map(|p| p.package.as_deref().unwrap_or(&p.name)).collect::<Vec<_>>().join(", "),
                project::FILE
            ),
        }
    }

    pub fn compile(&self, program: &Program) -> Result<Compiled> {
        create_build_dir(&self.build_dir, &self.project.dir)?;
        let what = match self.target.qualifier() {
            Some(qualifier) => format!("{}, {qualifier}", self.language()),
            None => self.language().to_owned(),
        };
        let step = Step::start(format!("Building {} ({what})", program.name));
        let output = self.toolchain.build(&self.context(), program)?;
        let built = match &output {
            Output::File(path) => path.clone(),
            Output::Bundle(bundle) => bundle.entry_path(),
        };
        ensure!(built.is_file(), "the {} build finished but left no module at {}", self.language(), built.display());
        step.done(format!("Built {}", built.display()));
        Ok(Compiled { name: program.name.clone(), build_dir: self.build_dir.clone(), output, target: self.target })
    }
}

fn project_dir(dir: &Path) -> Result<PathBuf> {
    let absolute = dir.canonicalize().with_context(|| format!("project directory {} not found", dir.display()))?;
    ensure!(absolute.is_dir(), "{} is not a directory; give a project directory", dir.display());
    Ok(absolute)
}

/// Creates `dir/.fabricks` with a `.gitignore` of its own, so build output
/// never shows up in the project's version control.
fn create_build_dir(build_dir: &Path, project: &Path) -> Result<()> {
    std::fs::create_dir_all(build_dir).with_context(|| {
        format!("creating the build directory {}; is {} writable?", build_dir.display(), project.display())
    })?;
    let ignore = build_dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "# Written by fabricks: build output only.\n*\n")
            .with_context(|| format!("writing {}", ignore.display()))?;
    }
    Ok(())
}
