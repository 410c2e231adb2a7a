//! What a runner gives up before any guest code runs (docs/security.md): every capability
//! (bar, if its ports need it, binding low ports), the right to gain any back through exec,
//! and every syscall that wasmtime and the WASI host do not make.
//!
//! The runner calls [`confine`] once, with one thread, after it has entered the container's
//! network namespace: capabilities are a thread's, and threads made later inherit them.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use caps::{CapSet, Capability, CapsHashSet};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

mod syscalls;

/// What the runner keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    /// `CAP_NET_BIND_SERVICE`: a port below the namespace's `ip_unprivileged_port_start` is
    /// bound after the drop (a component binds its own).
    pub bind_low_ports: bool,
}

impl Keep {
    fn capabilities(self) -> CapsHashSet {
        let mut kept = CapsHashSet::new();
        if self.bind_low_ports {
            kept.insert(Capability::CAP_NET_BIND_SERVICE);
        }
        kept
    }
}

/// The lowest port that needs no capability in the calling thread's network namespace.
pub fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// Drops the capabilities `keep` does not name from every set (the bounding set too, so an
/// exec as uid 0 gets none back), sets `no_new_privs`, and installs the syscall allowlist on
/// every thread of the process. Irreversible.
pub fn confine(keep: Keep) -> Result<()> {
    let filter = allowlist().context("building the runner's seccomp filter")?;
    drop_capabilities(keep)?;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("setting no_new_privs");
    }
    seccompiler::apply_filter_all_threads(&filter).context("installing the runner's seccomp filter")?;
    Ok(())
}

fn drop_capabilities(keep: Keep) -> Result<()> {
    let kept = keep.capabilities();
    let fail = |what: &str| format!("dropping the runner's capabilities ({what}); is it root?");
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes below.
    for cap in caps::all().difference(&kept) {
        caps::drop(None, CapSet::Bounding, *cap).with_context(|| fail("bounding"))?;
    }
    caps::clear(None, CapSet::Ambient).with_context(|| fail("ambient"))?;
    caps::clear(None, CapSet::Inheritable).with_context(|| fail("inheritable"))?;
    // Effective before permitted: effective may never hold what permitted does not.
    caps::set(None, CapSet::Effective, &kept).with_context(|| fail("effective"))?;
    caps::set(None, CapSet::Permitted, &kept).with_context(|| fail("permitted"))?;
    Ok(())
}

/// The BPF program: the syscalls in [`syscalls::ALLOWED`] pass, the argument-checked ones
/// pass with those arguments only, anything else fails with `EPERM` (a program sees an
/// error it can report, as under Docker's default profile, rather than a kill).
pub fn allowlist() -> Result<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = syscalls::ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    for &(nr, arg, values) in syscalls::BY_ARGUMENT {
        let by_value = values
            .iter()
            .map(|&v| {
                let condition = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, v)?;
                SeccompRule::new(vec![condition])
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        rules.insert(nr, by_value);
    }
    let arch = std::env::consts::ARCH.try_into().context("the seccomp filter's architecture")?;
    let filter = SeccompFilter::new(rules, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow, arch)?;
    Ok(filter.try_into()?)
}

#[cfg(test)]
mod tests;
