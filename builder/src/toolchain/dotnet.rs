//! .NET: `*.csproj` projects, published for the `wasi-wasm` runtime identifier by the
//! SDK's wasi-experimental workload or by componentize-dotnet (see [`route`] for which,
//! [`layout`] for where the SDK leaves the result).

pub(super) mod layout;
mod msbuild;
mod route;

use super::{tool_failed, BuildContext, Invocation, Output, Program, Project, Toolchain};
use crate::project::Mode;
use anyhow::{bail, Context, Result};
use msbuild::ProjectFile;
use route::Route;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, SystemTime};

pub struct DotNet;

impl Toolchain for DotNet {
    fn language(&self) -> &'static str {
        ".NET"
    }

    fn marker(&self) -> &'static str {
        "*.csproj"
    }

    /// One `.csproj` is the project; several in one directory are ambiguous, as for
    /// `dotnet build` ("MSB1011: more than one project file"), and are named.
    fn detect(&self, dir: &Path) -> Result<Option<Project>> {
        let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
        let mut found = Vec::new();
        for entry in entries {
            let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
            if path.extension().is_some_and(|ext| ext == "csproj") && path.is_file() {
                found.push(path);
            }
        }
        found.sort();
        match found.len() {
            0 => Ok(None),
            1 => Ok(Some(Project { dir: dir.to_owned(), marker: found.remove(0) })),
            n => bail!(
                "{} holds {n} project files ({}); fabricks builds one project per directory, as `dotnet build` \
                 does: point it at a directory with one .csproj",
                dir.display(),
                found
                    .iter()
                    .map(|p| p.file_name().unwrap_or_default().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn check(&self, ctx: &BuildContext) -> Result<()> {
        refuse_targets(self.language(), ctx)?;
        super::refuse_packages(self.language(), ctx.settings)?;
        let file = ProjectFile::read(&ctx.project.marker)?;
        let route = Route::of(&file)?;
        log::debug!("{}: {}", ctx.project.marker.display(), route.describe());
        route::check_machine(&route, &file, &ctx.project.dir, ctx.tools)?;
        Ok(())
    }

    fn build(&self, ctx: &BuildContext, _program: &Program) -> Result<Output> {
        let file = ProjectFile::read(&ctx.project.marker)?;
        let route = Route::of(&file)?;
        let assembly = file.assembly_name()?;
        log::info!("{}: {}", assembly, route.describe());
        let publish = publish(ctx, &file, &route);
        // Outputs older than this are leftovers of earlier builds (with slack for
        // file systems whose times are coarse).
        let started = SystemTime::now() - Duration::from_secs(2);
        let output = match ctx.tools.output(&publish) {
            Err(err) if err.kind() == ErrorKind::NotFound => bail!("`dotnet` is not on PATH any more"),
            other => other.with_context(|| format!("starting `{}`", publish.command_line()))?,
        };
        if !output.status.success() {
            return Err(tool_failed(self, &publish, &output));
        }
        layout::find_output(&route, &ctx.project.dir, &assembly, started)
    }

    fn hint(&self, output: &str) -> Option<String> {
        let hint = if output.contains("is not supported in .NET 9") {
            ".NET 9 has no WASI support: target net8.0 or net10.0"
        } else if output.contains("NETSDK1147") {
            "a workload is missing: run the `dotnet workload install …` named above (with sudo if the SDK is system-wide)"
        } else if output.contains("Could not find wasi-sdk") {
            "this build relinks dotnet.wasm: unpack a wasi-sdk release (https://github.com/WebAssembly/wasi-sdk/releases) \
             and export WASI_SDK_PATH to its directory"
        } else if output.contains("NETSDK1045") {
            "this SDK is older than the project's TargetFramework: install the newer .NET SDK (`dotnet --list-sdks` shows what is there)"
        } else if output.contains("ILCompiler.LLVM") && (output.contains("NU1101") || output.contains("NU1102")) {
            "NativeAOT-LLVM comes from the dotnet-experimental feed: add it to the project's nuget.config \
             (see componentize-dotnet's README)"
        } else {
            return None;
        };
        Some(hint.to_owned())
    }
}

/// `dotnet publish` of the project for WASI, in the configuration [`layout`] looks in.
fn publish(ctx: &BuildContext, file: &ProjectFile, route: &Route) -> Invocation {
    let mut publish = Invocation::new("dotnet", &ctx.project.dir).arg("publish").arg(&ctx.project.marker).args([
        "-c",
        layout::CONFIGURATION,
        "-r",
        "wasi-wasm",
    ]);
    if file.target_frameworks().len() > 1 {
        publish = publish.args(["-f", &route.tfm().moniker]);
    }
    publish.arg("--nologo")
}

/// `--native` and reactor mode are Go builds; .NET has neither.
pub fn refuse_targets(language: &str, ctx: &BuildContext) -> Result<()> {
    if ctx.target.is_native() {
        bail!(
            "--native builds a static Linux executable of a Go program, the runc baseline of the benchmarks; \
             fabricks has no native {language} build: drop --native (a .NET image for runc is the SDK's own \
             `dotnet publish -r linux-x64`)"
        );
    }
    if ctx.target.mode() == Mode::Reactor {
        bail!(
            "reactor mode is the Fabricks Go SDK's host-called HTTP handler; a {language} app runs as a command, or \
             serves HTTP as a wasi:http component (componentize-dotnet): drop --mode reactor (or mode = \"reactor\" \
             in fabricks.toml)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tools::fake::{finished, FakeTools};
    use super::super::{Bundle, Settings, Target};
    use super::*;
    use std::path::PathBuf;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The wasiconsole template's project (dotnet/runtime `src/mono/wasi/Wasi.Build.Tests`).
    const CONSOLE_NET8: &str = "<Project Sdk=\"Microsoft.NET.Sdk\">\n  <PropertyGroup>\n    \
        <TargetFramework>net8.0</TargetFramework>\n    <RuntimeIdentifier>wasi-wasm</RuntimeIdentifier>\n    \
        <OutputType>Exe</OutputType>\n  </PropertyGroup>\n</Project>\n";

    const WORKLOADS: &str =
        "Installed Workload Id   Manifest Version   Installation Source\n-------\nwasi-experimental  8.0.10/8.0.100  SDK 8.0.400\n\n";

    struct Case {
        dir: tempfile::TempDir,
        project: Project,
        settings: Settings,
    }

    impl Case {
        fn new(csproj: &str) -> Case {
            let dir = tempfile::tempdir().unwrap();
            let marker = write(dir.path(), "Hello.csproj", csproj);
            let project = Project { dir: dir.path().to_owned(), marker };
            Case { dir, project, settings: Settings::default() }
        }

        fn ctx<'a>(&'a self, tools: &'a FakeTools, target: Target) -> BuildContext<'a> {
            BuildContext { project: &self.project, target, settings: &self.settings, tools, build_dir: self.dir.path() }
        }
    }

    fn sdk8() -> FakeTools {
        FakeTools::new().program("dotnet").answer("dotnet", "--version", 0, "8.0.404\n", "").answer(
            "dotnet",
            "workload list",
            0,
            WORKLOADS,
            "",
        )
    }

    #[test]
    fn one_csproj_is_the_project_and_two_are_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DotNet.detect(dir.path()).unwrap(), None);
        write(dir.path(), "B.csproj", "<Project />");
        let project = DotNet.detect(dir.path()).unwrap().unwrap();
        assert_eq!(project.marker, dir.path().join("B.csproj"));
        write(dir.path(), "A.csproj", "<Project />");
        let err = DotNet.detect(dir.path()).unwrap_err().to_string();
        assert!(err.contains("holds 2 project files (A.csproj, B.csproj)"), "{err}");
    }

    #[test]
    fn native_and_reactor_are_refused_before_anything_runs() {
        let case = Case::new(CONSOLE_NET8);
        let tools = sdk8();
        let err = DotNet.check(&case.ctx(&tools, Target::native())).unwrap_err().to_string();
        assert!(err.contains("no native .NET build"), "{err}");
        let err = DotNet.check(&case.ctx(&tools, Target::wasm(Mode::Reactor))).unwrap_err().to_string();
        assert!(err.contains("drop --mode reactor"), "{err}");
        assert!(tools.command_lines().is_empty(), "nothing ran: {:?}", tools.command_lines());
    }

    #[test]
    fn go_settings_are_refused() {
        let mut case = Case::new(CONSOLE_NET8);
        case.settings.packages = vec!["./cmd/x".into()];
        let tools = sdk8();
        let err = DotNet.check(&case.ctx(&tools, Target::wasm(Mode::Command))).unwrap_err().to_string();
        assert!(err.contains("there is no PACKAGE to choose"), "{err}");
        case.settings = Settings { ldflags: Some("-s".into()), ..Settings::default() };
        let err = DotNet.check(&case.ctx(&tools, Target::wasm(Mode::Command))).unwrap_err().to_string();
        assert!(err.contains("`go build` options"), "{err}");
    }

    #[test]
    fn check_passes_on_a_machine_with_the_route() {
        let case = Case::new(CONSOLE_NET8);
        DotNet.check(&case.ctx(&sdk8(), Target::wasm(Mode::Command))).unwrap();
    }

    #[test]
    fn publish_runs_for_wasi_and_hands_over_the_app_bundle() {
        let case = Case::new(CONSOLE_NET8);
        let bundle_dir = case.dir.path().join("bin/Release/net8.0/wasi-wasm/AppBundle");
        let made = bundle_dir.clone();
        // The fake SDK lays the bundle out where the real one does, when publish runs.
        let tools = sdk8().respond(move |inv| {
            inv.command_line().starts_with("dotnet publish").then(|| {
                layout::tests::app_bundle(&made, "Hello");
                finished(0, "  Hello -> /p/bin/Release/net8.0/wasi-wasm/AppBundle/\n", "")
            })
        });
        let ctx = case.ctx(&tools, Target::wasm(Mode::Command));
        let program = Program { name: "hello".into(), package: None };
        let output = DotNet.build(&ctx, &program).unwrap();
        assert_eq!(
            output,
            Output::Bundle(Bundle { dir: bundle_dir, entry: "dotnet.wasm".into(), args: vec!["Hello".into()] })
        );
        let csproj = case.project.marker.display();
        assert_eq!(tools.command_lines(), [format!("dotnet publish {csproj} -c Release -r wasi-wasm --nologo")]);
    }

    #[test]
    fn several_frameworks_publish_the_chosen_one() {
        let case = Case::new(&CONSOLE_NET8.replace(
            "<TargetFramework>net8.0</TargetFramework>",
            "<TargetFrameworks>net9.0;net8.0</TargetFrameworks>",
        ));
        let file = ProjectFile::read(&case.project.marker).unwrap();
        let route = Route::of(&file).unwrap();
        let tools = FakeTools::new();
        let line = publish(&case.ctx(&tools, Target::wasm(Mode::Command)), &file, &route).command_line();
        assert!(line.ends_with("-c Release -r wasi-wasm -f net8.0 --nologo"), "{line}");
    }

    #[test]
    fn a_failed_publish_shows_msbuild_output_and_the_hint() {
        let case = Case::new(CONSOLE_NET8);
        let tools = sdk8().answer(
            "dotnet",
            "publish",
            1,
            "/p/Hello.csproj : error NETSDK1147: To build this project, the following workloads must be installed: \
             wasi-experimental\n",
            "",
        );
        let err = DotNet
            .build(&case.ctx(&tools, Target::wasm(Mode::Command)), &Program { name: "h".into(), package: None })
            .unwrap_err()
            .to_string();
        assert!(err.contains("NETSDK1147"), "{err}");
        assert!(err.ends_with("(with sudo if the SDK is system-wide)"), "{err}");
    }

    #[test]
    fn hints_point_at_the_fix() {
        for (output, expect) in [
            ("error : The 'wasi-experimental' workload is not supported in .NET 9", ".NET 9 has no WASI support"),
            ("error : Could not find wasi-sdk. Install wasi-sdk and set $(WASI_SDK_PATH)", "WASI_SDK_PATH"),
            ("error NETSDK1045: The current .NET SDK does not support targeting .NET 10.0.", "newer .NET SDK"),
            ("error NU1101: Unable to find package Microsoft.DotNet.ILCompiler.LLVM", "dotnet-experimental feed"),
        ] {
            let hint = DotNet.hint(output).unwrap_or_default();
            assert!(hint.contains(expect), "{output}: {hint}");
        }
        assert_eq!(DotNet.hint("error CS1002: ; expected"), None);
    }
}
