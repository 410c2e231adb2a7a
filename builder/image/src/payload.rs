//! What an image carries: one file (a wasm module or component, or a native executable), or a
//! tree of files under one directory (a .NET AppBundle: `dotnet.wasm`, `managed/*.dll`, the
//! runtime config), with the command line that starts it.

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The content of an image's single layer and how it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// One file at `path` (absolute, inside the image), which is the entrypoint.
    File { path: String, data: Vec<u8> },
    /// Files under the image directory `root` (`/` for the image's root).
    Tree {
        root: String,
        tree: Tree,
        /// The config's `Entrypoint`: an absolute path of a file of the tree, then fixed
        /// arguments, e.g. `["/app/dotnet.wasm", "App"]`.
        entrypoint: Vec<String>,
        /// The config's `Cmd`: default arguments that a pod's `args` replace.
        args: Vec<String>,
        /// The config's `WorkingDir` (absolute), if any.
        workdir: Option<String>,
    },
}

impl Payload {
    /// A single file at `path` in the image.
    pub fn file(path: impl Into<String>, data: Vec<u8>) -> Payload {
        Payload::File { path: path.into(), data }
    }

    /// Checks paths: absolute and plain, the entrypoint a file of the payload.
    pub fn check(&self) -> Result<()> {
        match self {
            Payload::File { path, .. } => check_absolute("entrypoint", path).map(drop),
            Payload::Tree { root, tree, entrypoint, workdir, .. } => {
                check_absolute_dir("payload root", root)?;
                let program = entrypoint.first().context("a payload tree needs an entrypoint (a file of the tree)")?;
                let relative = check_absolute("entrypoint", program)?;
                let inside = within(root, relative)
                    .with_context(|| format!("the entrypoint {program:?} is not under the payload root {root:?}"))?;
                ensure!(
                    matches!(tree.entries.get(inside), Some(Entry::File { .. })),
                    "the entrypoint {program:?} is no file of the payload tree (under {root:?}); the tree has {}",
                    tree.describe()
                );
                if let Some(dir) = workdir {
                    check_absolute_dir("working directory", dir)?;
                }
                Ok(())
            }
        }
    }

    /// The entrypoint's absolute path and bytes: what runs.
    pub fn program(&self) -> Result<(&str, &[u8])> {
        match self {
            Payload::File { path, data } => Ok((path, data)),
            Payload::Tree { root, tree, entrypoint, .. } => {
                let program = entrypoint.first().context("a payload tree needs an entrypoint")?;
                let relative = within(root, program.trim_start_matches('/')).context("entrypoint outside the root")?;
                match tree.entries.get(relative) {
                    Some(Entry::File { data, .. }) => Ok((program, data)),
                    _ => bail!("the entrypoint {program:?} is no file of the payload tree"),
                }
            }
        }
    }

    /// The config's `Entrypoint`.
    pub fn entrypoint(&self) -> Vec<String> {
        match self {
            Payload::File { path, .. } => vec![path.clone()],
            Payload::Tree { entrypoint, .. } => entrypoint.clone(),
        }
    }

    /// The config's `Cmd`.
    pub fn args(&self) -> &[String] {
        match self {
            Payload::File { .. } => &[],
            Payload::Tree { args, .. } => args,
        }
    }

    pub fn workdir(&self) -> Option<&str> {
        match self {
            Payload::File { .. } => None,
            Payload::Tree { workdir, .. } => workdir.as_deref(),
        }
    }

    /// Every entry of the layer with its path inside the image (relative, no leading `/`),
    /// parent directories included, each once.
    pub(crate) fn layer_entries(&self) -> Vec<LayerEntry<'_>> {
        let (root, files): (&str, Vec<LayerEntry>) = match self {
            Payload::File { path, data } => {
                let path = path.trim_start_matches('/');
                let parent = path.rsplit_once('/').map_or("", |(dir, _)| dir);
                (parent, vec![LayerEntry { path: path.to_owned(), file: Some((data, 0o755)) }])
            }
            Payload::Tree { root, tree, .. } => {
                let root = root.trim_matches('/');
                let prefixed = |path: &str| if root.is_empty() { path.to_owned() } else { format!("{root}/{path}") };
                let entries = tree.entries.iter().map(|(path, entry)| LayerEntry {
                    path: prefixed(path),
                    file: match entry {
                        Entry::Dir => None,
                        Entry::File { data, executable } => Some((data, if *executable { 0o755 } else { 0o644 })),
                    },
                });
                (root, entries.collect())
            }
        };
        let mut entries = Vec::new();
        let mut dir = String::new();
        for part in root.split('/').filter(|p| !p.is_empty()) {
            dir = if dir.is_empty() { part.to_owned() } else { format!("{dir}/{part}") };
            entries.push(LayerEntry { path: dir.clone(), file: None });
        }
        entries.extend(files);
        entries
    }
}

