//! Which way to WebAssembly a .NET project takes, decided from its project file alone,
//! and what that way needs on the machine.
//!
//! The routes, and where each fact comes from:
//! - the SDK's `wasi-experimental` workload (Mono interpreter compiled to `dotnet.wasm`):
//!   dotnet/runtime `src/mono/wasi/README.md`, `src/mono/wasi/build/WasiApp.targets`,
//!   the workload manifests `src/mono/nuget/Microsoft.NET.Workload.Mono.Toolchain.*.Manifest`
//!   (`wasi-experimental` in the SDK's own major version, `wasi-experimental-netN` for an
//!   earlier N). .NET 8 emits a WASI preview-1 module; .NET 10 a preview-2 component
//!   (dotnet/runtime PR #104683). .NET 9's SDK refuses the workload (PR #108877).
//! - componentize-dotnet (`BytecodeAlliance.Componentize.DotNet.Wasm.SDK`, NativeAOT-LLVM):
//!   bytecodealliance/componentize-dotnet `README.md`,
//!   `src/WasmComponent.Sdk/build/BytecodeAlliance.Componentize.DotNet.Wasm.SDK.props`:
//!   one component; the compiler packages come from the `dotnet-experimental` feed.

use super::msbuild::{nearest, ProjectFile};
use crate::toolchain::{Invocation, Tools};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};

pub const COMPONENTIZE_PACKAGE: &str = "BytecodeAlliance.Componentize.DotNet.Wasm.SDK";
pub const EXPERIMENTAL_FEED: &str =
    "https://pkgs.dev.azure.com/dnceng/public/_packaging/dotnet-experimental/nuget/v3/index.json";

/// A target framework moniker with a version: `net8.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tfm {
    pub moniker: String,
    pub major: u32,
}

impl Tfm {
    /// `netN.M` (modern .NET); anything else has no WASI route.
    pub fn parse(moniker: &str) -> Option<Tfm> {
        let version = moniker.strip_prefix("net")?;
        let (major, minor) = version.split_once('.')?;
        let major: u32 = major.parse().ok()?;
        minor.parse::<u32>().ok()?;
        (major >= 5).then(|| Tfm { moniker: moniker.to_owned(), major })
    }
}

/// How a project becomes WebAssembly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The SDK's wasi-experimental workload.
    Workload {
        tfm: Tfm,
        /// `WasmSingleFileBundle`: one `<App>.wasm` instead of an AppBundle directory.
        single_file: bool,
        /// Why the build relinks `dotnet.wasm` natively (and so needs a WASI SDK), if it does.
        relink: Option<&'static str>,
    },
    /// componentize-dotnet: one component.
    Componentize { tfm: Tfm },
}

/// What a route's output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `bin/<Cfg>/<tfm>/wasi-wasm/AppBundle/`: `dotnet.wasm`, `managed/*.dll`, … (WasiAppBuilder.cs).
    AppBundle,
    /// `bin/<Cfg>/<tfm>/wasi-wasm/AppBundle/<App>.wasm` (WasiApp.targets, `_WasiGetWasiOutputFileName`).
    SingleFile,
    /// `bin/<Cfg>/<tfm>/wasi-wasm/publish/<App>.wasm`.
    ComponentizePublish,
}

impl Route {
    pub fn of(file: &ProjectFile) -> Result<Route> {
        let componentize = file.references(COMPONENTIZE_PACKAGE);
        let tfm = target_framework(file, componentize)?;
        if componentize {
            return Ok(Route::Componentize { tfm });
        }
        ensure!(
            file.property("OutputType").is_some_and(|t| t.eq_ignore_ascii_case("exe")),
            "{} is not an executable (its OutputType is {}): the wasi-experimental workload builds console apps; \
             set <OutputType>Exe</OutputType>, or reference {COMPONENTIZE_PACKAGE} for a wasi:http component",
            file.path.display(),
            file.property("OutputType").unwrap_or("Library, the SDK default")
        );
        let single_file = file.is_true("WasmSingleFileBundle");
        let relink = if single_file {
            Some("WasmSingleFileBundle links the assemblies into the module")
        } else if file.is_true("RunAOTCompilation") {
            Some("RunAOTCompilation compiles the assemblies to wasm")
        } else if file.native_file_references > 0 {
            Some("NativeFileReference items are linked into dotnet.wasm")
        } else if file.is_true("WasmBuildNative") {
            Some("WasmBuildNative relinks dotnet.wasm")
        } else if file.is_true("WasmEnableSIMD") {
            Some("WasmEnableSIMD relinks dotnet.wasm")
        } else {
            None
        };
        Ok(Route::Workload { tfm, single_file, relink })
    }

