//! Project kinds: how to recognise a project, which programs it holds, what a build needs
//! and what it leaves behind. Each kind is one module here plus one entry in
//! [`TOOLCHAINS`]; everything a toolchain asks of the machine goes through [`Tools`].

mod appbundle;
mod bundle;
mod dotnet;
mod go;
pub mod tools;

pub use bundle::Bundle;
pub use tools::{Invocation, Tools};

use crate::project::Mode;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// What a build makes: code for WebAssembly or for this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executable {
    /// A WebAssembly module or component: what Fabricks runs.
    Wasm,
    /// A static executable for this machine's Linux: the same program for runc, as the
    /// baseline the benchmarks compare against.
    Native,
}

/// What to build and how it serves. A native executable is always a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    executable: Executable,
    mode: Mode,
}

impl Target {
    /// A wasm program serving as `mode`.
    pub fn wasm(mode: Mode) -> Self {
        Target { executable: Executable::Wasm, mode }
    }

    pub fn native() -> Self {
        Target { executable: Executable::Native, mode: Mode::Command }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn is_native(&self) -> bool {
        self.executable == Executable::Native
    }

    /// `native`, `reactor`, or nothing for the usual wasm command: for progress lines.
    pub fn qualifier(&self) -> Option<&'static str> {
        match (self.executable, self.mode) {
            (Executable::Native, _) => Some("native"),
            (Executable::Wasm, Mode::Reactor) => Some("reactor"),
            (Executable::Wasm, Mode::Command) => None,
        }
    }
}

/// A recognised project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// Absolute project directory (where `go.mod` or the `.csproj` is).
    pub dir: PathBuf,
    /// The file that identified it (`go.mod`, `app.csproj`).
    pub marker: PathBuf,
}

impl Project {
    /// The directory's name: what programs and images are called by default.
    pub fn name(&self) -> Result<String> {
        let name = self.dir.file_name().with_context(|| {
            format!("{} has no name to call the program by; use a project directory below it", self.dir.display())
        })?;
        Ok(name.to_string_lossy().into_owned())
    }
}

/// What the user asked of the build beyond its target, from flags and `fabricks.toml`.
/// Each toolchain takes what it knows and refuses the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Packages to build (Go: `./cmd/NAME`, `NAME`, an import path, `./cmd/...`).
    pub packages: Vec<String>,
    /// `-ldflags` for `go build`.
    pub ldflags: Option<String>,
    /// Build tags for `go build`.
    pub tags: Vec<String>,
}

/// One program of a project: what one image holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// Names the module and the image: the project directory's, or a Go package's.
    pub name: String,
    /// The Go package, relative to the module root (`.`, `./cmd/server`).
    pub package: Option<String>,
}

/// Everything a toolchain may use for one build.
pub struct BuildContext<'a> {
    pub project: &'a Project,
    pub target: Target,
    pub settings: &'a Settings,
    pub tools: &'a dyn Tools,
    /// Scratch space inside the project (`DIR/.fabricks`): outputs go here unless the
    /// language's own tool insists on its own layout.
    pub build_dir: &'a Path,
}

/// What a build left behind, for the image and for `fabricks run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// One file: a wasm module or component, or a native executable.
    File(PathBuf),
    /// A directory that runs as a whole (a .NET AppBundle): its files all go into the image.
    Bundle(Bundle),
}

/// A language toolchain that turns a project directory into programs.
pub trait Toolchain: Sync {
    /// The language, for messages: `Go`, `.NET`.
    fn language(&self) -> &'static str;

    /// The file that marks a project of this kind, for the message when no
    /// toolchain recognises a directory: `go.mod`, `*.csproj`.
    fn marker(&self) -> &'static str;

    /// The project in `dir` if it is one of this kind.
    fn detect(&self, dir: &Path) -> Result<Option<Project>>;

    /// Whether a directory below a project belongs to it (a Go package inside its
    /// module), so that `fabricks build` there finds the project above.
    fn owns_subdirectories(&self) -> bool {
        false
    }

    /// Refuses what makes no sense for this language and finds missing prerequisites,
    /// before anything slow runs. The error names what to do.
    fn check(&self, ctx: &BuildContext) -> Result<()>;

    /// The programs to build; `from` is the directory the user pointed at (inside the
    /// project). By default the project is one program named after its directory.
    fn programs(&self, ctx: &BuildContext, from: &Path) -> Result<Vec<Program>> {
        let _ = from;
        refuse_packages(self.language(), ctx.settings)?;
        Ok(vec![Program { name: ctx.project.name()?, package: None }])
    }

    /// Builds `program`; the output must exist when this returns.
    fn build(&self, ctx: &BuildContext, program: &Program) -> Result<Output>;

    /// What the tool's error output points at, as a line telling what to do.
    fn hint(&self, output: &str) -> Option<String> {
        let _ = output;
        None
    }
}

impl std::fmt::Debug for dyn Toolchain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.language())
    }
}

/// Every supported toolchain, asked in this order.
static TOOLCHAINS: &[&dyn Toolchain] = &[&go::Go, &dotnet::DotNet, &appbundle::AppBundle];

/// The project `dir` is, or (for kinds that own their subdirectories) is inside of.
pub fn locate(dir: &Path) -> Result<(&'static dyn Toolchain, Project)> {
    locate_in(TOOLCHAINS, dir)
}

