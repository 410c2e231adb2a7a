//! Kubernetes' termination message: why a container ended, in the file kubelet reads after
//! it exits (the container's `terminationMessagePath`, which `kubectl describe` shows under
//! Last State). A native process writes it itself; a wasm program that traps or runs out of
//! memory cannot, so the shim writes the reason it already puts on the task's stderr.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::mounts;
use crate::spec::ContainerSpec;

/// kubelet's annotation with the container's `terminationMessagePath`; containerd passes it
/// on when the runtime's `container_annotations` list it (the installer's config does).
pub const MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";

/// The API's default `terminationMessagePath`, used when the annotation is not passed on.
const DEFAULT_PATH: &str = "/dev/termination-log";

/// kubelet reads at most this many bytes of the file.
const MAX_MESSAGE: usize = 4096;

/// The host file behind a container's termination message path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminationLog {
    host: PathBuf,
}

impl TerminationLog {
    /// The bind mount kubelet made for the message, if the spec has one: a container not
    /// started by kubelet has none, and nothing is written.
    pub fn of(spec: &ContainerSpec) -> Option<Self> {
        let path = spec.annotations.get(MESSAGE_PATH).map_or(DEFAULT_PATH, String::as_str);
        let mount = spec.mounts.iter().find(|m| m.destination().as_os_str() == path)?;
        Some(Self { host: mount.source().clone().filter(|_| mounts::is_bind(mount))? })
    }

    /// Writes `reason` unless the program wrote a message of its own (its choice wins).
    /// Never creates the file: kubelet made it, and a missing one means the pod is gone.
    pub fn record(&self, reason: &str) {
        let reason = reason.trim();
        if reason.is_empty() {
            return;
        }
        let opened = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW).open(&self.host);
        let written = opened.and_then(|mut file| {
            let meta = file.metadata()?;
            if !meta.is_file() || meta.len() > 0 {
                return Ok(());
            }
            file.write_all(truncated(reason, MAX_MESSAGE).as_bytes())
        });
        if let Err(e) = written {
            log::warn!("writing the termination message to {}: {e}", self.host.display());
        }
    }
}

/// The first `max` bytes of `text`, cut at a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    fn spec_with(dest: &str, source: &std::path::Path, annotation: Option<&str>) -> ContainerSpec {
        let mount = MountBuilder::default()
            .destination(dest)
            .source(source)
            .typ("bind")
            .options(vec!["rbind".to_string(), "rprivate".to_string(), "rw".to_string()])
            .build()
            .unwrap();
        let mut spec = ContainerSpec { mounts: vec![mount], ..Default::default() };
        if let Some(path) = annotation {
            spec.annotations.insert(MESSAGE_PATH.into(), path.into());
        }
        spec
    }

    #[test]
    fn the_reason_goes_to_the_file_kubelet_bound_at_the_default_path() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let log = TerminationLog::of(&spec_with(DEFAULT_PATH, file.path(), None)).expect("the default path");
        log.record("Error: app.wasm trapped: wasm trap: wasm `unreachable` instruction executed\n");
        assert_eq!(
            std::fs::read_to_string(file.path()).unwrap(),
            "Error: app.wasm trapped: wasm trap: wasm `unreachable` instruction executed"
        );
    }

    #[test]
    fn a_path_the_pod_chose_is_found_through_kubelets_annotation() {
        let file = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(TerminationLog::of(&spec_with("/tmp/why", file.path(), None)), None, "not the default path");
        let log = TerminationLog::of(&spec_with("/tmp/why", file.path(), Some("/tmp/why"))).expect("annotated");
        log.record("fabricks: app.wasm: out of memory");
        assert_eq!(std::fs::read_to_string(file.path()).unwrap(), "fabricks: app.wasm: out of memory");
    }

    #[test]
    fn the_programs_own_message_is_kept_and_nothing_is_created() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "my own reason").unwrap();
        TerminationLog::of(&spec_with(DEFAULT_PATH, file.path(), None)).unwrap().record("a trap");
        assert_eq!(std::fs::read_to_string(file.path()).unwrap(), "my own reason");

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        TerminationLog::of(&spec_with(DEFAULT_PATH, &missing, None)).unwrap().record("a trap");
        assert!(!missing.exists(), "the file was created");
    }

    #[test]
    fn a_long_reason_is_cut_to_what_kubelet_reads_at_a_character_boundary() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let reason = "é".repeat(MAX_MESSAGE);
        TerminationLog::of(&spec_with(DEFAULT_PATH, file.path(), None)).unwrap().record(&reason);
        let written = std::fs::read_to_string(file.path()).unwrap();
        assert_eq!(written.len(), MAX_MESSAGE);
        assert!(written.chars().all(|c| c == 'é'));
    }
}
