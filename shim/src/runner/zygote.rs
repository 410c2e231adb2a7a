//! Runners forked, not exec'd: the shim's server forks one helper process before its first
//! thread exists, and that helper (still one thread) forks every runner. A runner then
//! shares the pages the dynamic loader wrote at exec (the binary's relocated read-only data,
//! 1.1 MiB of a PIE) and the runtime's start-up with its shim instead of writing its own,
//! and skips an exec and a dynamic link at every create (docs/design.md, "Runners").
//!
//! The helper forks twice, so a runner's parent is the shim (the subreaper its orphans go
//! to), which reaps it and learns its exit as it does any child's. Without the helper (not
//! the server, or it died) runners are exec'd as before.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Context, Result};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

use super::wire::CONTROL_FD;

/// The shim's end of the helper's socket, once the helper runs.
static HELPER: OnceLock<Mutex<UnixStream>> = OnceLock::new();

/// Forks the helper. Only while the process has one thread: the helper runs on after the
/// fork, and a second thread's locks (the allocator's) would stay held in it forever.
pub fn start_helper() {
    let Ok((ours, theirs)) = UnixStream::pair() else { return };
    // SAFETY: the caller runs before any thread is started (see above).
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(ours);
            std::process::exit(helper_main(theirs));
        }
        Ok(ForkResult::Parent { .. }) => {
            let _ = HELPER.set(Mutex::new(ours));
        }
        Err(_) => {}
    }
}

/// A runner forked by the helper, with `control` as its fd 3; `None` if there is no
/// helper (the caller execs the runner instead).
pub fn fork_runner(control: &UnixStream) -> Option<Result<u32>> {
    let helper = HELPER.get()?;
    let mut helper = helper.lock().unwrap_or_else(|p| p.into_inner());
    Some(ask(&mut helper, control.as_raw_fd()).context("forking the task's runner (fork helper)"))
}

fn ask(helper: &mut UnixStream, control: RawFd) -> Result<u32> {
    let fds = [control];
    sendmsg::<()>(
        helper.as_raw_fd(),
        &[IoSlice::new(b"r")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .context("handing the control socket to the helper")?;
    let mut pid = [0u8; 4];
    helper.read_exact(&mut pid).context("reading the runner's pid from the helper")?;
    match u32::from_le_bytes(pid) {
        0 => bail!("the helper could not fork"),
        pid => Ok(pid),
    }
}

/// The helper: a runner per control socket received, until the shim is gone.
fn helper_main(socket: UnixStream) -> i32 {
    // The server's stdout is, until it is serving, the pipe its `start` reads to the end:
    // a helper holding it would keep that `start`, and containerd, waiting.
    null_stdio();
    retitle("fork-helper");
    // SAFETY: prctl with integer arguments; getppid cannot fail.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() == 1 {
            return 0;
        }
    }
    loop {
        let Some(control) = receive(&socket) else { return 0 };
        // SAFETY: this process has one thread.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // SAFETY: still one thread.
                let pid = match unsafe { fork() } {
                    Ok(ForkResult::Child) => become_runner(control),
                    Ok(ForkResult::Parent { child }) => child.as_raw() as u32,
                    Err(_) => 0,
                };
                let _ = (&socket).write_all(&pid.to_le_bytes());
                // SAFETY: _exit skips the helper's atexit and buffers, which are not ours to flush.
                unsafe { libc::_exit(0) };
            }
            Ok(ForkResult::Parent { child }) => {
                let _ = waitpid(child, None);
            }
            Err(_) => {
                let _ = (&socket).write_all(&0u32.to_le_bytes());
            }
        }
        drop(control);
    }
}

fn receive(socket: &UnixStream) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).ok()?;
    if msg.bytes == 0 {
        return None;
    }
    let fd = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
        _ => None,
    })?;
    // SAFETY: the kernel just gave us this descriptor.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The runner, as the exec'd one starts: the control socket as fd 3, stdio on /dev/null
/// (the helper's), no other descriptor (not the helper's socket, not the shim's).
fn become_runner(control: OwnedFd) -> ! {
    // SAFETY: dup2, open and close_range on descriptors of this process only.
    unsafe {
        if libc::dup2(control.as_raw_fd(), CONTROL_FD) < 0 {
            libc::_exit(1);
        }
        libc::close_range((CONTROL_FD + 1) as libc::c_uint, libc::c_uint::MAX, 0);
    }
    std::mem::forget(control);
    retitle(super::SUBCOMMAND);
    std::process::exit(super::runner_main())
}

fn null_stdio() {
    // SAFETY: open and dup2 on this process's own descriptors.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
}

/// Rewrites this process's command line in place to `ARGV0 WORD`, what `ps`, `pgrep` and
/// the harness see: a forked runner would otherwise show its shim's command line.
fn retitle(word: &str) {
    let Some((start, end)) = args_area() else { return };
    // SAFETY: [start, end) is this process's own argv block (the kernel's arg_start and
    // arg_end), on the main stack; nothing else reads it in this one-thread process.
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    let argv0_len = area.iter().position(|&b| b == 0).unwrap_or(area.len());
    let title = [&area[..argv0_len], b"\0", word.as_bytes(), b"\0"].concat();
    if title.len() <= area.len() {
        area[..title.len()].copy_from_slice(&title);
        area[title.len()..].fill(0);
    }
}

/// `arg_start` and `arg_end` of /proc/self/stat (its 48th and 49th fields).
fn args_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields count from after the command name, which may hold spaces: it ends at the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<usize>().ok();
    Some((field(48)?, field(49)?))
}