fn locate_in(toolchains: &[&'static dyn Toolchain], dir: &Path) -> Result<(&'static dyn Toolchain, Project)> {
    for (depth, candidate) in dir.ancestors().enumerate() {
        for toolchain in toolchains {
            if depth > 0 && !toolchain.owns_subdirectories() {
                continue;
            }
            if let Some(project) = toolchain.detect(candidate)? {
                log::debug!(
                    "{} is in a {} project ({})",
                    dir.display(),
                    toolchain.language(),
                    project.marker.display()
                );
                return Ok((*toolchain, project));
            }
        }
    }
    let looked_for: Vec<String> = toolchains.iter().map(|t| format!("{} ({})", t.marker(), t.language())).collect();
    bail!(
        "no project found in {}: looked for {}; point fabricks at a project directory",
        dir.display(),
        looked_for.join(", ")
    )
}

/// The error for Go-only settings given to another language.
pub fn refuse_packages(language: &str, settings: &Settings) -> Result<()> {
    if let Some(package) = settings.packages.first() {
        bail!(
            "{package:?}: a {language} project builds as one program, so there is no PACKAGE to choose; \
             drop the PACKAGE argument (or `package` in fabricks.toml)"
        );
    }
    if settings.ldflags.is_some() || !settings.tags.is_empty() {
        bail!(
            "--ldflags and --tags (and `ldflags`/`tags` in fabricks.toml) are `go build` options; \
             a {language} project takes its build properties from its project file"
        );
    }
    Ok(())
}

/// The error for a tool that ran and failed: its output, then the toolchain's hint.
pub fn tool_failed(toolchain: &dyn Toolchain, invocation: &Invocation, output: &std::process::Output) -> anyhow::Error {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // MSBuild reports errors on stdout, Go on stderr: show whichever has something.
    let shown = [stderr.trim_end(), stdout.trim_end()].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>();
    let hint = toolchain.hint(&format!("{stdout}\n{stderr}")).map(|h| format!("\n{h}")).unwrap_or_default();
    anyhow::anyhow!(
        "`{}` failed in {} ({}):\n{}{hint}",
        invocation.command_line(),
        invocation.dir.display(),
        output.status,
        tail(&shown.join("\n"), 60)
    )
}

/// The last `lines` lines of `text`: the end of a long build log is where its error is.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    match all.len() > lines {
        true => format!("[… {} lines before]\n{}", all.len() - lines, all[all.len() - lines..].join("\n")),
        false => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_means_go() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("go.mod"), "module x\n\ngo 1.24\n").unwrap();
        let (toolchain, project) = locate(dir.path()).unwrap();
        assert_eq!(toolchain.language(), "Go");
        assert_eq!(project.marker, dir.path().join("go.mod"));
    }

    #[test]
    fn csproj_means_dotnet() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Hello.csproj"), "<Project Sdk=\"Microsoft.NET.Sdk\" />\n").unwrap();
        let (toolchain, project) = locate(dir.path()).unwrap();
        assert_eq!(toolchain.language(), ".NET");
        assert_eq!(project.marker, dir.path().join("Hello.csproj"));
    }

    #[test]
    fn empty_directory_lists_what_was_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(dir.path()).unwrap_err().to_string();
        for expected in ["go.mod", "*.csproj", &dir.path().display().to_string()] {
            assert!(err.contains(expected), "{expected:?} missing from: {err}");
        }
    }

    #[test]
    fn a_go_mod_directory_is_not_a_csproj_match() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("go.mod.csproj")).unwrap();
        assert!(locate(dir.path()).is_err(), "directories are not project files");
    }

    #[test]
    fn a_package_directory_finds_its_module_above() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("go.mod"), "module x\n").unwrap();
        let sub = dir.path().join("cmd/tool");
        std::fs::create_dir_all(&sub).unwrap();
        let (toolchain, project) = locate(&sub).unwrap();
        assert_eq!(toolchain.language(), "Go");
        assert_eq!(project.dir, dir.path());
    }

    #[test]
    fn a_csproj_is_not_looked_for_above() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("App.csproj"), "<Project />").unwrap();
        let sub = dir.path().join("Properties");
        std::fs::create_dir(&sub).unwrap();
        // Only .NET in the list: a Go module further up (there is none in a tempdir
        // anyway) must not matter for this rule.
        let err = locate_in(&[&dotnet::DotNet], &sub).unwrap_err().to_string();
        assert!(err.contains("no project found"), "{err}");
    }

    #[test]
    fn targets_name_what_they_are() {
        assert_eq!(Target::wasm(Mode::Command).qualifier(), None);
        assert_eq!(Target::wasm(Mode::Reactor).qualifier(), Some("reactor"));
        assert_eq!(Target::native().qualifier(), Some("native"));
        assert_eq!(Target::native().mode(), Mode::Command, "a native executable serves as a command");
    }

    #[test]
    fn long_tool_output_keeps_its_end() {
        let text: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let shown = tail(&text, 60);
        assert!(shown.starts_with("[… 40 lines before]\nline 41\n"), "{shown}");
        assert!(shown.ends_with("line 100"), "{shown}");
        assert_eq!(tail("a\nb", 60), "a\nb");
    }
}