/// A directory (`file: None`) or a file with its content and mode, as the layer holds it.
pub(crate) struct LayerEntry<'a> {
    pub path: String,
    pub file: Option<(&'a [u8], u32)>,
}

/// A file or a directory of a [`Tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File { data: Vec<u8>, executable: bool },
}

/// Regular files and directories by relative path: nothing else (no links, devices, `..`),
/// so unpacking the layer can never write outside its root. Parent directories are implied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Adds a file at the relative path `path`, with its parent directories.
    pub fn add_file(&mut self, path: &str, data: Vec<u8>, executable: bool) -> Result<()> {
        self.add(path, Entry::File { data, executable })
    }

    /// Adds a (possibly empty) directory with its parents.
    pub fn add_dir(&mut self, path: &str) -> Result<()> {
        self.add(path, Entry::Dir)
    }

    /// Every file and directory below `dir` (not `dir` itself). Symbolic links, sockets,
    /// devices and names that are not UTF-8 are refused, naming the path; a file with several
    /// hard links is taken as the plain file it is.
    pub fn from_dir(dir: &Path) -> Result<Tree> {
        let mut tree = Tree::new();
        let meta =
            std::fs::metadata(dir).with_context(|| format!("reading the payload directory {}", dir.display()))?;
        ensure!(meta.is_dir(), "{} is not a directory", dir.display());
        tree.walk(dir, "")?;
        Ok(tree)
    }

    fn walk(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|name| anyhow::anyhow!("{}: the name {name:?} is not UTF-8; rename it", dir.display()))?;
            names.push(name);
        }
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let meta = std::fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
            let kind = meta.file_type();
            if kind.is_symlink() {
                bail!(
                    "{} is a symbolic link: a payload holds only regular files and directories; put the \
                     file it points to in its place (e.g. `cp -L`)",
                    path.display()
                );
            } else if kind.is_dir() {
                self.add_dir(&relative)?;
                self.walk(&path, &relative)?;
            } else if kind.is_file() {
                let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                self.add_file(&relative, data, is_executable(&meta))?;
            } else {
                bail!(
                    "{} is neither a regular file nor a directory (a socket, FIFO or device): a payload holds \
                     only those two; remove it",
                    path.display()
                );
            }
        }
        Ok(())
    }

    fn add(&mut self, path: &str, entry: Entry) -> Result<()> {
        check_relative(path)?;
        let mut parent = String::new();
        for part in path.split('/').collect::<Vec<_>>().split_last().map_or(&[][..], |(_, dirs)| dirs) {
            parent = if parent.is_empty() { (*part).to_owned() } else { format!("{parent}/{part}") };
            match self.entries.get(&parent) {
                Some(Entry::File { .. }) => bail!("{path:?} lies below {parent:?}, which is a file of the payload"),
                Some(Entry::Dir) => {}
                None => {
                    self.entries.insert(parent.clone(), Entry::Dir);
                }
            }
        }
        match (self.entries.get(path), &entry) {
            (Some(Entry::Dir), Entry::Dir) => return Ok(()),
            (Some(_), _) => bail!("{path:?} is in the payload twice"),
            (None, _) => {}
        }
        self.entries.insert(path.to_owned(), entry);
        Ok(())
    }

    /// How many files and directories, for messages.
    fn describe(&self) -> String {
        let files = self.entries.values().filter(|e| matches!(e, Entry::File { .. })).count();
        let dirs = self.entries.len() - files;
        format!("{files} files in {dirs} directories")
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Relative paths of the files, sorted.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter(|(_, e)| matches!(e, Entry::File { .. })).map(|(p, _)| p.as_str())
    }
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

/// A relative path of plain parts: no empty, `.` or `..` part, no leading `/`.
fn check_relative(path: &str) -> Result<()> {
    ensure!(
        !path.is_empty() && !path.starts_with('/') && path.split('/').all(|p| !matches!(p, "" | "." | "..")),
        "payload path {path:?} must be relative and plain: no leading `/`, no empty, `.` or `..` parts"
    );
    Ok(())
}

/// `path` without its leading `/`, checked to be absolute and plain.
fn check_absolute<'a>(what: &str, path: &'a str) -> Result<&'a str> {
    let Some(relative) = path.strip_prefix('/') else {
        bail!("{what} {path:?} must be an absolute path inside the image, like `/app.wasm`");
    };
    ensure!(
        relative.split('/').all(|part| !matches!(part, "" | "." | "..")),
        "{what} {path:?} must name a file by a plain path: no empty, `.` or `..` parts and no trailing `/`"
    );
    Ok(relative)
}

