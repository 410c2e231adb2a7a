//! What a component may do on the network: bind only the addresses of its listen spec,
//! connect anywhere.
//!
//! Enforced by wasmtime-wasi's socket address check, which every `wasi:sockets` bind,
//! connect and datagram goes through. A refused bind fails in the guest with
//! `access-denied`, and the reason goes to the task's stderr and the shim log, so whoever
//! reads the logs learns which spec to change.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use wasmtime_wasi::SocketAddrUse;

/// The addresses a component may bind (the container's listen spec). Outgoing
/// connections are always allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// `0.0.0.0:P` or `[::]:P` allows port P on any address of either family; any other
    /// address allows exactly itself.
    pub binds: Vec<SocketAddr>,
}

impl Network {
    pub fn new(binds: Vec<SocketAddr>) -> Self {
        Self { binds }
    }

    /// Whether the component may bind `addr`. UDP may always bind port 0: that is how a
    /// client gets an ephemeral port for its datagrams (DNS, QUIC), not a service.
    pub fn allows_bind(&self, addr: SocketAddr, udp: bool) -> bool {
        if udp && addr.port() == 0 {
            return true;
        }
        self.binds.iter().any(|declared| {
            declared.port() == addr.port()
                && (declared.ip().is_unspecified() || canonical(declared.ip()) == canonical(addr.ip()))
        })
    }

    fn describe(&self) -> String {
        if self.binds.is_empty() {
            return "none".into();
        }
        self.binds.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// `::ffff:a.b.c.d` is `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Where refusals are reported besides the log: the task's stderr.
pub(crate) type Reporter = Arc<Mutex<Option<Box<dyn Write + Send>>>>;

/// The check wasmtime-wasi calls for every address a socket uses.
pub(crate) fn address_check(
    network: &Network,
    program: &str,
    report: Reporter,
) -> impl Fn(SocketAddr, SocketAddrUse) -> bool + Send + Sync + 'static {
    let network = network.clone();
    let program = program.to_string();
    move |addr, use_| {
        let udp = match use_ {
            SocketAddrUse::TcpBind => false,
            SocketAddrUse::UdpBind => true,
            SocketAddrUse::TcpConnect | SocketAddrUse::UdpConnect | SocketAddrUse::UdpOutgoingDatagram => return true,
        };
        if network.allows_bind(addr, udp) {
            return true;
        }
        let message = format!(
            "{program}: refused to bind {} {addr}: not in the container's listen spec (declared: {}); \
             declare the port with the annotation fabricks.io/listen or the env FABRICKS_LISTEN \
             (e.g. http=8080), or bind a declared one",
            if udp { "UDP" } else { "TCP" },
            network.describe()
        );
        log::warn!("{message}");
        if let Some(sink) = report.lock().unwrap().as_mut() {
            let _ = writeln!(sink, "fabricks: {message}");
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(spec: &[&str]) -> Network {
        Network::new(spec.iter().map(|s| s.parse().unwrap()).collect())
    }

    #[test]
    fn a_declared_wildcard_allows_its_port_on_any_address() {
        let n = network(&["0.0.0.0:8080"]);
        for addr in ["0.0.0.0:8080", "127.0.0.1:8080", "[::]:8080", "[::1]:8080"] {
            assert!(n.allows_bind(addr.parse().unwrap(), false), "{addr}");
        }
        assert!(!n.allows_bind("0.0.0.0:8081".parse().unwrap(), false));
        assert!(!n.allows_bind("0.0.0.0:0".parse().unwrap(), false), "no TCP server on a random port");
    }

    #[test]
    fn a_declared_address_allows_only_itself() {
        let n = network(&["127.0.0.1:9090"]);
        assert!(n.allows_bind("127.0.0.1:9090".parse().unwrap(), false));
        assert!(n.allows_bind("[::ffff:127.0.0.1]:9090".parse().unwrap(), false));
        assert!(!n.allows_bind("0.0.0.0:9090".parse().unwrap(), false));
        assert!(!n.allows_bind("10.0.0.1:9090".parse().unwrap(), false));
    }

    #[test]
    fn udp_clients_get_ephemeral_ports_and_nothing_is_declared_by_default() {
        let n = Network::default();
        assert!(n.allows_bind("0.0.0.0:0".parse().unwrap(), true));
        assert!(!n.allows_bind("0.0.0.0:53".parse().unwrap(), true));
        assert!(!n.allows_bind("0.0.0.0:8080".parse().unwrap(), false));
    }

    #[test]
    fn connections_are_allowed_and_refused_binds_are_reported() {
        let out = Arc::new(Mutex::new(Vec::new()));
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let report: Reporter = Arc::new(Mutex::new(Some(Box::new(Shared(out.clone())))));
        let check = address_check(&network(&["0.0.0.0:8080"]), "app.wasm", report);
        assert!(check("10.1.2.3:443".parse().unwrap(), SocketAddrUse::TcpConnect));
        assert!(check("0.0.0.0:8080".parse().unwrap(), SocketAddrUse::TcpBind));
        assert!(!check("0.0.0.0:9999".parse().unwrap(), SocketAddrUse::TcpBind));
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert!(text.contains("refused to bind TCP 0.0.0.0:9999"), "{text}");
        assert!(text.contains("declared: 0.0.0.0:8080"), "{text}");
    }
}
