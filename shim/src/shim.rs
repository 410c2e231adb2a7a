//! The shim binary's entry points as containerd calls them: `start` (spawn or reuse the
//! pod's shim), `delete` (clean up after a shim that died) and the task server itself.

use std::path::Path;
use std::sync::Arc;

use containerd_shim::api::DeleteResponse;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, ExitSignal, Flags, StartOpts};

use crate::events::Containerd;
use crate::native::Runc;
use crate::node::Node;
use crate::service::Service;
use crate::spec::ContainerSpec;

pub struct FabricksShim {
    namespace: String,
    id: String,
    containerd: String,
    /// This serving process's ttrpc socket (`unix://…`).
    socket: String,
    exit: Arc<ExitSignal>,
}

impl containerd_shim::Shim for FabricksShim {
    type T = Service<Containerd, Node>;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Self {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            containerd: args.address.clone(),
            socket: args.socket.clone(),
            exit: Arc::default(),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let spec = ContainerSpec::load(Path::new(".")).ok();
        let grouping = spec.as_ref().and_then(|s| s.sandbox_id()).map_or_else(|| opts.id.clone(), str::to_string);
        let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &grouping);
        // A pod's later containers join the shim that already serves the pod, as containerd's
        // own shims do: answering with its address here saves spawning a server only to have
        // it find the address in use, and waiting on that server's stdout, which once hung a
        // StartContainer for its whole 2-minute deadline.
        let address = if serving(&address) { address } else { containerd_shim::spawn(opts, &grouping, Vec::new())?.1 };
        std::fs::write("address", &address)
            .map_err(|e| containerd_shim::Error::Other(format!("writing the address file: {e}")))?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        // containerd runs this in the bundle when a shim died without deleting its task.
        let bundle = std::env::current_dir().unwrap_or_default();
        if bundle.join("init.pid").exists() {
            if let Err(e) = Runc::new(&self.namespace).delete(&self.id, &bundle) {
                log::warn!("cleaning up native task {}: {e:#}", self.id);
            }
        }
        remove_dead_socket(&bundle);
        let spec = ContainerSpec::load(&bundle);
        let rootfs = spec.as_ref().map_or_else(|_| bundle.join("rootfs"), |s| s.rootfs.clone());
        if let Err(e) = crate::mounts::unmount_all(&rootfs) {
            log::warn!("unmounting the rootfs of {}: {e:#}", self.id);
        }
        let cgroups = spec.and_then(|spec| crate::cgroup::Cgroup::remove_after_crash(&spec, &self.namespace, &self.id));
        if let Err(e) = cgroups {
            log::warn!("removing the cgroups of {}: {e:#}", self.id);
        }
        Ok(DeleteResponse {
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(crate::state::now()),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        // The crate calls this once the server listens: the socket file now is ours.
        let ours = socket_inode(&self.socket);
        self.exit.wait();
        remove_socket(&self.socket, ours);
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        let exit = self.exit.clone();
        let events = Containerd::new(publisher, &self.namespace);
        Service::new(events, Node::new(&self.namespace, &self.containerd), move || exit.signal())
    }
}

/// Whether a shim listens on `address` (`unix://…`). The connect does not block, so a
/// listener that does not accept cannot stall the start; a stale socket file (its shim died)
/// refuses, and then a new shim is spawned, which replaces the file.
fn serving(address: &str) -> bool {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let Ok(addr) = UnixAddr::new(address.trim_start_matches("unix://")) else {
        return false;
    };
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let Ok(fd) = socket(AddressFamily::Unix, SockType::Stream, flags, None) else {
        return false;
    };
    connect(fd.as_raw_fd(), &addr).is_ok()
}

/// A shim killed outright leaves its socket file in containerd's global socket directory.
/// The bundle's `address` file (written at start) names it; it goes only if nothing answers
/// there, since the same socket serves every container of a pod and a new shim may already
/// listen on it.
fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let address = address.trim();
    if address.is_empty() || serving(address) {
        return;
    }
    match std::fs::remove_file(address.trim_start_matches("unix://")) {
        Ok(()) => log::info!("removed the dead shim's socket {address}"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("removing the dead shim's socket {address}: {e}"),
    }
}

fn socket_inode(socket: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(socket.trim_start_matches("unix://")).ok().map(|m| m.ino())
}

/// Removes the socket file while the bundle still exists. The crate removes it too, after
/// reading its address back from the bundle, which containerd deletes as soon as the shim
/// disconnects: when that wins (about 1 shutdown in 250 under churn), the file was left
/// behind. Only the file this process listened on: a new shim for the same id may own a
/// newer one.
fn remove_socket(socket: &str, ours: Option<u64>) {
    if ours.is_none() || socket_inode(socket) != ours {
        return;
    }
    if let Err(e) = std::fs::remove_file(socket.trim_start_matches("unix://")) {
        log::warn!("removing the shim socket {socket}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::{remove_dead_socket, serving};
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_listening_socket_is_serving_and_a_stale_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let address = format!("unix://{}", path.display());
        assert!(!serving(&address), "no socket file yet");
        let listener = UnixListener::bind(&path).unwrap();
        assert!(serving(&address), "a listener that has not accepted yet still serves");
        drop(listener);
        assert!(path.exists(), "the stale file stays, as after a shim that died");
        assert!(!serving(&address), "a socket nobody listens on refuses");
    }

    #[test]
    fn a_dead_shims_socket_goes_and_a_live_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(dir.path().join("address"), format!("unix://{}", path.display())).unwrap();
        let listener = UnixListener::bind(&path).unwrap();
        remove_dead_socket(dir.path());
        assert!(path.exists(), "a socket that still answers serves other containers of the pod");
        drop(listener);
        remove_dead_socket(dir.path());
        assert!(!path.exists(), "the socket of a shim that died is removed");
        remove_dead_socket(dir.path());
    }
}