fn check_absolute_dir(what: &str, dir: &str) -> Result<()> {
    match dir {
        "/" => Ok(()),
        _ => check_absolute(what, dir.strip_suffix('/').unwrap_or(dir)).map(drop),
    }
}

/// `relative` (an image path without its `/`) relative to the image directory `root`.
fn within<'a>(root: &str, relative: &'a str) -> Option<&'a str> {
    let root = root.trim_matches('/');
    match root.is_empty() {
        true => Some(relative),
        false => relative.strip_prefix(root)?.strip_prefix('/'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Tree {
        let mut tree = Tree::new();
        tree.add_file("dotnet.wasm", b"\0asm\x01\0\0\0".to_vec(), false).unwrap();
        tree.add_file("managed/App.dll", b"MZ".to_vec(), false).unwrap();
        tree.add_file("App.runtimeconfig.json", b"{}".to_vec(), false).unwrap();
        tree
    }

    fn tree_payload(entrypoint: &[&str]) -> Payload {
        Payload::Tree {
            root: "/app".into(),
            tree: bundle(),
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            args: vec![],
            workdir: Some("/app".into()),
        }
    }

    #[test]
    fn parents_are_implied_and_paths_must_be_plain() {
        let tree = bundle();
        assert_eq!(tree.files().collect::<Vec<_>>(), ["App.runtimeconfig.json", "dotnet.wasm", "managed/App.dll"]);
        assert_eq!(tree.entries.get("managed"), Some(&Entry::Dir));
        let mut tree = Tree::new();
        for bad in ["", "/etc/passwd", "a/../../b", "./a", "a//b", ".."] {
            assert!(tree.add_file(bad, vec![], false).is_err(), "{bad:?} accepted");
        }
        tree.add_file("a", vec![], false).unwrap();
        let err = tree.add_file("a/b", vec![], false).unwrap_err().to_string();
        assert!(err.contains("which is a file"), "{err}");
        let err = tree.add_file("a", vec![], false).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn the_entrypoint_must_be_a_file_of_the_tree_under_its_root() {
        tree_payload(&["/app/dotnet.wasm", "App"]).check().unwrap();
        let payload = tree_payload(&["/app/dotnet.wasm"]);
        let (path, data) = payload.program().unwrap();
        assert_eq!((path, &data[..4]), ("/app/dotnet.wasm", &b"\0asm"[..]));
        for (entrypoint, expected) in [
            (vec![], "needs an entrypoint"),
            (vec!["/other/dotnet.wasm"], "not under the payload root"),
            (vec!["/app/missing.wasm"], "no file of the payload tree"),
            (vec!["/app/managed"], "no file of the payload tree"),
            (vec!["app/dotnet.wasm"], "absolute"),
            (vec!["/app/../dotnet.wasm"], "plain path"),
        ] {
            let err = tree_payload(&entrypoint).check().unwrap_err().to_string();
            assert!(err.contains(expected), "{entrypoint:?}: {err}");
        }
    }

    #[test]
    fn layer_entries_carry_the_root_and_its_parents() {
        let mut payload = tree_payload(&["/srv/app/dotnet.wasm"]);
        if let Payload::Tree { root, .. } = &mut payload {
            *root = "/srv/app".into();
        }
        let paths: Vec<String> = payload.layer_entries().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "srv",
                "srv/app",
                "srv/app/App.runtimeconfig.json",
                "srv/app/dotnet.wasm",
                "srv/app/managed",
                "srv/app/managed/App.dll"
            ]
        );
    }

    #[test]
    fn a_directory_is_read_whole_and_links_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("managed")).unwrap();
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        std::fs::write(dir.path().join("dotnet.wasm"), b"\0asm").unwrap();
        std::fs::write(dir.path().join("managed/App.dll"), b"MZ").unwrap();
        std::fs::hard_link(dir.path().join("managed/App.dll"), dir.path().join("copy.dll")).unwrap();
        let tree = Tree::from_dir(dir.path()).unwrap();
        assert_eq!(tree.files().collect::<Vec<_>>(), ["copy.dll", "dotnet.wasm", "managed/App.dll"]);
        assert_eq!(tree.entries.get("empty"), Some(&Entry::Dir));

        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("managed/passwd")).unwrap();
        let err = Tree::from_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("managed/passwd is a symbolic link"), "{err}");
        std::fs::remove_file(dir.path().join("managed/passwd")).unwrap();
        std::os::unix::fs::symlink("..", dir.path().join("up")).unwrap();
        assert!(Tree::from_dir(dir.path()).is_err());
    }
}
