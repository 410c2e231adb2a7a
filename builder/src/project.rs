//! `fabricks.toml`: what a project declares about itself, so `fabricks build`
//! needs no flags for it. Flags win over the file.
//!
//! ```toml
//! listen = "http=8080"          # the listen spec, as for --listen
//! mode = "reactor"              # build a reactor (the host calls the handler), as for --mode
//! package = "./cmd/server"      # Go: the main package(s) to build, as for PACKAGE (or a list)
//! ldflags = "-s -w"             # Go: `go build -ldflags`, as for --ldflags
//! tags = ["netgo"]              # Go: build tags, as for --tags (or "a,b")
//! ```

use crate::toolchain::Settings;
use anyhow::{Context, Result};
use fabricks_listen::ListenSpec;
use serde::Deserialize;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The project file's name, in the project directory.
pub const FILE: &str = "fabricks.toml";

/// The settings of a `fabricks.toml`. Unknown keys are errors, so a typo does
/// not silently build an image without its ports.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    /// Listen spec, `NAME=[ADDR:]PORT[/tcp],…` (see `fabricks build --help`).
    pub listen: Option<String>,
    /// How the program is built and run, see [`Mode`].
    pub mode: Option<Mode>,
    /// Go: the main package(s) to build when no PACKAGE argument is given.
    pub package: Option<OneOrMany>,
    /// Go: `-ldflags` when --ldflags is not given.
    pub ldflags: Option<String>,
    /// Go: build tags when --tags is not given.
    pub tags: Option<OneOrMany>,
}

/// A string or a list of strings; a string may list several, comma-separated (as `-tags` does).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<String> {
        let all: Vec<&str> = match self {
            OneOrMany::One(one) => one.split(',').collect(),
            OneOrMany::Many(many) => many.iter().flat_map(|m| m.split(',')).collect(),
        };
        all.into_iter().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }
}

/// How a wasm program serves: its own main loop, or called by the host per request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A WASI command: `main` runs (and, for a server, accepts on the host's sockets).
    #[default]
    Command,
    /// A reactor (`go build -buildmode=c-shared`): the host serves HTTP and calls the
    /// handler registered with the Go SDK's `fabricks.Handle` once per request, on a pool
    /// of instances.
    Reactor,
}

/// A project's `fabricks.toml`, where it was read from (if it exists).
#[derive(Debug, Default)]
pub struct Project {
    pub path: Option<PathBuf>,
    pub file: ProjectFile,
}

impl Project {
    /// Reads `dir/fabricks.toml`; a missing file is an empty project file.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Project::default()),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        let file = parse(&text).with_context(|| format!("in {}", path.display()))?;
        Ok(Project { path: Some(path), file })
    }

    /// `--mode` if given, else the file's `mode`, else command.
    pub fn mode(&self, flag: Option<Mode>) -> Mode {
        flag.or(self.file.mode).unwrap_or_default()
    }

    /// What the build is asked beyond its target: flags win over the file, each setting
    /// on its own (PACKAGE arguments replace `package`, --tags replaces `tags`…).
    pub fn settings(&self, packages: &[String], ldflags: Option<&str>, tags: &[String]) -> Settings {
        let or_file = |given: &[String], file: &Option<OneOrMany>| match given.is_empty() {
            false => OneOrMany::Many(given.to_vec()).items(),
            true => file.as_ref().map(OneOrMany::items).unwrap_or_default(),
        };
        Settings {
            packages: or_file(packages, &self.file.package),
            ldflags: ldflags.map(str::to_owned).or_else(|| self.file.ldflags.clone()),
            tags: or_file(tags, &self.file.tags),
        }
    }

    /// The listen spec: `--listen` values if any were given (all of them, as
    /// one spec), else the file's `listen`, else none.
    pub fn listen_spec(&self, flags: &[String]) -> Result<ListenSpec> {
        if !flags.is_empty() {
            return ListenSpec::parse_all(flags).context("in --listen");
        }
        match (&self.file.listen, &self.path) {
            (Some(spec), Some(path)) => {
                ListenSpec::parse(spec).with_context(|| format!("in {}, key `listen`", path.display()))
            }
            (Some(spec), None) => ListenSpec::parse(spec).context("in the key `listen`"),
            (None, _) => Ok(ListenSpec::default()),
        }
    }
}

