//! The listen spec: which TCP ports a Fabricks module serves on, and under which names.
//!
//! One syntax everywhere — the pod annotation [`ANNOTATION`], the container variable
//! [`ENV_LISTEN`], `fabricks build --listen` and `fabricks.toml`'s `listen` — parsed here:
//!
//! ```text
//! SPEC  = ENTRY *("," ENTRY)
//! ENTRY = [NAME "="] [ADDR ":"] PORT ["/tcp"]
//! ```
//!
//! e.g. `http=8080` or `http=0.0.0.0:8080,admin=[::1]:9090`. A bare port binds `0.0.0.0`; an
//! entry without a name is called `port-PORT`. `ADDR` is an IP literal, IPv6 in brackets.
//! Names and ports are unique within a spec.
//!
//! The shim binds every endpoint itself and tells the module which descriptor holds which
//! endpoint in [`ENV_LISTEN_FDS`] (`http=4,admin=5`): see [`format_fds`] and [`parse_fds`].
//! The Go side of the same contract is `sdk/go` (`fabricks.Listen(name)`).

use anyhow::{bail, ensure, Result};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Pod annotation carrying a listen spec (the shim reads it from the container's
/// `config.json` annotations).
pub const ANNOTATION: &str = "fabricks.io/listen";
/// Image config label carrying the listen spec `fabricks build --listen` was given; the
/// config's `ExposedPorts` cannot hold the names.
pub const LABEL: &str = ANNOTATION;
/// Container environment variable carrying a listen spec; natively, the Go SDK listens on it.
pub const ENV_LISTEN: &str = "FABRICKS_LISTEN";
/// Variable the shim hands the module: `NAME=FD` pairs, comma-separated.
pub const ENV_LISTEN_FDS: &str = "FABRICKS_LISTEN_FDS";

/// Where a `wasi:http` component serves when no annotation, env, label or ExposedPorts says
/// (the shim and `fabricks run` alike): the port most HTTP images expose.
pub const HTTP_COMPONENT_DEFAULT: &str = "http=8080";

/// Longest endpoint name accepted.
pub const MAX_NAME_LEN: usize = 63;

/// One named TCP endpoint of a spec.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub name: String,
    pub addr: SocketAddr,
}

impl Endpoint {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The image config `ExposedPorts` key: `8080/tcp`.
    pub fn exposed_port(&self) -> String {
        format!("{}/tcp", self.port())
    }

    /// The name an entry without `NAME=` gets.
    pub fn default_name(port: u16) -> String {
        format!("port-{port}")
    }
}

/// The shortest entry that parses back to this endpoint: no `port-PORT` name, no
/// `0.0.0.0`, no `/tcp`.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name != Endpoint::default_name(self.port()) {
            write!(f, "{}=", self.name)?;
        }
        if self.addr.ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
            write!(f, "{}", self.port())
        } else {
            write!(f, "{}", self.addr)
        }
    }
}

/// A parsed, validated listen spec: endpoints in the order written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListenSpec {
    endpoints: Vec<Endpoint>,
}

impl ListenSpec {
    /// Parses one spec. A blank spec has no endpoints; an empty entry (`a=1,,b=2`, or a
    /// trailing comma) is an error.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_all([text])
    }

    /// Parses several specs as one (a repeated `--listen`): names and ports must be unique
    /// across all of them. Blank parts are skipped.
    pub fn parse_all<I, S>(parts: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut entries: Vec<(String, Endpoint)> = Vec::new();
        for part in parts {
            let part = part.as_ref();
            if part.trim().is_empty() {
                continue;
            }
            for raw in part.split(',') {
                let raw = raw.trim();
                entries.push((raw.to_owned(), parse_entry(raw)?));
            }
        }
        check_unique(&entries)?;
        Ok(ListenSpec { endpoints: entries.into_iter().map(|(_, endpoint)| endpoint).collect() })
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn get(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|e| e.name.as_str())
    }

    /// `ExposedPorts` keys (`8080/tcp`), in spec order.
    pub fn exposed_ports(&self) -> Vec<String> {
        self.endpoints.iter().map(Endpoint::exposed_port).collect()
    }
}

