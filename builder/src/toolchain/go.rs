//! Go: `go.mod` modules, built with the Go toolchain's own wasip1 port. A module holds
//! one program at its root or several under `./cmd/NAME` (the usual layout of Go CLIs);
//! each main package is one program and one image.

use super::{BuildContext, Invocation, Output, Program, Toolchain};
use crate::project::Mode;
use anyhow::{bail, ensure, Context, Result};
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

pub struct Go;

/// The build tag that compiles in the Go SDK's side of the reactor ABI (docs/reactor-abi.md);
/// command builds must not import it.
const REACTOR_TAG: &str = "fabricks_reactor";

impl Toolchain for Go {
    fn language(&self) -> &'static str {
        "Go"
    }

    fn marker(&self) -> &'static str {
        "go.mod"
    }

    fn detect(&self, dir: &Path) -> Result<Option<super::Project>> {
        let marker = dir.join("go.mod");
        Ok(marker.is_file().then(|| super::Project { dir: dir.to_owned(), marker }))
    }

    fn owns_subdirectories(&self) -> bool {
        true
    }

    fn check(&self, ctx: &BuildContext) -> Result<()> {
        ensure!(
            ctx.tools.find("go").is_some(),
            "the `go` tool is not on PATH; install Go 1.21 or newer (https://go.dev/dl/) \
             and make sure `go version` works in this shell"
        );
        Ok(())
    }

    fn programs(&self, ctx: &BuildContext, from: &Path) -> Result<Vec<Program>> {
        let root = &ctx.project.dir;
        let packages = match (ctx.settings.packages.as_slice(), from == root.as_path()) {
            ([], false) => vec![main_package(root, from)?],
            ([], true) if is_main(root)? => vec![".".to_owned()],
            ([], true) => default_commands(root)?,
            (requested, _) => {
                let mut all = Vec::new();
                for spec in requested {
                    all.extend(resolve(root, from, spec)?);
                }
                all
            }
        };
        name_programs(&ctx.project.name()?, packages)
    }

    fn build(&self, ctx: &BuildContext, program: &Program) -> Result<Output> {
        let out = ctx.build_dir.join(match ctx.target.is_native() {
            true => program.name.clone(),
            false => format!("{}.wasm", program.name),
        });
        let invocation = go_build(ctx, program, &out);
        let output = match ctx.tools.output(&invocation) {
            Err(err) if err.kind() == ErrorKind::NotFound => bail!(
                "the `go` tool is not on PATH; install Go 1.21 or newer (https://go.dev/dl/) \
                 and make sure `go version` works in this shell"
            ),
            other => other.with_context(|| format!("starting `go build` in {}", invocation.dir.display()))?,
        };
        if !output.status.success() {
            return Err(super::tool_failed(self, &invocation, &output));
        }
        // Module downloads and similar notes are worth showing, not failing on.
        for line in String::from_utf8_lossy(&output.stderr).lines().filter(|l| !l.trim().is_empty()) {
            log::info!("{line}");
        }
        Ok(Output::File(out))
    }

    fn hint(&self, output: &str) -> Option<String> {
        output
            .contains("unsupported GOOS/GOARCH pair wasip1/wasm")
            .then(|| "Go 1.21 or newer is needed for GOOS=wasip1; check `go version`".to_owned())
    }
}

/// `go build` of one package, as a Go user would type it.
fn go_build(ctx: &BuildContext, program: &Program, out: &Path) -> Invocation {
    let mut go = Invocation::new("go", &ctx.project.dir).args(["build", "-trimpath"]);
    let reactor = ctx.target.mode() == Mode::Reactor;
    if reactor {
        // c-shared on wasip1 exports `_initialize` and the //go:wasmexport functions.
        go = go.arg("-buildmode=c-shared");
    }
    let tags = build_tags(&ctx.settings.tags, reactor, ctx.tools.var("GOFLAGS").as_deref());
    if !tags.is_empty() {
        go = go.args(["-tags", &tags.join(",")]);
    }
    if let Some(ldflags) = &ctx.settings.ldflags {
        go = go.arg(format!("-ldflags={ldflags}"));
    }
    go = go.arg("-o").arg(out).arg(program.package.as_deref().unwrap_or("."));
    match ctx.target.is_native() {
        // Static (no cgo), so the image needs no libc; GOARCH stays the host's.
        true => go.env("GOOS", "linux").env("CGO_ENABLED", "0"),
        false => go.env("GOOS", "wasip1").env("GOARCH", "wasm"),
    }
}

