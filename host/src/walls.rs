//! What a worker process gives up, so that even an escape from the wasm sandbox finds little
//! to use. Two moments:
//!
//! - [`child_walls`] runs in the child between `fork` and `exec` (async-signal-safe calls
//!   only): no new privileges, death with its parent, resource limits.
//! - [`enter_worker`] runs first thing in the worker: every inherited descriptor but the
//!   protocol pipes and stderr is closed.
//!
//! With these, the host also starts each worker with an empty environment and in a process
//! group of its own (see `pool/supervisor.rs`). `docs/security.md` describes the layers.

use std::io;

/// The worker's address-space limit. Generous, because wasmtime reserves virtual space for
/// each linear memory up front (about 4 GiB plus guards): it is a backstop against a runaway
/// worker, while the per-task memory cap is the [`crate::Limits::max_memory`] limiter.
pub(crate) const WORKER_ADDRESS_SPACE: u64 = 64 << 30;
/// The worker's open-file limit: its pipes, wasmtime's memory images, granted directories.
pub(crate) const WORKER_OPEN_FILES: u64 = 256;

/// In the child, before `exec`: `PR_SET_NO_NEW_PRIVS`, `PR_SET_PDEATHSIG` (SIGKILL when the
/// host thread that started it ends, which includes the host dying by any signal), and
/// rlimits (no core dumps, a bounded address space and number of open files).
///
/// # Safety
/// Only async-signal-safe calls: it must be called from `pre_exec`.
pub(crate) unsafe fn child_walls(parent: libc::pid_t) -> io::Result<()> {
    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    // SAFETY: prctl, getppid, setrlimit and _exit are async-signal-safe.
    unsafe {
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        // The parent may have died before the death signal was armed.
        if libc::getppid() != parent {
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
