//! What a worker process gives up, so that even an escape from the wasm sandbox finds little
//! to use. Three moments, all in the worker, before it reads a byte of work:
//!
//! - [`first_walls`] runs first of all: no new privileges, death with its parent, resource
//!   limits.
//! - [`enter_worker`] runs next: every inherited descriptor but the protocol pipes and stderr
//!   is closed.
//! - [`lock_down`] runs once the worker is set up: a seccomp-bpf allow-list of system calls,
//!   on every thread, so that even code that escaped the wasm sandbox cannot open a file (unless
//!   the pool grants directories), create a socket, or start a program.
//!
//! The worker raises them itself, rather than the host between `fork` and `exec`: the host
//! then starts workers with `posix_spawn`, whose cost does not grow with the host's threads
//! and mappings as `fork`'s does (hundreds of workers started in time linear in their number),
//! and a worker reached through a launcher (`ssh HOST wasmpool worker`) raises the same walls.
//! The host also starts each worker with an empty environment and in a process group of its
//! own (see `pool/worker_process.rs`). `docs/security.md` describes the layers.

use std::io;

/// The worker's address-space limit. Generous, because wasmtime reserves virtual space up
/// front: each engine's instance pool ([`crate::engine::worker_instance_pool`]) holds
/// [`crate::engine::WORKER_POOL_MEMORIES`] slots of 4 GiB plus guards, and a worker makes up
/// to one engine per metering variant, each on first use (about 49 GiB for all three, none of
/// it resident). It is a backstop
/// against a runaway worker, while the per-task memory cap is the [`crate::Limits::max_memory`]
/// limiter.
pub(crate) const WORKER_ADDRESS_SPACE: u64 = 96 << 30;
/// The worker's open-file limit: its pipes, wasmtime's memory images, granted directories.
pub(crate) const WORKER_OPEN_FILES: u64 = 256;

/// First thing in a worker: `PR_SET_NO_NEW_PRIVS`, `PR_SET_PDEATHSIG` (SIGKILL when the
/// host thread that started it ends, which includes the host dying by any signal), and rlimits
/// (no core dumps, a bounded address space and number of open files). `parent` is the host's
/// pid when the host said it: a worker whose parent died before the death signal was armed
/// exits at once.
pub(crate) fn first_walls(parent: Option<libc::pid_t>) -> io::Result<()> {
    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    // SAFETY: prctl, getppid, setrlimit and _exit on this process, with valid arguments.
    unsafe {
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        if parent.is_some_and(|parent| libc::getppid() != parent) {
            libc::_exit(1);
        }
        let limit = |resource, value: u64| {
            let lim = libc::rlimit {
                rlim_cur: value as libc::rlim_t,
                rlim_max: value as libc::rlim_t,
            };
            check(libc::setrlimit(resource, &lim))
        };
        limit(libc::RLIMIT_CORE, 0)?;
        limit(libc::RLIMIT_AS, WORKER_ADDRESS_SPACE)?;
        limit(libc::RLIMIT_NOFILE, WORKER_OPEN_FILES)?;
    }
    Ok(())
}

/// First thing in a worker: closes every descriptor it inherited except stdin (the
/// protocol's input), stdout and stderr (both stderr by now) and `protocol_out`.
pub(crate) fn enter_worker(protocol_out: i32) {
    let keep = protocol_out.max(3) as libc::c_uint;
    // SAFETY: close_range on our own descriptor table; the kept ones are in use by us.
    unsafe {
        if keep > 3 {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                keep - 1,
                0 as libc::c_uint,
            );
        }
        libc::syscall(
            libc::SYS_close_range,
            keep + 1,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
    }
}

/// The system calls a worker needs once it is set up: memory, threads (wasmtime compiles in
/// parallel, wasmtime-wasi runs a tokio runtime), time, its pipes, and nothing that names a
/// file, a socket or a program.
const BASE_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_membarrier,
    libc::SYS_memfd_create,
    libc::SYS_ftruncate,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    libc::SYS_eventfd2,
    libc::SYS_ppoll,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_clone3,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_getrandom,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getppid,
    libc::SYS_prctl,
    libc::SYS_prlimit64,
    libc::SYS_getrlimit,
    libc::SYS_uname,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The older forms of calls in [`BASE_SYSCALLS`] that only some architectures have (aarch64 and
/// newer ones have only `ppoll` and `epoll_pwait`, which the C library uses there instead).
#[cfg(target_arch = "x86_64")]
const LEGACY_SYSCALLS: &[libc::c_long] = &[libc::SYS_poll, libc::SYS_epoll_wait];
#[cfg(not(target_arch = "x86_64"))]
const LEGACY_SYSCALLS: &[libc::c_long] = &[];

/// The file-system calls added when the pool grants directories (wasmtime-wasi reaches the
/// granted directories through `openat` and friends relative to their descriptors). Not
/// `symlinkat`: a guest cannot follow a link out of its grant, but a link it made would stay
/// behind for other programs on the host, which can (`evil -> ../outside/secret.txt`); so a
/// guest makes no symbolic links at all (it gets `EPERM`). Hard links (`linkat`) stay: their
/// source must be inside the grant.
const FILE_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_openat,
    libc::SYS_getdents64,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_readlinkat,
    libc::SYS_linkat,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_utimensat,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_fadvise64,
    libc::SYS_flock,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fstatfs,
    libc::SYS_preadv,
    libc::SYS_pwritev,
];

/// Installs the worker's seccomp filters on all its threads. Anything not allowed fails with
/// `EPERM`; `clone` is allowed only for threads (never a new process); `clone3`, whose flags a
/// filter cannot read, fails with `ENOSYS`, so that the C library falls back to `clone`.
pub(crate) fn lock_down(allow_files: bool) -> Result<(), String> {
    install_filters(allow_files).map_err(|e| format!("cannot install its seccomp filter: {e}"))
}

fn install_filters(allow_files: bool) -> seccompiler::Result<()> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule,
    };
    use std::collections::BTreeMap;

    let arch = std::env::consts::ARCH.try_into()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let allowed = BASE_SYSCALLS
        .iter()
        .chain(LEGACY_SYSCALLS)
        .chain(if allow_files { FILE_SYSCALLS } else { &[] });
    for &call in allowed {
        rules.insert(call, Vec::new());
    }
    let thread_only = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
        libc::CLONE_THREAD as u64,
    )?;
    rules.insert(libc::SYS_clone, vec![SeccompRule::new(vec![thread_only])?]);
    let allow_list: BpfProgram = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )?
    .try_into()?;
    let no_clone3: BpfProgram = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?
    .try_into()?;
    // The allow-list goes last: it denies `seccomp` itself, so no filter can follow it.
    seccompiler::apply_filter_all_threads(&no_clone3)?;
    seccompiler::apply_filter_all_threads(&allow_list)?;
    Ok(())
}
