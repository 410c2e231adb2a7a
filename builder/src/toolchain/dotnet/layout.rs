//! Where `dotnet publish` leaves a WASI build, by route, and what fabricks takes from it.
//!
//! - Workload: `WasmAppDir` defaults to `$(OutputPath)AppBundle` (dotnet/runtime
//!   `src/mono/wasm/build/WasmApp.Common.targets`), `OutputPath` being
//!   `bin/<Configuration>/<tfm>/wasi-wasm/` (RID appended; the WASI build tests'
//!   `GetBinDir` + `"AppBundle"` in `src/mono/wasi/Wasi.Build.Tests/BuildTestBase.cs`).
//!   In it `dotnet.wasm` and `managed/` (WasiAppBuilder.cs), or with WasmSingleFileBundle
//!   `<AssemblyName>.wasm` (WasiApp.targets, `_WasiGetWasiOutputFileName`).
//! - componentize-dotnet: `bin/<Configuration>/<tfm>/wasi-wasm/publish/<AssemblyName>.wasm`;
//!   its tests also find builds under `wasi-wasm/native/` (componentize-dotnet
//!   `test/WasmComponentSdkTest/WasmComponentSdkTest/SimpleProducerConsumerTest.cs`).
//!
//! The documented place is tried first; projects that move their output
//! (`UseArtifactsOutput`, `BaseOutputPath`) are searched for under `bin/` and `artifacts/`.

use super::route::{Layout, Route};
use crate::toolchain::appbundle;
use crate::toolchain::Output;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The configuration fabricks publishes.
pub const CONFIGURATION: &str = "Release";

/// Finds what the publish of `assembly` left in `project_dir`; `since` excludes older leftovers.
pub fn find_output(route: &Route, project_dir: &Path, assembly: &str, since: SystemTime) -> Result<Output> {
    let rid_dir = project_dir.join("bin").join(CONFIGURATION).join(&route.tfm().moniker).join("wasi-wasm");
    let layout = route.layout();
    let documented: Vec<PathBuf> = match layout {
        Layout::AppBundle => vec![rid_dir.join("AppBundle")],
        Layout::SingleFile => vec![rid_dir.join("AppBundle").join(format!("{assembly}.wasm"))],
        Layout::ComponentizePublish => vec![
            rid_dir.join("publish").join(format!("{assembly}.wasm")),
            rid_dir.join("native").join(format!("{assembly}.wasm")),
        ],
    };
    for candidate in &documented {
        if let Some(output) = take(layout, candidate, assembly)? {
            return Ok(output);
        }
    }
    let mut found = search(project_dir, layout, assembly);
    found.retain(|p| modified(p).is_some_and(|m| m >= since));
    found.sort_by_key(|p| std::cmp::Reverse(modified(p)));
    for candidate in &found {
        if let Some(output) = take(layout, candidate, assembly)? {
            log::info!("Found the build at {} (not at the SDK's default place)", candidate.display());
            return Ok(output);
        }
    }
    bail!(
        "`dotnet publish` finished but left no {} for {assembly}: looked at {} and searched bin/ and artifacts/ \
         of {}; if the project moves its output elsewhere, build it with the defaults",
        match layout {
            Layout::AppBundle => "AppBundle".to_owned(),
            _ => format!("{assembly}.wasm"),
        },
        documented.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and "),
        project_dir.display()
    )
}

/// The output at `candidate`, if it is one of `layout`. File names match without
/// regard to case: NativeAOT has been seen to lowercase them.
fn take(layout: Layout, candidate: &Path, assembly: &str) -> Result<Option<Output>> {
    match layout {
        Layout::AppBundle => match candidate.join("dotnet.wasm").is_file() {
            true => Ok(Some(Output::Bundle(appbundle::read(candidate, Some(assembly))?))),
            false => Ok(None),
        },
        Layout::SingleFile | Layout::ComponentizePublish => {
            let (Some(dir), Some(name)) = (candidate.parent(), candidate.file_name()) else { return Ok(None) };
            let name = name.to_string_lossy().to_lowercase();
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(_) => return Ok(None),
            };
            Ok(entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.is_file() && p.file_name().is_some_and(|n| n.to_string_lossy().to_lowercase() == name))
                .map(Output::File))
        }
    }
}

/// Places under `bin/` and `artifacts/` that look like `layout`'s output.
fn search(project_dir: &Path, layout: Layout, assembly: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for root in ["bin", "artifacts"] {
        walk(&project_dir.join(root), 0, &mut |path| {
            let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
            let parent = path.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().to_lowercase());
            let hit = match layout {
                Layout::AppBundle => name == "appbundle" && path.is_dir(),
                Layout::SingleFile => {
                    name == format!("{}.wasm", assembly.to_lowercase()) && parent.as_deref() == Some("appbundle")
                }
                Layout::ComponentizePublish => {
                    name == format!("{}.wasm", assembly.to_lowercase())
                        && matches!(parent.as_deref(), Some("publish") | Some("native"))
                }
            };
            if hit {
                found.push(path.to_owned());
            }
        });
    }
    found
}

fn walk(dir: &Path, depth: usize, visit: &mut dyn FnMut(&Path)) {
    if depth > 7 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        visit(&path);
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&path, depth + 1, visit);
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