/// The `-tags` list: the user's, or for a reactor those of GOFLAGS (which a `-tags` on
/// the command line would otherwise silently replace) plus the reactor's own.
fn build_tags(requested: &[String], reactor: bool, goflags: Option<&OsStr>) -> Vec<String> {
    let mut tags: Vec<String> = requested.to_vec();
    if reactor {
        if tags.is_empty() {
            tags.extend(goflags_tags(&goflags.map(|g| g.to_string_lossy().into_owned()).unwrap_or_default()));
        }
        if !tags.iter().any(|t| t == REACTOR_TAG) {
            tags.push(REACTOR_TAG.to_owned());
        }
    }
    tags
}

/// Tags of a GOFLAGS value: each entry is one flag (`-tags=a,b` or `--tags=a,b`).
fn goflags_tags(goflags: &str) -> Vec<String> {
    goflags
        .split_whitespace()
        .filter_map(|flag| flag.strip_prefix("--tags=").or_else(|| flag.strip_prefix("-tags=")))
        .flat_map(|list| list.split(',').filter(|t| !t.is_empty()).map(str::to_owned))
        .collect()
}

/// Names each package's program: the module's directory for `.`, else the package
/// directory's last element (`./cmd/server` → `server`, as `go build` names binaries).
fn name_programs(module_name: &str, packages: Vec<String>) -> Result<Vec<Program>> {
    let mut programs: Vec<Program> = Vec::new();
    for package in packages {
        if programs.iter().any(|p| p.package.as_deref() == Some(package.as_str())) {
            continue;
        }
        let name = match package.as_str() {
            "." => module_name.to_owned(),
            path => path.rsplit('/').next().unwrap_or(path).to_owned(),
        };
        if let Some(other) = programs.iter().find(|p| p.name == name) {
            bail!(
                "{} and {package} would both be named {name:?}; build them one at a time \
                 (`fabricks build DIR {package} -t REF`)",
                other.package.as_deref().unwrap_or(".")
            );
        }
        programs.push(Program { name, package: Some(package) });
    }
    Ok(programs)
}

/// No package named, from the module root without a main package there: every main
/// package under `./cmd`.
fn default_commands(root: &Path) -> Result<Vec<String>> {
    let found = main_packages_below(root, &root.join("cmd"))?;
    ensure!(
        !found.is_empty(),
        "{} has no main package: none at the module root and none under ./cmd/; \
         name the one to build, e.g. `fabricks build {} ./path/to/main`",
        root.display(),
        root.display()
    );
    Ok(found)
}

/// The package in `dir`, a directory below the module root the user pointed at.
fn main_package(root: &Path, dir: &Path) -> Result<String> {
    let package = relative_package(root, dir)?;
    ensure!(
        is_main(dir)?,
        "{} is not a main package (no `package main` in its .go files); point fabricks at a command's directory",
        dir.display()
    );
    Ok(package)
}

/// What one PACKAGE argument names: `./cmd/server`, `cmd/server`, `server` (for
/// `./cmd/server`), the import path `example.com/mod/cmd/server`, or a `.../...` pattern.
/// Relative paths are taken from the directory the user pointed at, as `go build` does.
fn resolve(root: &Path, from: &Path, spec: &str) -> Result<Vec<String>> {
    if let Some(base) = spec.strip_suffix("/...").or((spec == "...").then_some("")) {
        let dir = directory_of(root, from, if base.is_empty() { "." } else { base })?;
        let found = main_packages_below(root, &dir)?;
        ensure!(!found.is_empty(), "{spec}: no main package in {}", dir.display());
        return Ok(found);
    }
    let dir = directory_of(root, from, spec)?;
    ensure!(
        is_main(&dir)?,
        "{spec} ({}) is not a main package: nothing to run; name a directory whose .go files say `package main`",
        dir.display()
    );
    Ok(vec![relative_package(root, &dir)?])
}

/// The directory a package spec names, checked to be inside the module.
fn directory_of(root: &Path, from: &Path, spec: &str) -> Result<PathBuf> {
    let module = module_path(root)?;
    let dir = if spec == "." || spec.starts_with("./") || spec.starts_with("../") {
        normalize(&from.join(spec))
    } else if let Some(rest) = module.as_deref().and_then(|m| import_suffix(spec, m)) {
        normalize(&root.join(rest))
    } else if !spec.contains('/') && root.join("cmd").join(spec).is_dir() {
        root.join("cmd").join(spec)
    } else {
        normalize(&from.join(spec))
    };
    ensure!(
        dir.starts_with(root),
        "{spec}: {} is outside the module at {}; fabricks builds packages of this module only",
        dir.display(),
        root.display()
    );
    ensure!(
        dir.is_dir(),
        "{spec}: no such package directory ({}){}",
        dir.display(),
        if spec.contains('/') { String::new() } else { format!("; looked for ./cmd/{spec} and ./{spec} too") }
    );
    Ok(dir)
}

