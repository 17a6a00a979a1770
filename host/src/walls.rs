//! What a worker process gives up, so that even an escape from the wasm sandbox finds little
//! to use. Three moments, all in the worker, before it reads a byte of work:
//!
//! - [`first_walls`] runs first of all: no new privileges, death with its parent, resource
//!   limits.
//! - [`enter_worker`] runs next: every inherited descriptor but the protocol pipes and stderr
//!   is closed. Stderr is a unix socket the host made, on which the host later sends the
//!   descriptors of compiled code (`crate::shared_code`): the only descriptors a worker gains.
//! - [`lock_down`] runs once the worker is set up: a seccomp-bpf allow-list of system calls,
//!   on every thread, so that even code that escaped the wasm sandbox cannot open a file (unless
//!   the pool grants directories; without grants, an `openat` is answered by [`answer_open`],
//!   which opens nothing), create a socket, or start a program, and receives descriptors on its
//!   stderr only.
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
/// protocol's input), stdout and stderr (both stderr by now: a unix socket the host made, see
/// `crate::shared_code`) and `protocol_out`.
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
/// filter cannot read, fails with `ENOSYS`, so that the C library falls back to `clone`;
/// without granted directories, `openat` is answered by [`answer_open`] instead, which opens
/// nothing.
pub(crate) fn lock_down(allow_files: bool) -> Result<(), String> {
    if !allow_files {
        install_open_answer().map_err(|e| format!("cannot install its SIGSYS handler: {e}"))?;
    }
    install_filters(allow_files).map_err(|e| format!("cannot install its seccomp filter: {e}"))
}

/// The handler of `SIGSYS`, which the filter raises for `openat` (instead of refusing it) in
/// a worker without granted directories: see [`answer_open`].
fn install_open_answer() -> io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler is an `extern "C"` function of the
    // signature SA_SIGINFO asks for, which only reads the context it is given and makes one
    // async-signal-safe system call.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = answer_open as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Answers an `openat` the filter trapped, in the kernel's stead, and opens nothing.
///
/// A worker without granted directories opens no file, but wasmtime 48 maps a component's
/// compiled code only by path (`Component::deserialize_file`), so a worker loading one that the
/// host sent as a descriptor (`crate::shared_code`) names the descriptor: `/proc/self/fd/N`.
/// Here a read-only open of exactly `/proc/self/fd/N` is answered with a duplicate of
/// descriptor N, which the worker holds already (and could duplicate with `fcntl` itself); any
/// other open fails with `EPERM`, as the filter's refusal did. No path is looked up, no file is
/// opened, and the duplicate has no more access than N (a real reopen through `/proc` could
/// have more). The trap leaves the call's number and arguments in the registers of the context
/// the handler gets, and the value put in its result register is what the call returns.
extern "C" fn answer_open(
    _signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes the interrupted thread's context, valid for the handler's
    // duration; reading the path reads the caller's memory, as the kernel would have.
    unsafe {
        let saved = *libc::__errno_location();
        let context = &mut *context.cast::<libc::ucontext_t>();
        let (call, path, flags) = trapped_call(context);
        let result = if call == libc::SYS_openat as u64 {
            open_by_descriptor(path as *const u8, flags)
        } else {
            -i64::from(libc::ENOSYS)
        };
        set_call_result(context, result);
        *libc::__errno_location() = saved;
    }
}

/// The trapped call's number, path and flags (`openat`'s second and third arguments).
#[cfg(target_arch = "x86_64")]
fn trapped_call(context: &libc::ucontext_t) -> (u64, u64, u64) {
    let regs = &context.uc_mcontext.gregs;
    (
        regs[libc::REG_RAX as usize] as u64,
        regs[libc::REG_RSI as usize] as u64,
        regs[libc::REG_RDX as usize] as u64,
    )
}

#[cfg(target_arch = "x86_64")]
fn set_call_result(context: &mut libc::ucontext_t, result: i64) {
    context.uc_mcontext.gregs[libc::REG_RAX as usize] = result;
}

#[cfg(target_arch = "aarch64")]
fn trapped_call(context: &libc::ucontext_t) -> (u64, u64, u64) {
    let regs = &context.uc_mcontext.regs;
    (regs[8], regs[1], regs[2])
}

#[cfg(target_arch = "aarch64")]
fn set_call_result(context: &mut libc::ucontext_t, result: i64) {
    context.uc_mcontext.regs[0] = result as u64;
}

