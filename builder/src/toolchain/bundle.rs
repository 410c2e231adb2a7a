//! A program that is a directory of files rather than one module (a .NET AppBundle: the
//! runtime `dotnet.wasm` plus the app's assemblies and data, which the runtime opens by
//! path at run time).

use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};

/// A directory that runs as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The directory; it becomes the guest's `/`.
    pub dir: PathBuf,
    /// The module that runs, relative to `dir` (`dotnet.wasm`).
    pub entry: String,
    /// Arguments that come right after the module, before the user's (`App`).
    pub args: Vec<String>,
}

/// A file of a bundle: where it is, where it goes, whether it is executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// Relative to the bundle directory, `/`-separated (`managed/App.dll`).
    pub relative: String,
    pub source: PathBuf,
    pub mode: u32,
}

impl Bundle {
    /// The entry module's path on this machine.
    pub fn entry_path(&self) -> PathBuf {
        self.dir.join(&self.entry)
    }

    /// Every file below the directory, sorted by path, but fabricks' own build directory
    /// (a published bundle packed in place gets one). Links are followed (the SDKs copy,
    /// but a hand-made bundle may link); a link that leads nowhere is an error.
    pub fn files(&self) -> Result<Vec<BundleFile>> {
        let mut files = Vec::new();
        walk(&self.dir, "", &mut files)?;
        let own = format!("{}/", crate::compile::BUILD_DIR);
        files.retain(|f| !f.relative.starts_with(&own));
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        ensure!(
            files.iter().any(|f| f.relative == self.entry),
            "the bundle {} has no {} to run",
            self.dir.display(),
            self.entry
        );
        Ok(files)
    }
}

fn walk(dir: &Path, prefix: &str, files: &mut Vec<BundleFile>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|name| anyhow::anyhow!("{}: file names in an image must be UTF-8", dir.join(name).display()))?;
        let path = entry.path();
        let relative = format!("{prefix}{name}");
        let meta = std::fs::metadata(&path)
            .with_context(|| format!("{} is a link to nothing; remove it or point it at a file", path.display()))?;
        if meta.is_dir() {
            walk(&path, &format!("{relative}/"), files)?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let mode = if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
            files.push(BundleFile { relative, source: path, mode });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_file_sorted_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("managed/de")).unwrap();
        std::fs::write(dir.path().join("dotnet.wasm"), b"\0asm").unwrap();
        std::fs::write(dir.path().join("managed/App.dll"), b"MZ").unwrap();
        std::fs::write(dir.path().join("managed/de/App.resources.dll"), b"MZ").unwrap();
        std::fs::write(dir.path().join("run.sh"), b"#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path().join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("managed/App.dll", dir.path().join("App.dll")).unwrap();
        std::fs::create_dir(dir.path().join(".fabricks")).unwrap();
        std::fs::write(dir.path().join(".fabricks/app.tar"), b"an earlier image").unwrap();

        let bundle = Bundle { dir: dir.path().to_owned(), entry: "dotnet.wasm".into(), args: vec!["App".into()] };
        let files = bundle.files().unwrap();
        let names: Vec<(&str, u32)> = files.iter().map(|f| (f.relative.as_str(), f.mode)).collect();
        assert_eq!(
            names,
            [
                ("App.dll", 0o644),
                ("dotnet.wasm", 0o644),
                ("managed/App.dll", 0o644),
                ("managed/de/App.resources.dll", 0o644),
                ("run.sh", 0o755)
            ]
        );
    }

    #[test]
    fn a_dangling_link_and_a_missing_entry_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle { dir: dir.path().to_owned(), entry: "dotnet.wasm".into(), args: vec![] };
        let err = bundle.files().unwrap_err().to_string();
        assert!(err.contains("has no dotnet.wasm to run"), "{err}");
        std::os::unix::fs::symlink("nowhere", dir.path().join("dotnet.wasm")).unwrap();
        let err = format!("{:#}", bundle.files().unwrap_err());
        assert!(err.contains("is a link to nothing"), "{err}");
    }
}