#[cfg(test)]
pub mod tests {
    use super::super::route::Tfm;
    use super::*;
    use crate::toolchain::Bundle;

    /// An AppBundle as WasiAppBuilder.cs and WasiApp.targets lay it out for `App`
    /// (dotnet/runtime `src/tasks/WasmAppBuilder/wasi/WasiAppBuilder.cs`: `managed/` holds
    /// the assemblies, the native assets and the runtime config sit at the top;
    /// `_GenerateRunWasmtimeScript` writes `run-wasmtime.sh`).
    pub fn app_bundle(dir: &Path, app: &str) {
        std::fs::create_dir_all(dir.join("managed")).unwrap();
        std::fs::write(dir.join("dotnet.wasm"), b"\0asm\x01\0\0\0").unwrap();
        for dll in [app, "System.Private.CoreLib", "System.Runtime", "System.Console"] {
            std::fs::write(dir.join("managed").join(format!("{dll}.dll")), b"MZ").unwrap();
        }
        std::fs::write(dir.join(format!("{app}.runtimeconfig.json")), "{\"runtimeOptions\":{}}").unwrap();
        std::fs::write(dir.join("runtimeconfig.bin"), b"\x01").unwrap();
        std::fs::write(dir.join("icudt.dat"), b"icu").unwrap();
        std::fs::write(dir.join("run-wasmtime.sh"), format!("wasmtime run --dir . dotnet.wasm {app} $*\n")).unwrap();
    }

    fn workload(tfm: &str, single_file: bool) -> Route {
        let major = tfm[3..tfm.find('.').unwrap()].parse().unwrap();
        Route::Workload { tfm: Tfm { moniker: tfm.into(), major }, single_file, relink: None }
    }

    fn long_ago() -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    #[test]
    fn finds_the_app_bundle_named_after_the_assembly() {
        let project = tempfile::tempdir().unwrap();
        let bundle_dir = project.path().join("bin/Release/net8.0/wasi-wasm/AppBundle");
        app_bundle(&bundle_dir, "Hello.App");
        let output = find_output(&workload("net8.0", false), project.path(), "Hello.App", long_ago()).unwrap();
        assert_eq!(
            output,
            Output::Bundle(Bundle { dir: bundle_dir, entry: "dotnet.wasm".into(), args: vec!["Hello.App".into()] })
        );
    }

    #[test]
    fn finds_the_single_file_module_in_the_app_bundle() {
        let project = tempfile::tempdir().unwrap();
        let dir = project.path().join("bin/Release/net10.0/wasi-wasm/AppBundle");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Hello.wasm"), b"\0asm").unwrap();
        let output = find_output(&workload("net10.0", true), project.path(), "Hello", long_ago()).unwrap();
        assert_eq!(output, Output::File(dir.join("Hello.wasm")));
    }

    #[test]
    fn finds_the_componentize_output_in_publish_or_native_whatever_its_case() {
        let project = tempfile::tempdir().unwrap();
        let route = Route::Componentize { tfm: Tfm { moniker: "net10.0".into(), major: 10 } };
        let native = project.path().join("bin/Release/net10.0/wasi-wasm/native");
        std::fs::create_dir_all(&native).unwrap();
        std::fs::write(native.join("hellohttp.wasm"), b"\0asm").unwrap();
        let output = find_output(&route, project.path(), "HelloHttp", long_ago()).unwrap();
        assert_eq!(output, Output::File(native.join("hellohttp.wasm")));
        let publish = project.path().join("bin/Release/net10.0/wasi-wasm/publish");
        std::fs::create_dir_all(&publish).unwrap();
        std::fs::write(publish.join("HelloHttp.wasm"), b"\0asm").unwrap();
        let output = find_output(&route, project.path(), "HelloHttp", long_ago()).unwrap();
        assert_eq!(output, Output::File(publish.join("HelloHttp.wasm")), "publish/ is what `dotnet publish` writes");
    }

    #[test]
    fn an_artifacts_layout_is_searched_and_stale_builds_are_not_taken() {
        let project = tempfile::tempdir().unwrap();
        let moved = project.path().join("artifacts/bin/Hello/release_wasi-wasm/AppBundle");
        app_bundle(&moved, "Hello");
        let output = find_output(&workload("net8.0", false), project.path(), "Hello", long_ago()).unwrap();
        assert!(matches!(output, Output::Bundle(b) if b.dir == moved));
        let later = SystemTime::now() + std::time::Duration::from_secs(3600);
        let err = find_output(&workload("net8.0", false), project.path(), "Hello", later).unwrap_err().to_string();
        assert!(err.contains("left no AppBundle for Hello"), "{err}");
        assert!(err.contains("bin/Release/net8.0/wasi-wasm/AppBundle"), "{err}");
    }

    #[test]
    fn a_bundle_of_another_assembly_is_not_this_build() {
        let project = tempfile::tempdir().unwrap();
        app_bundle(&project.path().join("bin/Release/net8.0/wasi-wasm/AppBundle"), "Other");
        let err =
            format!("{:#}", find_output(&workload("net8.0", false), project.path(), "Hello", long_ago()).unwrap_err());
        assert!(err.contains("managed/Hello.dll"), "{err}");
    }
}
