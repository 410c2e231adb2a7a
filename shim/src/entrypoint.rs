//! What `process.args[0]` names inside the container's rootfs: a wasm module, a native
//! program (a pod's pause container), or nothing (the module may come from a wasm layer).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::error::invalid;

pub enum Program {
    /// The module's bytes, read without following links out of the rootfs.
    Wasm(Vec<u8>),
    Native,
    /// No such file in the rootfs.
    Missing,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `args0` split into the module path and the export to run instead of `_start`:
/// `/app.wasm#handler` (the form runwasi's and docker's wasm images use).
pub fn split_export(args0: &str) -> (&str, Option<&str>) {
    match args0.rsplit_once('#') {
        Some((path, export)) if !path.is_empty() && !export.is_empty() && !export.contains('/') => (path, Some(export)),
        _ => (args0, None),
    }
}

/// `args0` resolved the way an exec in the container would: a path relative to `cwd`, or a
/// bare name searched in the spec's `PATH`.
pub fn classify(rootfs: &Path, args0: &str, cwd: &str, env: &[String]) -> Result<Program> {
    let root = Dir::open_ambient_dir(rootfs, ambient_authority())
        .with_context(|| format!("opening the container rootfs {}", rootfs.display()))?;
    for candidate in candidates(args0, cwd, env) {
        match open_in_root(&root, &candidate) {
            Some(file) => return read_program(file, args0),
            None => continue,
        }
    }
    Ok(Program::Missing)
}

fn candidates(args0: &str, cwd: &str, env: &[String]) -> Vec<PathBuf> {
    if args0.contains('/') {
        return vec![Path::new(if cwd.is_empty() { "/" } else { cwd }).join(args0)];
    }
    let path = env.iter().find_map(|kv| kv.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(args0)).collect()
}

fn open_in_root(root: &Dir, path: &Path) -> Option<cap_std::fs::File> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let file = root.open(relative).ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

fn read_program(mut file: cap_std::fs::File, args0: &str) -> Result<Program> {
    let mut head = [0u8; 4];
    let n = file.read(&mut head).with_context(|| format!("reading {args0}"))?;
    match &head[..n] {
        b"\0asm" => {
            let mut bytes = head.to_vec();
            file.read_to_end(&mut bytes).with_context(|| format!("reading {args0}"))?;
            Ok(Program::Wasm(bytes))
        }
        [0x7f, b'E', b'L', b'F'] => Ok(Program::Native),
        [b'#', b'!', ..] => Ok(Program::Native),
        other => Err(invalid(format!(
            "{args0} is neither a WebAssembly module nor a native executable (it starts with \"{}\"); \
             the image entrypoint must name a .wasm module built for wasip1",
            other.escape_ascii()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, bytes) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        dir
    }

    #[test]
    fn wasm_native_missing_and_junk_are_told_apart() {
        let root = rootfs(&[
            ("app.wasm", b"\0asm\x01\0\0\0"),
            ("pause", b"\x7fELF\x02\x01"),
            ("bin/tool", b"\x7fELF"),
            ("notes.wasm", b"hello world"),
        ]);
        let env = vec!["PATH=/bin".to_string()];
        assert!(matches!(classify(root.path(), "/app.wasm", "/", &env).unwrap(), Program::Wasm(b) if b.len() == 8));
        assert!(matches!(classify(root.path(), "app.wasm", "/", &env).unwrap(), Program::Missing));
        assert!(matches!(classify(root.path(), "./app.wasm", "/", &env).unwrap(), Program::Wasm(_)));
        assert!(matches!(classify(root.path(), "/pause", "/", &env).unwrap(), Program::Native));
        assert!(matches!(classify(root.path(), "tool", "/", &env).unwrap(), Program::Native));
        assert!(matches!(classify(root.path(), "/nope.wasm", "/", &env).unwrap(), Program::Missing));
        let err = classify(root.path(), "/notes.wasm", "/", &env).err().unwrap();
        assert!(err.to_string().contains("neither a WebAssembly module"), "{err}");
    }

    #[test]
    fn an_export_follows_the_hash() {
        assert_eq!(split_export("/m.wasm#run"), ("/m.wasm", Some("run")));
        assert_eq!(split_export("/m.wasm"), ("/m.wasm", None));
        assert_eq!(split_export("/a#b/m.wasm"), ("/a#b/m.wasm", None));
        assert_eq!(split_export("/m.wasm#"), ("/m.wasm#", None));
    }

    #[test]
    fn links_cannot_escape_the_rootfs() {
        let outside = rootfs(&[("secret.wasm", b"\0asm\x01\0\0\0")]);
        let root = rootfs(&[]);
        std::os::unix::fs::symlink(outside.path().join("secret.wasm"), root.path().join("app.wasm")).unwrap();
        assert!(matches!(classify(root.path(), "/app.wasm", "/", &[]).unwrap(), Program::Missing));
    }
}
