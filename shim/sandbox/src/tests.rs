//! Confinement is irreversible, so each case confines a child process (this test binary,
//! running only [`probe`]) and reads what it printed. Needs root, as the shim does.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::Command;

use super::*;

const PROBE_ENV: &str = "FABRICKS_SANDBOX_PROBE";

/// What a confined child printed: `key=value` lines.
fn run_probe(keep_low: bool) -> HashMap<String, String> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tests::probe", "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(PROBE_ENV, if keep_low { "keep-low" } else { "none" })
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the probe failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn errno_of(result: i32) -> String {
    if result >= 0 {
        "ok".to_string()
    } else {
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EPERM) => "EPERM".to_string(),
            other => format!("errno {other:?}"),
        }
    }
}

#[test]
#[ignore = "the confined child of the other tests; they run it"]
fn probe() {
    let keep = Keep { bind_low_ports: std::env::var(PROBE_ENV).unwrap() == "keep-low" };
    confine(keep).unwrap();
    // libtest has printed the test's name on this line.
    println!();
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    for line in status.lines() {
        if let Some((key, value)) = line.split_once(':') {
            if ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", "NoNewPrivs", "Seccomp"].contains(&key) {
                println!("{key}={}", value.trim());
            }
        }
    }
    // SAFETY: each call either fails or changes only this child, which ends here.
    unsafe {
        println!("unshare={}", errno_of(libc::unshare(libc::CLONE_NEWNS)));
        println!(
            "mount={}",
            errno_of(libc::mount(c"none".as_ptr(), c"/mnt".as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null()))
        );
        println!("ptrace={}", errno_of(libc::ptrace(libc::PTRACE_ATTACH, 1, 0, 0) as i32));
        println!("setuid={}", errno_of(libc::setuid(1000)));
        println!("tiocsti={}", errno_of(libc::ioctl(0, libc::TIOCSTI, c"x".as_ptr())));
        println!("dumpable={}", errno_of(libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0)));
    }
    // What a runner still does: files, threads, sockets, a child process.
    println!("read={}", if std::fs::read("/proc/self/cmdline").is_ok() { "ok" } else { "failed" });
    println!("thread={}", if std::thread::spawn(|| 7).join().unwrap() == 7 { "ok" } else { "failed" });
    println!("listen={}", if TcpListener::bind("127.0.0.1:0").is_ok() { "ok" } else { "failed" });
    let child = Command::new("/bin/true").status();
    println!("exec={}", if child.is_ok_and(|s| s.success()) { "ok" } else { "failed" });
}

#[test]
fn a_confined_runner_keeps_no_capability_and_cannot_regain_one() {
    let probe = run_probe(false);
    for set in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(probe[set], "0000000000000000", "{set}");
    }
    assert_eq!(probe["NoNewPrivs"], "1");
    // 2: a seccomp filter is installed.
    assert_eq!(probe["Seccomp"], "2");
}

#[test]
fn binding_low_ports_keeps_that_capability_only() {
    let probe = run_probe(true);
    let bind_service = format!("{:016x}", 1u64 << Capability::CAP_NET_BIND_SERVICE.index());
    assert_eq!(probe["CapEff"], bind_service);
    assert_eq!(probe["CapBnd"], bind_service);
    assert_eq!(probe["CapInh"], "0000000000000000");
}

#[test]
fn the_filter_refuses_what_a_runner_never_needs_and_passes_what_it_does() {
    let probe = run_probe(false);
    for refused in ["unshare", "mount", "ptrace", "setuid", "tiocsti", "dumpable"] {
        assert_eq!(probe[refused], "EPERM", "{refused}");
    }
    for allowed in ["read", "thread", "listen", "exec"] {
        assert_eq!(probe[allowed], "ok", "{allowed}");
    }
}

#[test]
fn the_filter_builds_for_this_machine() {
    let program = allowlist().unwrap();
    assert!(program.len() > syscalls::ALLOWED.len(), "one instruction per syscall at least");
}