    pub fn tfm(&self) -> &Tfm {
        match self {
            Route::Workload { tfm, .. } | Route::Componentize { tfm } => tfm,
        }
    }

    pub fn layout(&self) -> Layout {
        match self {
            Route::Workload { single_file: true, .. } => Layout::SingleFile,
            Route::Workload { .. } => Layout::AppBundle,
            Route::Componentize { .. } => Layout::ComponentizePublish,
        }
    }

    /// For messages: the framework, the way and what comes out.
    pub fn describe(&self) -> String {
        let tfm = &self.tfm().moniker;
        match self {
            Route::Componentize { .. } => {
                format!("{tfm} with componentize-dotnet (NativeAOT-LLVM): one wasm component")
            }
            Route::Workload { tfm: t, single_file, .. } => {
                let what = if t.major >= 10 { "a WASI preview-2 component" } else { "a WASI preview-1 module" };
                let shape = if *single_file { "in one file (WasmSingleFileBundle)" } else { "with its AppBundle" };
                format!("{tfm} with the wasi-experimental workload: {what} {shape}")
            }
        }
    }

    /// The workload an SDK of `sdk_major` needs for this route: its own major's is
    /// `wasi-experimental`, an earlier framework's `wasi-experimental-netN`.
    pub fn workload(&self, sdk_major: u32) -> Option<String> {
        match self {
            Route::Workload { tfm, .. } if tfm.major == sdk_major => Some("wasi-experimental".to_owned()),
            Route::Workload { tfm, .. } => Some(format!("wasi-experimental-net{}", tfm.major)),
            Route::Componentize { .. } => None,
        }
    }
}

/// The one target framework to build: the project's, or the one of its list that has a route.
fn target_framework(file: &ProjectFile, componentize: bool) -> Result<Tfm> {
    let listed = file.target_frameworks();
    let name = file.path.display();
    ensure!(
        !listed.is_empty(),
        "{name} names no TargetFramework; set <TargetFramework>net8.0</TargetFramework> (or net10.0)"
    );
    let routed: Vec<Tfm> = listed.iter().filter_map(|m| usable(m, componentize).ok()).collect();
    match routed.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(usable(&listed[0], componentize).unwrap_err().context(format!("in {name}"))),
        several => bail!(
            "{name} targets {} and each can build for WASI; fabricks builds one: \
             set <TargetFramework> to the one to ship",
            several.iter().map(|t| t.moniker.as_str()).collect::<Vec<_>>().join(" and ")
        ),
    }
}

/// Why `moniker` has no WASI route, if it has none.
fn usable(moniker: &str, componentize: bool) -> Result<Tfm> {
    let Some(tfm) = Tfm::parse(moniker) else {
        bail!("{moniker} has no WASI route: WebAssembly needs .NET 8 (net8.0) or .NET 10 (net10.0)");
    };
    if componentize {
        ensure!(tfm.major >= 8, "{moniker}: componentize-dotnet needs .NET 8 or newer (its templates use net10.0)");
        return Ok(tfm);
    }
    match tfm.major {
        8 => Ok(tfm),
        9 => bail!(
            "{moniker}: .NET 9 has no WASI support: its SDK refuses the wasi-experimental workload \
             (\"The 'wasi-experimental' workload is not supported in .NET 9\", dotnet/runtime PR #108877); \
             target net8.0 (a WASI preview-1 module) or net10.0 (a preview-2 component)"
        ),
        n if n >= 10 => Ok(tfm),
        _ => bail!(
            "{moniker} has no WASI route: the wasi-experimental workload starts with .NET 8; target net8.0 or net10.0"
        ),
    }
}

/// The SDK found on the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdk {
    pub version: String,
    pub major: u32,
}

