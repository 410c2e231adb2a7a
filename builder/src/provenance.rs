//! Where an image comes from, as OCI annotations: when it was made and, for a
//! git checkout, the repository and commit.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

pub const CREATED: &str = "org.opencontainers.image.created";
pub const SOURCE: &str = "org.opencontainers.image.source";
pub const REVISION: &str = "org.opencontainers.image.revision";

/// `created` from `created` (seconds), `source`/`revision` from git when
/// `dir` is in a checkout; a non-git directory (or no git) gives neither.
pub fn annotations(dir: &Path, created: u64) -> BTreeMap<String, String> {
    let mut out = BTreeMap::from([(CREATED.to_owned(), fabricks_image::rfc3339(created))]);
    if let Some(url) = git(dir, &["remote", "get-url", "origin"]) {
        out.insert(SOURCE.to_owned(), url);
    }
    if let Some(commit) = git(dir, &["rev-parse", "HEAD"]) {
        out.insert(REVISION.to_owned(), commit);
    }
    out
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    match output.status.success() && !text.is_empty() {
        true => Some(text),
        false => {
            log::debug!("git {} in {}: nothing ({})", args.join(" "), dir.display(), output.status);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_git_only_created() {
        let dir = tempfile::tempdir().unwrap();
        let got = annotations(dir.path(), 0);
        assert_eq!(got.get(CREATED).map(String::as_str), Some("1970-01-01T00:00:00Z"));
        assert!(!got.contains_key(REVISION));
    }
}
