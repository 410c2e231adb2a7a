//! The syscalls a runner makes: wasmtime's (memory, signals for traps, threads), the WASI
//! hosts' (files under the preopened rootfs, sockets, clocks, polling), tokio's and hyper's
//! (epoll, eventfd), and starting the background compile (clone, exec, wait). Mounts,
//! namespaces, ptrace, module loading, keyrings, BPF, io_uring, and changing ids stay out.

use libc::*;

pub const ALLOWED: &[c_long] = &[
    // Memory: linear memories, code, the pooling allocator's reservations.
    SYS_brk,
    SYS_mmap,
    SYS_munmap,
    SYS_mprotect,
    SYS_mremap,
    SYS_madvise,
    SYS_membarrier,
    // Files, as WASI and the cache use them.
    SYS_read,
    SYS_write,
    SYS_pread64,
    SYS_pwrite64,
    SYS_readv,
    SYS_writev,
    SYS_preadv,
    SYS_pwritev,
    SYS_preadv2,
    SYS_pwritev2,
    SYS_openat,
    // cap-std resolves a guest's paths beneath the rootfs with RESOLVE_BENEATH.
    SYS_openat2,
    SYS_close,
    SYS_close_range,
    SYS_lseek,
    SYS_fstat,
    SYS_newfstatat,
    SYS_statx,
    SYS_fstatfs,
    SYS_statfs,
    SYS_fcntl,
    SYS_flock,
    SYS_fsync,
    SYS_fdatasync,
    SYS_ftruncate,
    SYS_fallocate,
    SYS_fadvise64,
    SYS_getdents64,
    SYS_readlinkat,
    SYS_mkdirat,
    SYS_unlinkat,
    SYS_renameat,
    SYS_renameat2,
    SYS_linkat,
    SYS_symlinkat,
    SYS_utimensat,
    SYS_fchmod,
    SYS_fchmodat,
    SYS_faccessat,
    SYS_faccessat2,
    SYS_getcwd,
    SYS_dup,
    SYS_dup3,
    SYS_pipe2,
    SYS_copy_file_range,
    SYS_sendfile,
    SYS_splice,
    // Sockets: the pod's listeners, a component's own sockets and outgoing HTTP.
    SYS_socket,
    SYS_socketpair,
    SYS_bind,
    SYS_listen,
    SYS_accept,
    SYS_accept4,
    SYS_connect,
    SYS_getsockname,
    SYS_getpeername,
    SYS_sendto,
    SYS_recvfrom,
    SYS_sendmsg,
    SYS_recvmsg,
    SYS_sendmmsg,
    SYS_recvmmsg,
    SYS_shutdown,
    SYS_setsockopt,
    SYS_getsockopt,
    // Waiting.
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_eventfd2,
    SYS_ppoll,
    SYS_pselect6,
    SYS_futex,
    SYS_sched_yield,
    // Clocks.
    SYS_clock_gettime,
    SYS_clock_getres,
    SYS_clock_nanosleep,
    SYS_nanosleep,
    SYS_gettimeofday,
    // Threads, signals (wasmtime's traps are signals), and the background compile.
    SYS_clone,
    SYS_clone3,
    SYS_execve,
    SYS_wait4,
    SYS_waitid,
    SYS_exit,
    SYS_exit_group,
    SYS_set_robust_list,
    SYS_rseq,
    SYS_set_tid_address,
    SYS_rt_sigaction,
    SYS_rt_sigprocmask,
    SYS_rt_sigreturn,
    SYS_sigaltstack,
    SYS_restart_syscall,
    SYS_kill,
    SYS_tgkill,
    SYS_tkill,
    // What a process asks about itself.
    SYS_gettid,
    SYS_getpid,
    SYS_getppid,
    SYS_getuid,
    SYS_geteuid,
    SYS_getgid,
    SYS_getegid,
    SYS_getresuid,
    SYS_getresgid,
    SYS_getgroups,
    SYS_sched_getaffinity,
    SYS_prlimit64,
    SYS_getrlimit,
    SYS_getrusage,
    SYS_uname,
    SYS_sysinfo,
    SYS_getrandom,
    // The background compile runs in a session of its own, at a lower priority.
    SYS_setsid,
    SYS_setpriority,
    // x86-64's older names of the above, which glibc and Go still use there.
    #[cfg(target_arch = "x86_64")]
    SYS_open,
    #[cfg(target_arch = "x86_64")]
    SYS_stat,
    #[cfg(target_arch = "x86_64")]
    SYS_lstat,
    #[cfg(target_arch = "x86_64")]
    SYS_access,
    #[cfg(target_arch = "x86_64")]
    SYS_readlink,
    #[cfg(target_arch = "x86_64")]
    SYS_mkdir,
    #[cfg(target_arch = "x86_64")]
    SYS_rmdir,
    #[cfg(target_arch = "x86_64")]
    SYS_rename,
    #[cfg(target_arch = "x86_64")]
    SYS_unlink,
    #[cfg(target_arch = "x86_64")]
    SYS_link,
    #[cfg(target_arch = "x86_64")]
    SYS_symlink,
    #[cfg(target_arch = "x86_64")]
    SYS_chmod,
    #[cfg(target_arch = "x86_64")]
    SYS_poll,
    #[cfg(target_arch = "x86_64")]
    SYS_select,
    #[cfg(target_arch = "x86_64")]
    SYS_pipe,
    #[cfg(target_arch = "x86_64")]
    SYS_dup2,
    #[cfg(target_arch = "x86_64")]
    SYS_epoll_wait,
    #[cfg(target_arch = "x86_64")]
    SYS_epoll_create,
    #[cfg(target_arch = "x86_64")]
    SYS_arch_prctl,
    #[cfg(target_arch = "x86_64")]
    SYS_time,
];

/// Syscalls allowed with only these values of one argument: (syscall, argument, values).
// The constants' types differ between targets (an ioctl request is u64 on x86-64 glibc).
#[allow(clippy::unnecessary_cast)]
pub const BY_ARGUMENT: &[(c_long, u8, &[u64])] = &[
    // Non-blocking and close-on-exec switches, isatty, bytes ready; no device control.
    (
        SYS_ioctl,
        1,
        &[FIONBIO as u64, FIOCLEX as u64, FIONCLEX as u64, FIONREAD as u64, TCGETS as u64, TIOCGWINSZ as u64],
    ),
    // Thread names and the exec'd compile's parent-death signal; not dumpable, securebits
    // or the other knobs.
    (
        SYS_prctl,
        0,
        &[
            PR_SET_NAME as u64,
            PR_GET_NAME as u64,
            PR_SET_PDEATHSIG as u64,
            PR_SET_VMA as u64,
            PR_GET_NO_NEW_PRIVS as u64,
        ],
    ),
];