/// Everything the route needs, checked in the order a user would fix it, each error
/// naming the command that fixes it. Runs `dotnet --version` and (for the workload)
/// `dotnet workload list` in the project directory, so a `global.json` there applies.
pub fn check_machine(route: &Route, file: &ProjectFile, dir: &Path, tools: &dyn Tools) -> Result<Sdk> {
    let tfm = route.tfm();
    ensure!(tools.find("dotnet").is_some(), "{}", missing_dotnet(route));
    let sdk = sdk_version(dir, tools)?;
    ensure!(
        sdk.major >= tfm.major,
        "`dotnet --version` in {} is {}, which cannot build {}: install the .NET {} SDK ({}){}",
        dir.display(),
        sdk.version,
        tfm.moniker,
        tfm.major,
        install_sdk(tfm.major),
        if nearest(dir, "global.json").is_some() { "; a global.json above the project pins the SDK" } else { "" }
    );
    if let Some(workload) = route.workload(sdk.major) {
        let installed = installed_workloads(dir, tools)?;
        ensure!(
            installed.contains(&workload),
            "the {workload} workload (the SDK's WASI support for {}) is not installed in the .NET {} SDK{}: \
             run `dotnet workload install {workload}` (with sudo if the SDK is installed system-wide)",
            tfm.moniker,
            sdk.version,
            if installed.is_empty() { String::new() } else { format!(" (installed: {})", installed.join(", ")) }
        );
    }
    if let Route::Workload { relink: Some(why), .. } = route {
        check_wasi_sdk(why, file, tools)?;
    }
    if let Route::Componentize { .. } = route {
        check_experimental_feed(dir, tools)?;
    }
    Ok(sdk)
}

fn missing_dotnet(route: &Route) -> String {
    let major = route.tfm().major;
    let then = match route {
        Route::Workload { .. } => "then `dotnet workload install wasi-experimental`".to_owned(),
        Route::Componentize { .. } => {
            format!("the build then restores {COMPONENTIZE_PACKAGE} and NativeAOT-LLVM from NuGet")
        }
    };
    format!(
        "`dotnet` is not on PATH: this project builds as {}, which needs the .NET {major} SDK. \
         Install it ({}), {then}",
        route.describe(),
        install_sdk(major)
    )
}

fn install_sdk(major: u32) -> String {
    format!(
        "https://dotnet.microsoft.com/download/dotnet/{major}.0, or \
         `curl -sSL https://dot.net/v1/dotnet-install.sh | bash -s -- --channel {major}.0` and put ~/.dotnet on PATH"
    )
}

fn sdk_version(dir: &Path, tools: &dyn Tools) -> Result<Sdk> {
    let version = Invocation::new("dotnet", dir).arg("--version");
    let output = tools.output(&version).context("running `dotnet --version`")?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() {
        let all = format!("{text}\n{}", String::from_utf8_lossy(&output.stderr));
        bail!(
            "`dotnet --version` failed in {} ({}): {}{}",
            dir.display(),
            output.status,
            all.trim(),
            if all.contains("global.json") || all.contains("compatible .NET SDK") {
                "\na global.json pins an SDK that is not installed: install that SDK or change the global.json"
            } else {
                ""
            }
        );
    }
    let major = text.split('.').next().and_then(|m| m.parse().ok());
    let Some(major) = major else { bail!("`dotnet --version` said {text:?}, which is not an SDK version") };
    Ok(Sdk { version: text, major })
}