/// `openat(_, path, flags)` answered as a duplicate of descriptor N when `path` is exactly
/// `/proc/self/fd/N` and `flags` ask to read only; `-EPERM` otherwise.
///
/// # Safety
/// `path` is the caller's: a NUL-terminated string, read up to its first byte that differs.
unsafe fn open_by_descriptor(path: *const u8, flags: u64) -> i64 {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    let refused = -i64::from(libc::EPERM);
    let harmless = (libc::O_CLOEXEC | libc::O_LARGEFILE | libc::O_NOCTTY) as u64;
    if path.is_null() || flags & !harmless != libc::O_RDONLY as u64 {
        return refused;
    }
    let mut fd: libc::c_int = 0;
    // SAFETY: each byte is read only after the ones before it matched, and none past the NUL.
    unsafe {
        for (i, &expected) in PREFIX.iter().enumerate() {
            if *path.add(i) != expected {
                return refused;
            }
        }
        let mut digits = 0;
        loop {
            let byte = *path.add(PREFIX.len() + digits);
            if byte == 0 {
                break;
            }
            if !byte.is_ascii_digit() || digits == 9 {
                return refused;
            }
            fd = fd * 10 + libc::c_int::from(byte - b'0');
            digits += 1;
        }
        if digits == 0 {
            return refused;
        }
        let dup = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0);
        if dup < 0 {
            -i64::from(*libc::__errno_location())
        } else {
            i64::from(dup)
        }
    }
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
    // Code descriptors come from the host on stderr (see `crate::shared_code`): `recvmsg` on
    // that descriptor only (the worker has no other socket, and could make none).
    let from_stderr = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        crate::shared_code::CODE_SOCKET_FD as u64,
    )?;
    rules.insert(
        libc::SYS_recvmsg,
        vec![SeccompRule::new(vec![from_stderr])?],
    );
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
    if !allow_files {
        // A trap takes precedence over the allow-list's refusal: `answer_open` answers.
        let trap_open: BpfProgram = SeccompFilter::new(
            [(libc::SYS_openat, Vec::new())].into_iter().collect(),
            SeccompAction::Allow,
            SeccompAction::Trap,
            arch,
        )?
        .try_into()?;
        seccompiler::apply_filter_all_threads(&trap_open)?;
    }
    seccompiler::apply_filter_all_threads(&allow_list)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixStream;
    use std::process::{Command, Stdio};

    use super::lock_down;
    use crate::shared_code::{self, CodeFile};

    /// The filter from inside a worker, in a process of this test binary's own (a filter
    /// applies to the whole process, and stays), whose stderr is a unix socket as a worker's
    /// is, with a code descriptor sent on it: see [`locked_down_as_a_worker`].
    #[test]
    fn a_locked_down_worker_opens_nothing_and_receives_only_on_its_stderr() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let code = CodeFile::in_memory(b"the code of a module".to_vec());
        shared_code::send(&ours, code.file().unwrap()).unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "walls::tests::locked_down_as_a_worker"])
            .args(["--ignored", "--test-threads", "1", "--nocapture"])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(OwnedFd::from(theirs)))
            .output()
            .unwrap();
        let mut stderr = String::new();
        let _ = (&ours).read_to_string(&mut stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{stderr}"
        );
    }

    #[test]
    #[ignore = "run by a_locked_down_worker_opens_nothing_and_receives_only_on_its_stderr"]
    fn locked_down_as_a_worker() {
        let eperm = Some(libc::EPERM);
        let own = CodeFile::in_memory(b"a descriptor of its own".to_vec());
        let fd = own.file().unwrap().as_raw_fd();
        let (other, _peer) = UnixStream::pair().unwrap();
        lock_down(false).unwrap();

        // No file opens, wherever it is.
        for path in [
            "/etc/passwd",
            "/proc/self/environ",
            "/proc/self/fd/",
            "relative",
        ] {
            let err = File::open(path).unwrap_err();
            assert_eq!(err.raw_os_error(), eperm, "{path}");
        }
        // A descriptor's own link, read-only, is a duplicate of the descriptor: the same file.
        let link = format!("/proc/self/fd/{fd}");
        let again = File::open(&link).unwrap();
        assert_ne!(again.as_raw_fd(), fd);
        assert_eq!(
            again.metadata().unwrap().ino(),
            own.file().unwrap().metadata().unwrap().ino()
        );
        // Not for writing, and no path through it.
        let write = std::fs::OpenOptions::new().write(true).open(&link);
        assert_eq!(write.unwrap_err().raw_os_error(), eperm);
        for path in [
            format!("{link}/../environ"),
            format!("{link}x"),
            format!("{link}/"),
        ] {
            assert_eq!(
                File::open(&path).unwrap_err().raw_os_error(),
                eperm,
                "{path}"
            );
        }
        // A descriptor that is not open is not opened by its link either.
        assert_eq!(
            File::open("/proc/self/fd/999").unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );

        // Descriptors come on stderr only.
        let received = shared_code::receive(20).unwrap();
        let mut text = String::new();
        (&received).read_to_string(&mut text).unwrap();
        assert_eq!(text, "the code of a module");
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // SAFETY: a zeroed msghdr is a valid empty one; recvmsg into a buffer of one byte.
        let got = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            libc::recvmsg(other.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT)
        };
        assert_eq!(got, -1);
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), eperm);
        assert!(shared_code::receive(1).is_err(), "nothing more was sent");

        // No sockets, no processes.
        // SAFETY: socket and fork, refused by the filter.
        unsafe {
            assert_eq!(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0), -1);
            assert_eq!(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0), -1);
            assert_eq!(libc::fork(), -1);
        }
    }
}
