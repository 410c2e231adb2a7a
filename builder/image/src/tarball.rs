use anyhow::{Context, Result};
use std::io::Write;

/// A tar writer whose entries carry nothing from the machine that wrote them:
/// owner root, no user or group names, one fixed mtime. Equal content gives
/// equal bytes, which is what keeps layer and archive digests stable.
pub(crate) struct Tarball<W: Write> {
    builder: tar::Builder<W>,
    mtime: u64,
}

impl<W: Write> Tarball<W> {
    pub fn new(out: W, mtime: u64) -> Self {
        Tarball { builder: tar::Builder::new(out), mtime }
    }

    /// Adds a directory; `path` ends with `/`.
    pub fn dir(&mut self, path: &str) -> Result<()> {
        self.append(tar::EntryType::Directory, path, &[], 0o755)
    }

    pub fn file(&mut self, path: &str, data: &[u8], mode: u32) -> Result<()> {
        self.append(tar::EntryType::Regular, path, data, mode)
    }

    pub fn finish(self) -> Result<W> {
        self.builder.into_inner().context("finishing a tar archive")
    }

    fn append(&mut self, kind: tar::EntryType, path: &str, data: &[u8], mode: u32) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(self.mtime);
        self.builder.append_data(&mut header, path, data).with_context(|| format!("adding {path} to a tar archive"))
    }
}
