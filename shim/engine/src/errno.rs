//! OS errors a program must see as errors, not traps.
//!
//! wasi-common turns any OS error it has no WASI code for into a trap, which kills the
//! module. Some of those are everyday results: writing under a read-only mount (EROFS) most
//! of all. Directories handed to a module are wrapped so those errors reach it as errnos.

use std::any::Any;
use std::path::PathBuf;

use wasi_common::dir::{OpenResult, ReaddirCursor, ReaddirEntity, WasiDir};
use wasi_common::file::{FdFlags, Filestat, OFlags};
use wasi_common::snapshots::preview_1::types::Errno;
use wasi_common::{Error, SystemTimeSpec};

pub(crate) struct ErrnoDir(pub Box<dyn WasiDir>);

/// The WASI code for the OS errors wasi-common leaves unmapped, or the error unchanged.
fn mapped(err: Error) -> Error {
    let trap = match err.downcast() {
        Ok(errno) => return errno.into(),
        Err(trap) => trap,
    };
    let code = trap.chain().find_map(|e| e.downcast_ref::<std::io::Error>()).and_then(|e| e.raw_os_error());
    match code {
        Some(libc::EROFS) => Errno::Rofs.into(),
        Some(libc::ETXTBSY) => Errno::Txtbsy.into(),
        Some(libc::ENXIO) => Errno::Nxio.into(),
        Some(libc::ENODEV) => Errno::Nodev.into(),
        Some(libc::EDEADLK) => Errno::Deadlk.into(),
        _ => Error::trap(trap),
    }
}

#[async_trait::async_trait]
impl WasiDir for ErrnoDir {
    // The inner directory's own type, so wasi-common's rename and link (which downcast the
    // destination directory) keep working across wrapped directories.
    fn as_any(&self) -> &dyn Any {
        self.0.as_any()
    }

    async fn open_file(
        &self,
        symlink_follow: bool,
        path: &str,
        oflags: OFlags,
        read: bool,
        write: bool,
        fdflags: FdFlags,
    ) -> Result<OpenResult, Error> {
        let opened = self.0.open_file(symlink_follow, path, oflags, read, write, fdflags).await.map_err(mapped)?;
        Ok(match opened {
            OpenResult::Dir(dir) => OpenResult::Dir(Box::new(ErrnoDir(dir))),
            file => file,
        })
    }

    async fn create_dir(&self, path: &str) -> Result<(), Error> {
        self.0.create_dir(path).await.map_err(mapped)
    }

    async fn readdir(
        &self,
        cursor: ReaddirCursor,
    ) -> Result<Box<dyn Iterator<Item = Result<ReaddirEntity, Error>> + Send>, Error> {
        self.0.readdir(cursor).await.map_err(mapped)
    }

    async fn symlink(&self, old_path: &str, new_path: &str) -> Result<(), Error> {
        self.0.symlink(old_path, new_path).await.map_err(mapped)
    }

    async fn remove_dir(&self, path: &str) -> Result<(), Error> {
        self.0.remove_dir(path).await.map_err(mapped)
    }

    async fn unlink_file(&self, path: &str) -> Result<(), Error> {
        self.0.unlink_file(path).await.map_err(mapped)
    }

    async fn read_link(&self, path: &str) -> Result<PathBuf, Error> {
        self.0.read_link(path).await.map_err(mapped)
    }

    async fn get_filestat(&self) -> Result<Filestat, Error> {
        self.0.get_filestat().await.map_err(mapped)
    }

    async fn get_path_filestat(&self, path: &str, follow_symlinks: bool) -> Result<Filestat, Error> {
        self.0.get_path_filestat(path, follow_symlinks).await.map_err(mapped)
    }

    async fn rename(&self, path: &str, dest_dir: &dyn WasiDir, dest_path: &str) -> Result<(), Error> {
        self.0.rename(path, dest_dir, dest_path).await.map_err(mapped)
    }

    async fn hard_link(&self, path: &str, target_dir: &dyn WasiDir, target_path: &str) -> Result<(), Error> {
        self.0.hard_link(path, target_dir, target_path).await.map_err(mapped)
    }

    async fn set_times(
        &self,
        path: &str,
        atime: Option<SystemTimeSpec>,
        mtime: Option<SystemTimeSpec>,
        follow_symlinks: bool,
    ) -> Result<(), Error> {
        self.0.set_times(path, atime, mtime, follow_symlinks).await.map_err(mapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What wasi-common makes of an OS error it cannot map.
    fn unmapped(code: i32) -> Error {
        Error::trap(anyhow::Error::new(std::io::Error::from_raw_os_error(code)).context("Unknown OS error"))
    }

    #[test]
    fn read_only_filesystem_is_an_errno_not_a_trap() {
        assert_eq!(mapped(unmapped(libc::EROFS)).downcast().ok(), Some(Errno::Rofs));
        assert_eq!(mapped(unmapped(libc::ETXTBSY)).downcast().ok(), Some(Errno::Txtbsy));
    }

    #[test]
    fn errnos_pass_and_real_traps_stay_traps() {
        assert_eq!(mapped(Errno::Noent.into()).downcast().ok(), Some(Errno::Noent));
        assert!(mapped(unmapped(libc::EOWNERDEAD)).downcast().is_err());
        assert!(mapped(Error::trap(anyhow::anyhow!("guest fault"))).downcast().is_err());
    }
}
