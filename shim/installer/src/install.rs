//! Files on the host: the shim binary, and edits of a config file that keep the original aside
//! (`<file>.fabricks-backup`, or `<file>.fabricks-created` when there was none) so that
//! uninstall puts it back byte for byte.

use crate::config::{self, Schema};
use crate::k3s;
use anyhow::{Context, Result};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const BACKUP_SUFFIX: &str = ".fabricks-backup";
const CREATED_SUFFIX: &str = ".fabricks-created";

/// One edit of one text file: our addition, and its removal.
pub trait Edit {
    /// The file's content when it does not exist yet.
    fn fresh(&self) -> String;
    fn add(&self, text: &str, what: &str) -> Result<String>;
    fn remove(&self, text: &str, what: &str) -> Result<String>;
}

/// containerd's config.toml; a missing one is created with `new_schema`.
pub struct ConfigEdit {
    pub new_schema: Schema,
}

impl Edit for ConfigEdit {
    fn fresh(&self) -> String {
        self.new_schema.minimal_config()
    }
    fn add(&self, text: &str, what: &str) -> Result<String> {
        config::add_runtime(text, what)
    }
    fn remove(&self, text: &str, what: &str) -> Result<String> {
        config::remove_runtime(text, what)
    }
}

/// A k3s/RKE2 template rendering a config of `schema`.
pub struct TemplateEdit {
    pub schema: Schema,
}

impl Edit for TemplateEdit {
    fn fresh(&self) -> String {
        k3s::BASE.to_owned()
    }
    fn add(&self, text: &str, _: &str) -> Result<String> {
        Ok(k3s::add_block(text, self.schema))
    }
    fn remove(&self, text: &str, _: &str) -> Result<String> {
        Ok(k3s::remove_block(text))
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Set while containerd owes a restart for a config we changed: a run that fails to restart
/// leaves it, so the next run restarts although the config itself needs no change.
pub fn restart_marker(config: &Path) -> PathBuf {
    with_suffix(config, ".fabricks-restart-pending")
}

pub fn backup_path(path: &Path) -> PathBuf {
    with_suffix(path, BACKUP_SUFFIX)
}

pub fn created_marker(path: &Path) -> PathBuf {
    with_suffix(path, CREATED_SUFFIX)
}

/// The file's text, `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).with_context(|| {
            format!("{} is not UTF-8 text; fix it and run again (nothing was changed)", path.display())
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}; is the host's root mounted read-write?", path.display())),
    }
}