impl FromStr for ListenSpec {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        ListenSpec::parse(text)
    }
}

/// The canonical spec: entries as [`Endpoint`] displays them, joined by `,`. It parses back
/// to the same spec.
impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{endpoint}")?;
        }
        Ok(())
    }
}

fn parse_entry(raw: &str) -> Result<Endpoint> {
    let fail = |why: String| -> anyhow::Error {
        anyhow::anyhow!("listen entry {raw:?}: {why}; expected NAME=[ADDR:]PORT[/tcp], e.g. http=8080")
    };
    if raw.is_empty() {
        return Err(anyhow::anyhow!(
            "empty listen entry (two commas in a row, or a trailing comma); \
             expected NAME=[ADDR:]PORT[/tcp], e.g. http=8080"
        ));
    }
    let (name, rest) = match raw.split_once('=') {
        Some((name, rest)) => (Some(name.trim()), rest.trim()),
        None => (None, raw),
    };
    if let Some(name) = name {
        check_name(name).map_err(|why| fail(why.to_string()))?;
    }
    let rest = match rest.rsplit_once('/') {
        Some((rest, protocol)) if protocol.eq_ignore_ascii_case("tcp") => rest,
        Some((_, protocol)) => return Err(fail(format!("protocol {protocol:?} is not supported, only tcp"))),
        None => rest,
    };
    let addr = parse_addr(rest).map_err(|why| fail(why.to_string()))?;
    Ok(Endpoint { name: name.map_or_else(|| Endpoint::default_name(addr.port()), str::to_owned), addr })
}

/// `[ADDR:]PORT` → socket address; a bare port means `0.0.0.0`.
fn parse_addr(text: &str) -> Result<SocketAddr> {
    ensure!(!text.is_empty(), "no port");
    if let Some(bracketed) = text.strip_prefix('[') {
        let Some((ip, port)) = bracketed.split_once("]:") else {
            bail!("an IPv6 address needs a port after it: [ADDR]:PORT");
        };
        let ip: Ipv6Addr = ip.parse().map_err(|_| anyhow::anyhow!("{ip:?} is not an IPv6 address"))?;
        return Ok(SocketAddr::new(IpAddr::V6(ip), parse_port(port)?));
    }
    match text.rsplit_once(':') {
        None => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), parse_port(text)?)),
        Some((ip, _)) if ip.contains(':') => {
            bail!("an IPv6 address goes in brackets, e.g. [::1]:9090")
        }
        Some((ip, port)) => {
            let ip: Ipv4Addr = ip.parse().map_err(|_| {
                anyhow::anyhow!(
                    "address {ip:?} is not an IP address (host names are not resolved); \
                     use an IP such as 127.0.0.1, or leave it out for 0.0.0.0"
                )
            })?;
            Ok(SocketAddr::new(IpAddr::V4(ip), parse_port(port)?))
        }
    }
}

fn parse_port(text: &str) -> Result<u16> {
    ensure!(!text.is_empty(), "no port");
    ensure!(text.bytes().all(|b| b.is_ascii_digit()), "port {text:?} is not a number");
    match text.parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        _ => bail!("port {text} is out of range 1-65535"),
    }
}

/// Names travel in `NAME=FD,…` lists and as Go identifiers' neighbours in logs: letters,
/// digits, `-`, `_`, `.`, starting with a letter or digit.
fn check_name(name: &str) -> Result<()> {
    ensure!(!name.is_empty(), "the name before `=` is empty");
    ensure!(name.len() <= MAX_NAME_LEN, "name {name:?} is longer than {MAX_NAME_LEN} characters");
    ensure!(
        name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
        "name {name:?} may hold only letters, digits, `-`, `_` and `.`, and must start with a letter or digit"
    );
    Ok(())
}

