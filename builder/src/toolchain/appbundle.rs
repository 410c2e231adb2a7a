//! A .NET AppBundle that was already published (by `dotnet publish` on another machine,
//! or in an earlier CI step): the directory itself is the project, packed as it is.
//!
//! Layout (dotnet/runtime `src/tasks/WasmAppBuilder/wasi/WasiAppBuilder.cs`,
//! `src/mono/wasi/build/WasiApp.targets`): `dotnet.wasm` (the runtime), `managed/*.dll`
//! (the app's `managed/<App>.dll` is the entry assembly), `<App>.runtimeconfig.json`,
//! `runtimeconfig.bin`, `icudt.dat` (not with InvariantGlobalization) and the launcher
//! `run-wasmtime.sh` (`wasmtime run --dir . dotnet.wasm <App> $*`). The runtime opens
//! `/runtimeconfig.bin` and `managed/<App>.dll` from the guest's root
//! (`src/mono/wasi/runtime/driver.c`, `APP_CONTEXT_BASE_DIRECTORY` is `/`), so the
//! bundle must be the guest's `/`.

use super::{BuildContext, Bundle, Output, Program, Project, Toolchain};
use anyhow::{bail, ensure, Context, Result};
use std::path::Path;

pub struct AppBundle;

const RUNTIME: &str = "dotnet.wasm";

impl Toolchain for AppBundle {
    fn language(&self) -> &'static str {
        ".NET AppBundle"
    }

    fn marker(&self) -> &'static str {
        "dotnet.wasm + managed/"
    }

    fn detect(&self, dir: &Path) -> Result<Option<Project>> {
        let marker = dir.join(RUNTIME);
        Ok((marker.is_file() && dir.join("managed").is_dir()).then(|| Project { dir: dir.to_owned(), marker }))
    }

    fn check(&self, ctx: &BuildContext) -> Result<()> {
        super::dotnet::refuse_targets(self.language(), ctx)?;
        super::refuse_packages(self.language(), ctx.settings)
    }

    /// Named after the app (the directory is usually just `AppBundle`), in the lowercase
    /// image names need.
    fn programs(&self, ctx: &BuildContext, _from: &Path) -> Result<Vec<Program>> {
        let bundle = read(&ctx.project.dir, None)?;
        Ok(vec![Program { name: image_name(&bundle.args[0]), package: None }])
    }

    fn build(&self, ctx: &BuildContext, _program: &Program) -> Result<Output> {
        Ok(Output::Bundle(read(&ctx.project.dir, None)?))
    }
}

/// The bundle in `dir`, run as `dotnet.wasm <App>`. `app` is the assembly the build was
/// of; without it, the bundle says (its runtime config, else its launcher script).
pub fn read(dir: &Path, app: Option<&str>) -> Result<Bundle> {
    ensure!(dir.join(RUNTIME).is_file(), "{} holds no {RUNTIME}: not an AppBundle", dir.display());
    let app = match app {
        Some(app) => app.to_owned(),
        None => app_name(dir)?,
    };
    let entry_assembly = dir.join("managed").join(format!("{app}.dll"));
    ensure!(
        entry_assembly.is_file(),
        "the AppBundle {} has no managed/{app}.dll, the assembly it would run; publish the project again",
        dir.display()
    );
    Ok(Bundle { dir: dir.to_owned(), entry: RUNTIME.to_owned(), args: vec![app] })
}

/// `<App>` of `<App>.runtimeconfig.json`, else of `run-wasmtime.sh`.
fn app_name(dir: &Path) -> Result<String> {
    let mut configs: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".runtimeconfig.json").map(str::to_owned))
        .collect();
    configs.sort();
    match configs.as_slice() {
        [one] => return Ok(one.clone()),
        [] => {}
        several => bail!(
            "{} holds runtime configs of several apps ({}); publish one app per AppBundle",
            dir.display(),
            several.join(", ")
        ),
    }
    let script = dir.join("run-wasmtime.sh");
    if let Ok(text) = std::fs::read_to_string(&script) {
        let words: Vec<&str> = text.split_whitespace().collect();
        if let Some(at) = words.iter().position(|w| *w == RUNTIME) {
            if let Some(app) = words.get(at + 1).filter(|w| !w.starts_with('$')) {
                return Ok((*app).to_owned());
            }
        }
    }
    bail!(
        "{} has no <App>.runtimeconfig.json and no run-wasmtime.sh naming the app: cannot tell which of managed/*.dll \
         to run; publish it again with `dotnet publish -r wasi-wasm`",
        dir.display()
    )
}

/// `Hello.App` → `hello.app`: image names are lowercase.
fn image_name(app: &str) -> String {
    app.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-' | '_') => c,
            _ => '-',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::dotnet::layout::tests::app_bundle;
    use super::*;

    #[test]
    fn a_published_bundle_is_recognised_and_runs_its_app() {
        let dir = tempfile::tempdir().unwrap();
        app_bundle(dir.path(), "Hello.App");
        let project = AppBundle.detect(dir.path()).unwrap().unwrap();
        assert_eq!(project.marker, dir.path().join("dotnet.wasm"));
        let bundle = read(dir.path(), None).unwrap();
        assert_eq!(bundle.args, ["Hello.App"]);
        assert_eq!(bundle.entry, "dotnet.wasm");
        assert_eq!(image_name("Hello.App"), "hello.app");
        assert_eq!(image_name("My App+1"), "my-app-1");
    }

    #[test]
    fn the_launcher_script_names_the_app_when_the_config_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        app_bundle(dir.path(), "Tool");
        std::fs::remove_file(dir.path().join("Tool.runtimeconfig.json")).unwrap();
        assert_eq!(read(dir.path(), None).unwrap().args, ["Tool"]);
        std::fs::remove_file(dir.path().join("run-wasmtime.sh")).unwrap();
        let err = read(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("cannot tell which of managed/*.dll"), "{err}");
    }

    #[test]
    fn a_runtime_without_managed_code_is_not_a_bundle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dotnet.wasm"), b"\0asm").unwrap();
        assert!(AppBundle.detect(dir.path()).unwrap().is_none());
        std::fs::create_dir(dir.path().join("managed")).unwrap();
        std::fs::write(dir.path().join("App.runtimeconfig.json"), "{}").unwrap();
        let err = read(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("has no managed/App.dll"), "{err}");
    }
}