/// Replaces `path` through a temporary file beside it (a crash never leaves half a config),
/// keeping the old file's permissions.
pub fn write_atomic(path: &Path, data: &[u8], default_mode: u32) -> Result<()> {
    let dir = path.parent().context("a file path has a parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mode = fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(default_mode);
    let temp = with_suffix(path, ".fabricks-new");
    fs::write(&temp, data)
        .with_context(|| format!("writing {}; is the host's root mounted read-write?", temp.display()))?;
    fs::set_permissions(&temp, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", temp.display()))?;
    fs::rename(&temp, path).with_context(|| format!("moving {} into place", path.display()))
}

pub fn remove_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// Keeps the file as it was before our first edit; later runs keep that first original. For a
/// file that did not exist the marker holds what we started it from (`base`), so uninstall
/// can tell whether anyone changed it since.
fn save_original(path: &Path, current: Option<&str>, base: &str) -> Result<()> {
    let (backup, marker) = (backup_path(path), created_marker(path));
    if backup.exists() || marker.exists() {
        return Ok(());
    }
    match current {
        Some(text) => write_atomic(&backup, text.as_bytes(), 0o600),
        None => write_atomic(&marker, base.as_bytes(), 0o600),
    }
    .with_context(|| format!("keeping a backup of {} before editing it", path.display()))
}

/// The file before our first edit, as `save_original` kept it.
enum Original {
    /// It did not exist; we started it from this text.
    Absent {
        base: String,
    },
    Text(String),
}

fn read_original(path: &Path) -> Result<Option<Original>> {
    if let Some(base) = read_optional(&created_marker(path))? {
        return Ok(Some(Original::Absent { base }));
    }
    Ok(read_optional(&backup_path(path))?.map(Original::Text))
}

/// Applies `edit` to the file at `path`; returns whether the file changed.
pub fn apply(path: &Path, edit: &dyn Edit) -> Result<bool> {
    let what = path.display().to_string();
    let current = read_optional(path)?;
    let base = current.clone().unwrap_or_else(|| edit.fresh());
    let wanted = edit.add(&base, &what)?;
    if current.as_deref() == Some(wanted.as_str()) {
        return Ok(false);
    }
    save_original(path, current.as_deref(), &base)?;
    write_atomic(path, wanted.as_bytes(), 0o644)?;
    Ok(true)
}

/// Undoes `edit`: the original comes back byte for byte if the file is still exactly what we
/// made of it; if someone changed it since, only our part is removed (their change stays).
/// Returns whether the file changed.
pub fn revert(path: &Path, edit: &dyn Edit) -> Result<bool> {
    let what = path.display().to_string();
    let current = read_optional(path)?;
    let original = read_original(path)?;
    let wanted = match (&original, &current) {
        (Some(orig), Some(cur)) if made_from(edit, orig, cur, &what) => match orig {
            Original::Absent { .. } => None,
            Original::Text(text) => Some(text.clone()),
        },
        (_, Some(cur)) => {
            if original.is_some() {
                log::warn!(
                    "{what} changed since the install: removing only the fabricks runtime, the rest stays as it is now"
                );
            }
            Some(edit.remove(cur, &what)?)
        }
        (_, None) => None,
    };
    let changed = wanted != current;
    match &wanted {
        Some(text) if changed => write_atomic(path, text.as_bytes(), 0o644)?,
        Some(_) => {}
        None => {
            remove_if_present(path)?;
        }
    }
    remove_if_present(&backup_path(path))?;
    remove_if_present(&created_marker(path))?;
    Ok(changed)
}

fn made_from(edit: &dyn Edit, original: &Original, current: &str, what: &str) -> bool {
    let base = match original {
        Original::Absent { base } => base,
        Original::Text(text) => text,
    };
    edit.add(base, what).is_ok_and(|made| made == current)
}

/// Copies the shim binary to `dest` unless the same bytes are there; returns whether it did.
/// Replaced by rename: running shims keep executing the old file (no ETXTBSY).
pub fn copy_binary(src: &Path, dest: &Path) -> Result<bool> {
    let new = fs::read(src).with_context(|| {
        format!("reading the shim binary {}; the installer image ships it there (or pass --shim)", src.display())
    })?;
    if fs::read(dest).is_ok_and(|old| old == new) {
        return Ok(false);
    }
    write_atomic(dest, &new, 0o755)?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", dest.display()))?;
    Ok(true)
}

/// Removes the installed shim; returns whether there was one.
pub fn remove_binary(dest: &Path) -> Result<bool> {
    remove_if_present(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str =
        "# ops\nversion = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause:3.9\"\n";

    fn config_edit() -> ConfigEdit {
        ConfigEdit { new_schema: Schema::V2 }
    }

    #[test]
    fn apply_twice_then_revert_restores_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, ORIGINAL).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(apply(&path, &config_edit()).unwrap());
        let once = fs::read_to_string(&path).unwrap();
        assert!(!apply(&path, &config_edit()).unwrap(), "second run changes nothing");
        assert_eq!(fs::read_to_string(&path).unwrap(), once);
        assert_eq!(fs::read_to_string(backup_path(&path)).unwrap(), ORIGINAL);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert!(revert(&path, &config_edit()).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), ORIGINAL);
        assert!(!backup_path(&path).exists());
        assert!(!revert(&path, &config_edit()).unwrap(), "second revert changes nothing");
    }

    #[test]
    fn revert_after_a_user_edit_removes_only_our_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, ORIGINAL).unwrap();
        apply(&path, &config_edit()).unwrap();
        let edited = fs::read_to_string(&path).unwrap().replace("pause:3.9", "pause:3.10");
        fs::write(&path, &edited).unwrap();
        revert(&path, &config_edit()).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), ORIGINAL.replace("pause:3.9", "pause:3.10"));
    }

    #[test]
    fn missing_config_is_created_and_removed_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/containerd/config.toml");
        let edit = ConfigEdit { new_schema: Schema::V3 };
        assert!(apply(&path, &edit).unwrap());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("version = 3\n"), "{text}");
        assert!(created_marker(&path).exists());
        // Uninstall does not know the schema the file was created with: the marker does.
        assert!(revert(&path, &ConfigEdit { new_schema: Schema::V2 }).unwrap());
        assert!(!path.exists() && !created_marker(&path).exists());
    }

    #[test]
    fn invalid_config_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, "version = 2\n[plugins\n").unwrap();
        let err = apply(&path, &config_edit()).unwrap_err();
        assert!(format!("{err:#}").contains("is not valid TOML"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "version = 2\n[plugins\n");
        assert!(!backup_path(&path).exists(), "no backup of a refused file");
    }

    #[test]
    fn template_created_from_base_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config-v3.toml.tmpl");
        let edit = TemplateEdit { schema: Schema::V3 };
        assert!(apply(&path, &edit).unwrap());
        assert!(fs::read_to_string(&path).unwrap().starts_with(k3s::BASE));
        assert!(!apply(&path, &edit).unwrap());
        assert!(revert(&path, &edit).unwrap());
        assert!(!path.exists());
    }

    #[test]
    fn binary_copy_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dest) = (dir.path().join("shim"), dir.path().join("bin/shim"));
        fs::write(&src, b"\x7fELF shim").unwrap();
        assert!(copy_binary(&src, &dest).unwrap());
        assert!(!copy_binary(&src, &dest).unwrap());
        assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o755);
        assert!(remove_binary(&dest).unwrap());
        assert!(!remove_binary(&dest).unwrap());
    }
}