/// `rest` of `module/rest`, `.` for the module itself.
fn import_suffix<'a>(spec: &'a str, module: &str) -> Option<&'a str> {
    match spec.strip_prefix(module)? {
        "" => Some("."),
        rest => rest.strip_prefix('/'),
    }
}

/// `.` or `./a/b` for a directory inside the module root.
fn relative_package(root: &Path, dir: &Path) -> Result<String> {
    let relative = dir
        .strip_prefix(root)
        .with_context(|| format!("{} is outside the module at {}", dir.display(), root.display()))?;
    let parts: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    Ok(match parts.is_empty() {
        true => ".".to_owned(),
        false => format!("./{}", parts.join("/")),
    })
}

/// `a/./b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Main packages in `dir` and below, skipping what the go tool skips in `...` patterns
/// (`testdata`, `vendor`, names starting with `.` or `_`), sorted.
fn main_packages_below(root: &Path, dir: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    if is_main(dir)? {
        found.push(relative_package(root, dir)?);
    }
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            !(name.starts_with('.') || name.starts_with('_') || name == "testdata" || name == "vendor")
        })
        .collect();
    children.sort();
    for child in children {
        // A nested module is another project.
        if !child.join("go.mod").exists() {
            found.extend(main_packages_below(root, &child)?);
        }
    }
    Ok(found)
}

/// Whether any non-test .go file of `dir` says `package main`.
fn is_main(dir: &Path) -> Result<bool> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.ends_with(".go") || name.ends_with("_test.go") || !path.is_file() {
            continue;
        }
        let source = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        if package_clause(&source) == Some("main") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The name in a Go file's package clause: the first `package NAME` outside comments.
fn package_clause(source: &str) -> Option<&str> {
    let mut in_block = false;
    for line in source.lines() {
        let mut line = line.trim();
        if in_block {
            match line.find("*/") {
                Some(end) => {
                    in_block = false;
                    line = line[end + 2..].trim();
                }
                None => continue,
            }
        }
        if line.starts_with("/*") {
            match line.find("*/") {
                Some(end) => line = line[end + 2..].trim(),
                None => {
                    in_block = true;
                    continue;
                }
            }
        }
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let name = line.strip_prefix("package")?.split(|c: char| c.is_whitespace() || c == ';' || c == '/');
        return name.map(str::trim).find(|s| !s.is_empty());
    }
    None
}

