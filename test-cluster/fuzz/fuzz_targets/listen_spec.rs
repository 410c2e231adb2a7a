//! The listen spec comes from pod annotations, env and image labels: any text. It parses or
//! is refused with an error, never a panic, and what parses prints back as the same spec.

#![no_main]

use fabricks_listen::{format_fds, parse_fds, ListenSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(spec) = ListenSpec::parse(text) {
        let again = ListenSpec::parse(&spec.to_string()).expect("a printed spec parses");
        assert_eq!(again, spec, "{text:?} printed as {spec}");
        let _ = spec.exposed_ports();
    }
    if let Ok(fds) = parse_fds(text) {
        let printed = format_fds(fds.iter().map(|(name, fd)| (name.as_str(), *fd)));
        assert_eq!(parse_fds(&printed).expect("printed fds parse"), fds);
    }
});