fn check_unique(entries: &[(String, Endpoint)]) -> Result<()> {
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut ports: HashMap<u16, &str> = HashMap::new();
    for (raw, endpoint) in entries {
        if let Some(first) = names.insert(&endpoint.name, raw) {
            bail!("listen entries {first:?} and {raw:?} both use the name {:?}; names must be unique", endpoint.name);
        }
        if let Some(first) = ports.insert(endpoint.port(), raw) {
            bail!("listen entries {first:?} and {raw:?} both use port {}; ports must be unique", endpoint.port());
        }
    }
    Ok(())
}

/// The value of [`ENV_LISTEN_FDS`] for endpoints bound to descriptors: `http=4,admin=5`.
pub fn format_fds<'a, I>(fds: I) -> String
where
    I: IntoIterator<Item = (&'a str, u32)>,
{
    fds.into_iter().map(|(name, fd)| format!("{name}={fd}")).collect::<Vec<_>>().join(",")
}

/// Parses a [`ENV_LISTEN_FDS`] value back into `(name, fd)` pairs, in order. Blank is empty.
pub fn parse_fds(text: &str) -> Result<Vec<(String, u32)>> {
    let mut fds: Vec<(String, u32)> = Vec::new();
    if text.trim().is_empty() {
        return Ok(fds);
    }
    for raw in text.split(',') {
        let raw = raw.trim();
        let Some((name, fd)) = raw.split_once('=') else {
            bail!("{ENV_LISTEN_FDS} entry {raw:?}: expected NAME=FD");
        };
        check_name(name).map_err(|why| anyhow::anyhow!("{ENV_LISTEN_FDS} entry {raw:?}: {why}"))?;
        let fd: u32 = fd
            .parse()
            .map_err(|_| anyhow::anyhow!("{ENV_LISTEN_FDS} entry {raw:?}: {fd:?} is not a descriptor number"))?;
        ensure!(!fds.iter().any(|(n, _)| n == name), "{ENV_LISTEN_FDS} names {name:?} twice");
        fds.push((name.to_owned(), fd));
    }
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(text: &str) -> Vec<(String, String)> {
        ListenSpec::parse(text).unwrap().endpoints().iter().map(|e| (e.name.clone(), e.addr.to_string())).collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn error(text: &str) -> String {
        format!("{:#}", ListenSpec::parse(text).unwrap_err())
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(endpoints("http=8080"), pairs(&[("http", "0.0.0.0:8080")]));
        assert_eq!(
            endpoints("http=0.0.0.0:8080,admin=[::1]:9090"),
            pairs(&[("http", "0.0.0.0:8080"), ("admin", "[::1]:9090")])
        );
        assert_eq!(
            endpoints("8080, 127.0.0.1:9090/tcp ,metrics=9100/TCP"),
            pairs(&[("port-8080", "0.0.0.0:8080"), ("port-9090", "127.0.0.1:9090"), ("metrics", "0.0.0.0:9100"),])
        );
        assert_eq!(endpoints("a=[::]:1,b=65535"), pairs(&[("a", "[::]:1"), ("b", "0.0.0.0:65535")]));
        assert!(ListenSpec::parse("").unwrap().is_empty());
        assert!(ListenSpec::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn exposed_ports_and_lookup() {
        let spec: ListenSpec = "http=8080,admin=[::1]:9090".parse().unwrap();
        assert_eq!(spec.exposed_ports(), ["8080/tcp", "9090/tcp"]);
        assert_eq!(spec.names().collect::<Vec<_>>(), ["http", "admin"]);
        assert_eq!(spec.get("admin").unwrap().port(), 9090);
        assert!(spec.get("nope").is_none());
        assert_eq!(spec.len(), 2);
    }

    #[test]
    fn displays_canonically_and_round_trips() {
        for (text, canonical) in [
            ("http=8080", "http=8080"),
            ("http=0.0.0.0:8080/tcp", "http=8080"),
            ("8080", "8080"),
            ("port-8080=8080", "8080"),
            ("web=127.0.0.1:80,admin=[::1]:9090", "web=127.0.0.1:80,admin=[::1]:9090"),
            ("9090 , x=[::]:1", "9090,x=[::]:1"),
        ] {
            let spec = ListenSpec::parse(text).unwrap();
            assert_eq!(spec.to_string(), canonical, "{text}");
            assert_eq!(ListenSpec::parse(canonical).unwrap(), spec, "{text}");
        }
    }

    #[test]
    fn malformed_entries_are_named_in_the_error() {
        for (text, entry, why) in [
            ("http=", "\"http=\"", "no port"),
            ("=8080", "\"=8080\"", "name before `=` is empty"),
            ("http=80a", "\"http=80a\"", "is not a number"),
            ("http=-1", "\"http=-1\"", "is not a number"),
            ("h t=80", "\"h t=80\"", "may hold only letters"),
            ("-x=80", "\"-x=80\"", "must start with a letter or digit"),
            ("http=8080/udp", "\"http=8080/udp\"", "only tcp"),
            ("http=localhost:8080", "\"http=localhost:8080\"", "not an IP address"),
            ("http=::1:8080", "\"http=::1:8080\"", "in brackets"),
            ("http=[::1]", "\"http=[::1]\"", "needs a port"),
            ("http=[nope]:80", "\"http=[nope]:80\"", "not an IPv6 address"),
            ("http=1.2.3.4:", "\"http=1.2.3.4:\"", "no port"),
            ("a=1=2", "\"a=1=2\"", "is not"),
        ] {
            let err = error(text);
            assert!(err.contains(entry), "{text}: {err}");
            assert!(err.contains(why), "{text}: {err}");
        }
        let long = format!("{}=80", "n".repeat(MAX_NAME_LEN + 1));
        assert!(error(&long).contains("longer than 63"), "{}", error(&long));
    }

    #[test]
    fn ports_out_of_range() {
        for (text, port) in [("http=0", "0"), ("http=65536", "65536"), ("99999999999", "99999999999")] {
            let err = error(text);
            assert!(err.contains(&format!("port {port} is out of range 1-65535")), "{err}");
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn empty_entries_are_errors() {
        for text in ["http=8080,", ",http=8080", "a=1,,b=2"] {
            assert!(error(text).contains("empty listen entry"), "{text}: {}", error(text));
        }
    }

    #[test]
    fn duplicates_name_both_entries() {
        let err = error("http=8080,http=9090");
        assert!(err.contains("\"http=8080\" and \"http=9090\""), "{err}");
        assert!(err.contains("name \"http\""), "{err}");

        let err = error("a=8080,b=127.0.0.1:8080");
        assert!(err.contains("\"a=8080\" and \"b=127.0.0.1:8080\""), "{err}");
        assert!(err.contains("port 8080"), "{err}");

        // A default name can collide with an explicit one.
        let err = error("8080,port-8080=9090");
        assert!(err.contains("name \"port-8080\""), "{err}");
    }

    #[test]
    fn repeated_flags_are_one_spec() {
        let spec = ListenSpec::parse_all(["http=8080", "admin=9090,metrics=9100", ""]).unwrap();
        assert_eq!(spec.to_string(), "http=8080,admin=9090,metrics=9100");
        let err = format!("{:#}", ListenSpec::parse_all(["http=8080", "http=9090"]).unwrap_err());
        assert!(err.contains("both use the name \"http\""), "{err}");
        assert!(ListenSpec::parse_all(Vec::<String>::new()).unwrap().is_empty());
    }

    #[test]
    fn fds_round_trip() {
        let text = format_fds([("http", 4), ("admin", 5)]);
        assert_eq!(text, "http=4,admin=5");
        assert_eq!(parse_fds(&text).unwrap(), [("http".to_owned(), 4), ("admin".to_owned(), 5)]);
        assert!(parse_fds("").unwrap().is_empty());
        assert_eq!(format_fds([]), "");
        for (bad, why) in [
            ("http", "expected NAME=FD"),
            ("http=x", "not a descriptor number"),
            ("http=4,http=5", "twice"),
            ("=4", "empty"),
        ] {
            let err = format!("{:#}", parse_fds(bad).unwrap_err());
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains(ENV_LISTEN_FDS), "{bad}: {err}");
        }
    }
}