/// The module path of `root/go.mod` (`module example.com/x`), if it declares one.
fn module_path(root: &Path) -> Result<Option<String>> {
    let path = root.join("go.mod");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("module")?;
        let name = rest.split("//").next()?.trim().trim_matches('"');
        (!name.is_empty()).then(|| name.to_owned())
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tools::fake::{finished, FakeTools};
    use super::super::{Project, Settings, Target};
    use super::*;

    /// A module laid out as `files` says (path → contents).
    fn module(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("go.mod"), "module example.com/tools\n\ngo 1.24\n").unwrap();
        for (path, text) in files {
            let file = dir.path().join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        dir
    }

    const MAIN: &str = "// A command.\npackage main\n\nfunc main() {}\n";
    const LIB: &str = "/* Library\n   code. */\npackage util // helpers\n";

    fn programs(dir: &Path, from: &Path, packages: &[&str]) -> Result<Vec<(String, String)>> {
        let project = Project { dir: dir.to_owned(), marker: dir.join("go.mod") };
        let settings = Settings { packages: packages.iter().map(|s| s.to_string()).collect(), ..Settings::default() };
        let tools = FakeTools::new();
        let ctx = BuildContext {
            project: &project,
            target: Target::wasm(Mode::Command),
            settings: &settings,
            tools: &tools,
            build_dir: &dir.join(".fabricks"),
        };
        Ok(Go.programs(&ctx, from)?.into_iter().map(|p| (p.name, p.package.unwrap())).collect())
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn a_main_package_at_the_root_is_the_program() {
        let dir = module(&[("main.go", MAIN), ("cmd/other/main.go", MAIN)]);
        let name = dir.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(programs(dir.path(), dir.path(), &[]).unwrap(), pairs(&[(&name, ".")]));
    }

    #[test]
    fn without_a_root_main_every_command_under_cmd_is_built() {
        let dir = module(&[
            ("util/util.go", LIB),
            ("cmd/server/main.go", MAIN),
            ("cmd/cli/main.go", MAIN),
            ("cmd/cli/main_test.go", "package main\n"),
            ("cmd/lib/lib.go", LIB),
            ("cmd/testdata/x/main.go", MAIN),
            ("cmd/_old/main.go", MAIN),
        ]);
        assert_eq!(
            programs(dir.path(), dir.path(), &[]).unwrap(),
            pairs(&[("cli", "./cmd/cli"), ("server", "./cmd/server")])
        );
    }

    #[test]
    fn no_main_package_anywhere_says_how_to_name_one() {
        let dir = module(&[("util/util.go", LIB)]);
        let err = programs(dir.path(), dir.path(), &[]).unwrap_err().to_string();
        assert!(err.contains("has no main package"), "{err}");
        assert!(err.contains("./path/to/main"), "{err}");
    }

    #[test]
    fn packages_are_named_every_way_go_users_write_them() {
        let dir = module(&[("cmd/server/main.go", MAIN), ("cmd/cli/main.go", MAIN), ("tools/gen/main.go", MAIN)]);
        let root = dir.path();
        for spec in ["./cmd/server", "cmd/server", "server", "example.com/tools/cmd/server", "./cmd/server/"] {
            assert_eq!(programs(root, root, &[spec]).unwrap(), pairs(&[("server", "./cmd/server")]), "{spec}");
        }
        assert_eq!(
            programs(root, root, &["./cmd/...", "./tools/gen"]).unwrap(),
            pairs(&[("cli", "./cmd/cli"), ("server", "./cmd/server"), ("gen", "./tools/gen")])
        );
        // The same package twice is built once.
        assert_eq!(programs(root, root, &["server", "./cmd/server"]).unwrap().len(), 1);
        // Relative to the directory pointed at, as for `go build` in it.
        assert_eq!(programs(root, &root.join("cmd"), &["./cli"]).unwrap(), pairs(&[("cli", "./cmd/cli")]));
    }

    #[test]
    fn a_subdirectory_is_its_own_package() {
        let dir = module(&[("cmd/server/main.go", MAIN), ("util/util.go", LIB)]);
        let root = dir.path();
        assert_eq!(programs(root, &root.join("cmd/server"), &[]).unwrap(), pairs(&[("server", "./cmd/server")]));
        let err = programs(root, &root.join("util"), &[]).unwrap_err().to_string();
        assert!(err.contains("is not a main package"), "{err}");
    }

    #[test]
    fn bad_package_names_say_what_is_wrong() {
        let dir = module(&[("cmd/server/main.go", MAIN), ("util/util.go", LIB), ("a/server/main.go", MAIN)]);
        let root = dir.path();
        let err = programs(root, root, &["nope"]).unwrap_err().to_string();
        assert!(err.contains("no such package directory") && err.contains("./cmd/nope"), "{err}");
        let err = programs(root, root, &["./util"]).unwrap_err().to_string();
        assert!(err.contains("is not a main package"), "{err}");
        let err = programs(root, root, &["../elsewhere"]).unwrap_err().to_string();
        assert!(err.contains("outside the module"), "{err}");
        let err = programs(root, root, &["./cmd/server", "./a/server"]).unwrap_err().to_string();
        assert!(err.contains("would both be named \"server\""), "{err}");
    }

    #[test]
    fn package_clauses_are_read_past_comments() {
        assert_eq!(package_clause(MAIN), Some("main"));
        assert_eq!(package_clause(LIB), Some("util"));
        assert_eq!(package_clause("//go:build ignore\n\npackage main;"), Some("main"));
        assert_eq!(package_clause("/* a */ package x\n"), Some("x"));
        assert_eq!(package_clause("// nothing\n"), None);
    }

    fn invocation(target: Target, settings: Settings, goflags: Option<&str>, package: &str) -> Invocation {
        let project = Project { dir: PathBuf::from("/m"), marker: PathBuf::from("/m/go.mod") };
        let mut tools = FakeTools::new();
        if let Some(flags) = goflags {
            tools = tools.var("GOFLAGS", flags);
        }
        let ctx = BuildContext {
            project: &project,
            target,
            settings: &settings,
            tools: &tools,
            build_dir: Path::new("/m/.f"),
        };
        let program = Program { name: "x".into(), package: Some(package.into()) };
        go_build(&ctx, &program, Path::new("/m/.f/x.wasm"))
    }

    #[test]
    fn go_build_is_what_a_go_user_would_type() {
        let plain = invocation(Target::wasm(Mode::Command), Settings::default(), None, ".");
        assert_eq!(plain.command_line(), "go build -trimpath -o /m/.f/x.wasm .");
        assert_eq!(plain.env_value("GOOS"), Some(OsStr::new("wasip1")));
        assert_eq!(plain.env_value("GOARCH"), Some(OsStr::new("wasm")));

        let settings = Settings {
            ldflags: Some("-s -w -X main.version=1.2.3".into()),
            tags: vec!["netgo".into(), "osusergo".into()],
            ..Settings::default()
        };
        let flagged = invocation(Target::wasm(Mode::Command), settings.clone(), None, "./cmd/server");
        assert_eq!(
            flagged.args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>(),
            [
                "build",
                "-trimpath",
                "-tags",
                "netgo,osusergo",
                "-ldflags=-s -w -X main.version=1.2.3",
                "-o",
                "/m/.f/x.wasm",
                "./cmd/server"
            ]
        );

        let native = invocation(Target::native(), settings, None, ".");
        assert_eq!(native.env_value("GOOS"), Some(OsStr::new("linux")));
        assert_eq!(native.env_value("CGO_ENABLED"), Some(OsStr::new("0")));
        assert_eq!(native.env_value("GOARCH"), None, "GOARCH stays the host's");
    }

    #[test]
    fn a_reactor_keeps_the_tags_of_goflags() {
        let reactor = invocation(Target::wasm(Mode::Reactor), Settings::default(), Some("-mod=mod -tags=a,b"), ".");
        assert_eq!(
            reactor.command_line(),
            "go build -trimpath -buildmode=c-shared -tags a,b,fabricks_reactor -o /m/.f/x.wasm ."
        );
        // Without a -tags of ours GOFLAGS applies untouched, so nothing is repeated.
        let command = invocation(Target::wasm(Mode::Command), Settings::default(), Some("-tags=a"), ".");
        assert_eq!(command.command_line(), "go build -trimpath -o /m/.f/x.wasm .");
        // Given tags replace GOFLAGS' (as on go's own command line), the reactor's is added.
        let given = Settings { tags: vec!["c".into()], ..Settings::default() };
        let reactor = invocation(Target::wasm(Mode::Reactor), given, Some("--tags=a"), ".");
        assert!(reactor.command_line().contains("-tags c,fabricks_reactor "), "{}", reactor.command_line());
    }

    #[test]
    fn failures_show_go_output_and_the_hint() {
        let dir = module(&[("main.go", MAIN)]);
        let project = Project { dir: dir.path().to_owned(), marker: dir.path().join("go.mod") };
        let settings = Settings::default();
        let tools = FakeTools::new().program("go").answer(
            "go",
            "build",
            1,
            "",
            "go: unsupported GOOS/GOARCH pair wasip1/wasm\n",
        );
        let ctx = BuildContext {
            project: &project,
            target: Target::wasm(Mode::Command),
            settings: &settings,
            tools: &tools,
            build_dir: &dir.path().join(".fabricks"),
        };
        let program = Program { name: "x".into(), package: Some(".".into()) };
        let err = Go.build(&ctx, &program).unwrap_err().to_string();
        assert!(err.contains("`go build -trimpath -o"), "{err}");
        assert!(err.contains("unsupported GOOS/GOARCH pair"), "{err}");
        assert!(err.ends_with("Go 1.21 or newer is needed for GOOS=wasip1; check `go version`"), "{err}");

        let missing = FakeTools::new();
        let ctx = BuildContext { tools: &missing, ..ctx };
        let err = Go.check(&ctx).unwrap_err().to_string();
        assert!(err.contains("`go` tool is not on PATH"), "{err}");
        let _ = finished(0, "", "");
    }

    #[test]
    fn goflags_tags_are_read_as_go_reads_them() {
        assert_eq!(goflags_tags("-mod=mod -tags=a,b --tags=c"), ["a", "b", "c"]);
        assert!(goflags_tags("-trimpath").is_empty());
        assert_eq!(build_tags(&[], true, None), ["fabricks_reactor"]);
        assert_eq!(build_tags(&["fabricks_reactor".into()], true, None), ["fabricks_reactor"]);
        assert!(build_tags(&[], false, Some(OsStr::new("-tags=a"))).is_empty());
    }
}