/// Workload ids from `dotnet workload list`: the first word of each row of its table.
pub fn installed_workloads(dir: &Path, tools: &dyn Tools) -> Result<Vec<String>> {
    let list = Invocation::new("dotnet", dir).args(["workload", "list"]);
    let output = tools.output(&list).context("running `dotnet workload list`")?;
    ensure!(
        output.status.success(),
        "`dotnet workload list` failed in {} ({}): {}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(workload_ids(&String::from_utf8_lossy(&output.stdout)))
}

fn workload_ids(table: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut in_table = false;
    for line in table.lines() {
        let line = line.trim();
        if line.starts_with("---") {
            in_table = true;
        } else if line.is_empty() {
            if in_table && !ids.is_empty() {
                break;
            }
        } else if in_table {
            if let Some(id) = line.split_whitespace().next() {
                ids.push(id.to_owned());
            }
        }
    }
    ids
}

/// A WASI SDK as WasiSdk.Defaults.props looks for it: `$(WASI_SDK_PATH)` (a property or
/// the environment) with `VERSION`, `bin/clang` and `share/wasi-sysroot` in it.
fn check_wasi_sdk(why: &str, file: &ProjectFile, tools: &dyn Tools) -> Result<PathBuf> {
    let given = file
        .property("WASI_SDK_PATH")
        .map(PathBuf::from)
        .or_else(|| tools.var("WASI_SDK_PATH").map(PathBuf::from).filter(|p| !p.as_os_str().is_empty()));
    let problem = match &given {
        None => "WASI_SDK_PATH is not set".to_owned(),
        Some(path) => match ["VERSION", "bin/clang", "share/wasi-sysroot"].iter().find(|p| !path.join(p).exists()) {
            Some(missing) => format!("WASI_SDK_PATH={} has no {missing}", path.display()),
            None => return Ok(given.unwrap()),
        },
    };
    bail!(
        "{why}, which needs a WASI SDK, and {problem}: download a wasi-sdk release \
         (https://github.com/WebAssembly/wasi-sdk/releases, wasi-sdk-*-x86_64-linux.tar.gz), unpack it and \
         `export WASI_SDK_PATH=/path/to/wasi-sdk-NN.0-x86_64-linux` (the directory holding VERSION, bin/clang \
         and share/wasi-sysroot)"
    )
}

/// componentize-dotnet's compiler (Microsoft.DotNet.ILCompiler.LLVM) is on the
/// dotnet-experimental feed only: some NuGet config NuGet reads must list it.
fn check_experimental_feed(dir: &Path, tools: &dyn Tools) -> Result<()> {
    let mut configs: Vec<PathBuf> = dir
        .ancestors()
        .flat_map(|d| ["nuget.config", "NuGet.Config", "NuGet.config"].map(|n| d.join(n)))
        .filter(|p| p.is_file())
        .collect();
    if let Some(home) = tools.home() {
        configs.push(home.join(".nuget/NuGet/NuGet.Config"));
    }
    for config in configs.iter().filter(|p| p.is_file()) {
        let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
        if lists_experimental_feed(&text) {
            return Ok(());
        }
    }
    bail!(
        "componentize-dotnet compiles with NativeAOT-LLVM (Microsoft.DotNet.ILCompiler.LLVM), which is published on \
         the dotnet-experimental feed, not nuget.org, and no nuget.config in {} or above (nor ~/.nuget/NuGet/NuGet.Config) \
         lists that feed: run `dotnet new nugetconfig` in {} and \
         `dotnet nuget add source {EXPERIMENTAL_FEED} --name dotnet-experimental --configfile nuget.config`",
        dir.display(),
        dir.display()
    )
}

fn lists_experimental_feed(config: &str) -> bool {
    let Ok(doc) = roxmltree::Document::parse(config) else { return false };
    doc.descendants()
        .filter(|n| n.has_tag_name("add"))
        .filter(|n| n.ancestors().any(|a| a.has_tag_name("packageSources")))
        .any(|n| n.attribute("value").is_some_and(|v| v.to_ascii_lowercase().contains("dotnet-experimental")))
}

#[cfg(test)]
mod tests {
    use super::super::super::tools::fake::FakeTools;
    use super::*;

    /// A project file written as the templates write them (wasiconsole: dotnet/runtime
    /// `src/mono/wasi/Wasi.Build.Tests/BuildTestBase.cs` SimpleProjectTemplate; componentize:
    /// componentize-dotnet `templates/content/wasi-cli/wasi-cli.csproj`).
    pub fn csproj(dir: &Path, tfm: &str, extra_properties: &str, items: &str) -> ProjectFile {
        let path = dir.join("Hello.csproj");
        std::fs::write(
            &path,
            format!(
                "<Project Sdk=\"Microsoft.NET.Sdk\">\n  <PropertyGroup>\n    <TargetFramework>{tfm}</TargetFramework>\n\
                 \x20   <RuntimeIdentifier>wasi-wasm</RuntimeIdentifier>\n    <OutputType>Exe</OutputType>\n\
                 \x20   {extra_properties}\n  </PropertyGroup>\n  <ItemGroup>{items}</ItemGroup>\n</Project>\n"
            ),
        )
        .unwrap();
        ProjectFile::read(&path).unwrap()
    }

    const COMPONENTIZE: &str =
        "<PackageReference Include=\"BytecodeAlliance.Componentize.DotNet.Wasm.SDK\" Version=\"0.8.0-preview*\" />";

    #[test]
    fn net8_takes_the_workload_to_a_preview1_module() {
        let dir = tempfile::tempdir().unwrap();
        let route = Route::of(&csproj(dir.path(), "net8.0", "", "")).unwrap();
        assert_eq!(
            route,
            Route::Workload { tfm: Tfm { moniker: "net8.0".into(), major: 8 }, single_file: false, relink: None }
        );
        assert_eq!(route.layout(), Layout::AppBundle);
        assert!(route.describe().contains("preview-1 module with its AppBundle"), "{}", route.describe());
        assert_eq!(route.workload(8).as_deref(), Some("wasi-experimental"));
        assert_eq!(route.workload(10).as_deref(), Some("wasi-experimental-net8"));
    }

    #[test]
    fn net10_takes_the_workload_to_a_component_and_single_file_relinks() {
        let dir = tempfile::tempdir().unwrap();
        let file = csproj(dir.path(), "net10.0", "<WasmSingleFileBundle>true</WasmSingleFileBundle>", "");
        let route = Route::of(&file).unwrap();
        assert_eq!(route.layout(), Layout::SingleFile);
        assert!(matches!(route, Route::Workload { relink: Some(_), .. }));
        assert!(route.describe().contains("preview-2 component in one file"), "{}", route.describe());
        assert_eq!(route.workload(10).as_deref(), Some("wasi-experimental"));
    }

    #[test]
    fn net9_explains_that_it_has_no_wasi_support() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", Route::of(&csproj(dir.path(), "net9.0", "", "")).unwrap_err());
        assert!(err.contains(".NET 9 has no WASI support"), "{err}");
        assert!(err.contains("net8.0") && err.contains("net10.0"), "{err}");
    }

    #[test]
    fn old_and_odd_frameworks_have_no_route() {
        let dir = tempfile::tempdir().unwrap();
        for tfm in ["net7.0", "netcoreapp3.1", "netstandard2.0", "net48", "net8.0-browser"] {
            let err = format!("{:#}", Route::of(&csproj(dir.path(), tfm, "", "")).unwrap_err());
            assert!(err.contains("WASI route") || err.contains("no WASI"), "{tfm}: {err}");
        }
    }

    #[test]
    fn a_list_of_frameworks_needs_exactly_one_with_a_route() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Multi.csproj");
        let write = |list: &str| {
            std::fs::write(
                &path,
                format!("<Project><PropertyGroup><TargetFrameworks>{list}</TargetFrameworks><OutputType>Exe</OutputType></PropertyGroup></Project>"),
            )
            .unwrap();
            Route::of(&ProjectFile::read(&path).unwrap())
        };
        assert_eq!(write("net9.0;net8.0;netstandard2.0").unwrap().tfm().moniker, "net8.0");
        let err = write("net8.0;net10.0").unwrap_err().to_string();
        assert!(err.contains("net8.0 and net10.0") && err.contains("fabricks builds one"), "{err}");
        let err = format!("{:#}", write("net9.0").unwrap_err());
        assert!(err.contains(".NET 9 has no WASI support"), "{err}");
    }

    #[test]
    fn a_library_is_refused_unless_componentize_builds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Lib.csproj");
        std::fs::write(
            &path,
            "<Project><PropertyGroup><TargetFramework>net8.0</TargetFramework></PropertyGroup></Project>",
        )
        .unwrap();
        let err = Route::of(&ProjectFile::read(&path).unwrap()).unwrap_err().to_string();
        assert!(err.contains("not an executable") && err.contains("<OutputType>Exe</OutputType>"), "{err}");
        std::fs::write(
            &path,
            format!("<Project><PropertyGroup><TargetFramework>net10.0</TargetFramework></PropertyGroup><ItemGroup>{COMPONENTIZE}</ItemGroup></Project>"),
        )
        .unwrap();
        let route = Route::of(&ProjectFile::read(&path).unwrap()).unwrap();
        assert_eq!(route, Route::Componentize { tfm: Tfm { moniker: "net10.0".into(), major: 10 } });
        assert_eq!(route.layout(), Layout::ComponentizePublish);
        assert_eq!(route.workload(10), None);
    }

    #[test]
    fn relinking_properties_are_named() {
        let dir = tempfile::tempdir().unwrap();
        for (property, expect) in [
            ("<RunAOTCompilation>true</RunAOTCompilation>", "RunAOTCompilation"),
            ("<WasmBuildNative>true</WasmBuildNative>", "WasmBuildNative"),
        ] {
            match Route::of(&csproj(dir.path(), "net8.0", property, "")).unwrap() {
                Route::Workload { relink: Some(why), .. } => assert!(why.contains(expect), "{why}"),
                other => panic!("{property}: {other:?}"),
            }
        }
        let native = csproj(dir.path(), "net8.0", "", "<NativeFileReference Include=\"x.c\" />");
        assert!(matches!(Route::of(&native).unwrap(), Route::Workload { relink: Some(_), .. }));
    }

    const WORKLOADS_NET8: &str = "\nInstalled Workload Id      Manifest Version       Installation Source\n\
        ---------------------------------------------------------------------\n\
        wasi-experimental          8.0.10/8.0.100         SDK 8.0.400\n\n\
        Use `dotnet workload search` to find additional workloads to install.\n";

    fn machine(version: &str, workloads: &str) -> FakeTools {
        FakeTools::new().program("dotnet").answer("dotnet", "--version", 0, &format!("{version}\n"), "").answer(
            "dotnet",
            "workload list",
            0,
            workloads,
            "",
        )
    }

    #[test]
    fn no_dotnet_names_the_sdk_the_install_and_the_route() {
        let dir = tempfile::tempdir().unwrap();
        let file = csproj(dir.path(), "net8.0", "", "");
        let route = Route::of(&file).unwrap();
        let err = check_machine(&route, &file, dir.path(), &FakeTools::new()).unwrap_err().to_string();
        for expected in [
            "`dotnet` is not on PATH",
            "net8.0 with the wasi-experimental workload",
            ".NET 8 SDK",
            "dotnet-install.sh",
            "--channel 8.0",
            "dotnet workload install wasi-experimental",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from: {err}");
        }
    }

    #[test]
    fn a_machine_with_sdk_and_workload_passes() {
        let dir = tempfile::tempdir().unwrap();
        let file = csproj(dir.path(), "net8.0", "", "");
        let route = Route::of(&file).unwrap();
        let tools = machine("8.0.404", WORKLOADS_NET8);
        let sdk = check_machine(&route, &file, dir.path(), &tools).unwrap();
        assert_eq!(sdk, Sdk { version: "8.0.404".into(), major: 8 });
        assert_eq!(tools.command_lines(), ["dotnet --version", "dotnet workload list"]);
        assert_eq!(tools.runs.lock().unwrap()[0].dir, dir.path(), "run where global.json applies");
    }

    #[test]
    fn a_missing_workload_names_the_one_for_this_sdk() {
        let dir = tempfile::tempdir().unwrap();
        let file = csproj(dir.path(), "net8.0", "", "");
        let route = Route::of(&file).unwrap();
        // SDK 10 building net8.0 needs the -net8 workload; the plain one is there.
        let tools = machine("10.0.100", &WORKLOADS_NET8.replace("8.0.10/8.0.100", "10.0.0/10.0.100"));
        let err = check_machine(&route, &file, dir.path(), &tools).unwrap_err().to_string();
        assert!(err.contains("run `dotnet workload install wasi-experimental-net8`"), "{err}");
        assert!(err.contains("(installed: wasi-experimental)"), "{err}");
    }

    #[test]
    fn an_sdk_older_than_the_framework_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("global.json"), "{\"sdk\":{\"version\":\"8.0.100\"}}").unwrap();
        let file = csproj(dir.path(), "net10.0", "", "");
        let route = Route::of(&file).unwrap();
        let err = check_machine(&route, &file, dir.path(), &machine("8.0.100", WORKLOADS_NET8)).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("is 8.0.100, which cannot build net10.0: install the .NET 10 SDK"), "{err}");
        assert!(err.contains("global.json"), "{err}");
    }

    #[test]
    fn a_broken_global_json_pin_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let file = csproj(dir.path(), "net8.0", "", "");
        let route = Route::of(&file).unwrap();
        let tools = FakeTools::new().program("dotnet").answer(
            "dotnet",
            "--version",
            145,
            "",
            "A compatible .NET SDK was not found.\nRequested SDK version: 8.0.999\nglobal.json file: /p/global.json",
        );
        let err = check_machine(&route, &file, dir.path(), &tools).unwrap_err().to_string();
        assert!(err.contains("a global.json pins an SDK that is not installed"), "{err}");
    }

    #[test]
    fn single_file_needs_a_wasi_sdk_where_the_targets_look() {
        let dir = tempfile::tempdir().unwrap();
        let file = csproj(dir.path(), "net8.0", "<WasmSingleFileBundle>true</WasmSingleFileBundle>", "");
        let route = Route::of(&file).unwrap();
        let err = check_machine(&route, &file, dir.path(), &machine("8.0.404", WORKLOADS_NET8)).unwrap_err();
        let err = err.to_string();
        assert!(err.starts_with("WasmSingleFileBundle links the assemblies into the module, which needs a WASI SDK"));
        assert!(err.contains("WASI_SDK_PATH is not set") && err.contains("export WASI_SDK_PATH="), "{err}");

        let sdk = tempfile::tempdir().unwrap();
        let tools = machine("8.0.404", WORKLOADS_NET8).var("WASI_SDK_PATH", sdk.path());
        let err = check_machine(&route, &file, dir.path(), &tools).unwrap_err().to_string();
        assert!(err.contains("has no VERSION"), "{err}");
        std::fs::write(sdk.path().join("VERSION"), "25.0\n").unwrap();
        std::fs::create_dir_all(sdk.path().join("bin")).unwrap();
        std::fs::write(sdk.path().join("bin/clang"), "").unwrap();
        std::fs::create_dir_all(sdk.path().join("share/wasi-sysroot")).unwrap();
        let tools = machine("8.0.404", WORKLOADS_NET8).var("WASI_SDK_PATH", sdk.path());
        check_machine(&route, &file, dir.path(), &tools).unwrap();
    }

    #[test]
    fn componentize_needs_the_experimental_feed_not_a_workload() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("app");
        std::fs::create_dir(&dir).unwrap();
        let file = csproj(&dir, "net10.0", "", COMPONENTIZE);
        let route = Route::of(&file).unwrap();
        let home = tempfile::tempdir().unwrap();
        let tools = || machine("10.0.100", "").var("HOME", home.path());
        let err = check_machine(&route, &file, &dir, &tools()).unwrap_err().to_string();
        assert!(err.contains("dotnet-experimental feed") && err.contains("dotnet nuget add source"), "{err}");
        // The feed in a nuget.config above the project is found, as NuGet finds it.
        std::fs::write(
            root.path().join("nuget.config"),
            format!("<configuration><packageSources><clear /><add key=\"dotnet-experimental\" value=\"{EXPERIMENTAL_FEED}\" />\
             <add key=\"nuget\" value=\"https://api.nuget.org/v3/index.json\" /></packageSources></configuration>"),
        )
        .unwrap();
        let tools = tools();
        check_machine(&route, &file, &dir, &tools).unwrap();
        assert_eq!(tools.command_lines(), ["dotnet --version"], "no workload is asked about");
    }

    #[test]
    fn workload_tables_are_read_row_by_row() {
        assert_eq!(workload_ids(WORKLOADS_NET8), ["wasi-experimental"]);
        assert!(workload_ids("\nNo workloads are installed.\n").is_empty());
        let two = "Installed Workload Id   Manifest Version\n-----\nwasm-tools  9.0.0/9.0.100  SDK 9.0.100\n\
                   wasi-experimental-net8  9.0.0/9.0.100  SDK 9.0.100\n";
        assert_eq!(workload_ids(two), ["wasm-tools", "wasi-experimental-net8"]);
    }
}