fn parse(text: &str) -> Result<ProjectFile> {
    // toml's messages carry the line, column and the offending text.
    toml::from_str(text).map_err(|err| anyhow::anyhow!("{}", err.to_string().trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(text: &str) -> Project {
        Project { path: Some(PathBuf::from("/p/fabricks.toml")), file: parse(text).unwrap() }
    }

    fn no_flags() -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn reads_listen_from_the_file() {
        let spec = project("listen = \"http=8080\"\n").listen_spec(&no_flags()).unwrap();
        assert_eq!(spec.to_string(), "http=8080");
        assert_eq!(spec.exposed_ports(), ["8080/tcp"]);
    }

    #[test]
    fn flags_win_over_the_file() {
        let project = project("listen = \"http=8080\"\n");
        let flags = vec!["web=9090".to_owned(), "admin=127.0.0.1:9091".to_owned()];
        let spec = project.listen_spec(&flags).unwrap();
        assert_eq!(spec.to_string(), "web=9090,admin=127.0.0.1:9091");
    }

    #[test]
    fn repeated_flags_are_checked_together() {
        let flags = vec!["http=8080".to_owned(), "admin=8080".to_owned()];
        let err = format!("{:#}", Project::default().listen_spec(&flags).unwrap_err());
        assert!(err.starts_with("in --listen: "), "{err}");
        assert!(err.contains("\"http=8080\" and \"admin=8080\" both use port 8080"), "{err}");
    }

    #[test]
    fn no_file_and_no_flags_means_no_ports() {
        assert!(Project::default().listen_spec(&no_flags()).unwrap().is_empty());
        assert!(project("").listen_spec(&no_flags()).unwrap().is_empty());
    }

    #[test]
    fn a_bad_spec_in_the_file_names_the_file_and_the_entry() {
        let err = format!("{:#}", project("listen = \"http=0\"").listen_spec(&no_flags()).unwrap_err());
        assert!(err.contains("/p/fabricks.toml, key `listen`"), "{err}");
        assert!(err.contains("\"http=0\""), "{err}");
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_errors() {
        let err = parse("listn = \"http=8080\"").unwrap_err().to_string();
        assert!(err.contains("unknown field `listn`"), "{err}");
        let err = parse("listen = 8080").unwrap_err().to_string();
        assert!(err.contains("listen") || err.contains("string"), "{err}");
    }

    #[test]
    fn mode_comes_from_the_flag_else_the_file() {
        assert_eq!(project("mode = \"reactor\"").mode(None), Mode::Reactor);
        assert_eq!(project("mode = \"reactor\"").mode(Some(Mode::Command)), Mode::Command);
        assert_eq!(project("").mode(None), Mode::Command);
        let err = parse("mode = \"reacter\"").unwrap_err().to_string();
        assert!(err.contains("reacter"), "{err}");
    }

    #[test]
    fn go_settings_come_from_the_flags_else_the_file() {
        let file = project("package = \"./cmd/server\"\nldflags = \"-s -w\"\ntags = [\"netgo\", \"a,b\"]\n");
        let settings = file.settings(&[], None, &[]);
        assert_eq!(settings.packages, ["./cmd/server"]);
        assert_eq!(settings.ldflags.as_deref(), Some("-s -w"));
        assert_eq!(settings.tags, ["netgo", "a", "b"]);
        let flagged = file.settings(&["./cmd/cli".into()], Some("-X main.v=1"), &["x,y".into()]);
        assert_eq!(flagged.packages, ["./cmd/cli"]);
        assert_eq!(flagged.ldflags.as_deref(), Some("-X main.v=1"));
        assert_eq!(flagged.tags, ["x", "y"]);
        let list = project("package = [\"./cmd/a\", \"./cmd/b\"]\ntags = \"netgo,osusergo\"\n");
        assert_eq!(list.settings(&[], None, &[]).packages, ["./cmd/a", "./cmd/b"]);
        assert_eq!(list.settings(&[], None, &[]).tags, ["netgo", "osusergo"]);
        assert_eq!(Project::default().settings(&[], None, &[]), Settings::default());
        let err = parse("package = 3").unwrap_err().to_string();
        assert!(err.contains("package"), "{err}");
    }

    #[test]
    fn loads_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Project::load(dir.path()).unwrap().path.is_none());
        std::fs::write(dir.path().join(FILE), "listen = \"http=8080,admin=9090\"\n").unwrap();
        let project = Project::load(dir.path()).unwrap();
        assert_eq!(project.path.as_deref(), Some(dir.path().join(FILE).as_path()));
        assert_eq!(project.listen_spec(&no_flags()).unwrap().len(), 2);

        std::fs::write(dir.path().join(FILE), "listen = [").unwrap();
        let err = format!("{:#}", Project::load(dir.path()).unwrap_err());
        assert!(err.contains(FILE), "{err}");
    }
}
