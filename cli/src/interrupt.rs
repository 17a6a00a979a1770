//! Ctrl-C, SIGTERM and SIGHUP while a command runs a pool: the pool is terminated (queued
//! tasks cancelled, workers killed and reaped) and the command is told, so it can report what
//! finished before it exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use wasmpool::Pool;

use crate::terminal;

/// The signal caught by [`catch_early`] before [`with_interrupts`] took over, if one came.
static EARLY: std::sync::OnceLock<Arc<std::sync::atomic::AtomicUsize>> = std::sync::OnceLock::new();

/// Catches Ctrl-C, SIGTERM and SIGHUP from now on, for a command that is about to build its
/// pool and then run [`with_interrupts`]: a signal in between (the first worker starting, a
/// module compiling in a process of its own) is held for it, instead of killing the command
/// before it can say what happened.
pub(crate) fn catch_early() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let flag = EARLY.get_or_init(Default::default);
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        let _ = signal_hook::flag::register_usize(signal, Arc::clone(flag), signal as usize);
    }
}

/// Runs `f` with Ctrl-C (SIGINT), SIGTERM and SIGHUP (a closed terminal) caught: on any, the
/// pool is terminated (queued tasks cancelled, workers killed and reaped) and `f` is told
/// through the flag (the signal's number, 0 until one comes), so it can print what finished.
/// With `watch_stdout` (the results go there), the reader of stdout going away (`| head`) is
/// caught the same way, as SIGPIPE, as soon as it happens rather than at the next write:
/// nothing is left running for output no one reads.
/// Returns `f`'s result and the signal, if one came. If `f` is stuck (reading a terminal,
/// say), the process exits on its own two seconds later.
pub(crate) fn with_interrupts<T>(
    pool: &Pool,
    watch_stdout: bool,
    f: impl FnOnce(&Arc<AtomicI32>) -> T,
) -> anyhow::Result<(T, Option<i32>)> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let handle = signals.handle();
    let caught = Arc::new(AtomicI32::new(0));
    // A signal that came while the pool was being built (see `catch_early`) is this one's.
    if let Some(early) = EARLY.get() {
        let signal = early.load(Ordering::SeqCst) as i32;
        if signal != 0 {
            caught.store(signal, Ordering::SeqCst);
            pool.terminate();
        }
    }
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            if let Some(signal) = signals.forever().next() {
                caught.store(signal, Ordering::SeqCst);
                pool.terminate();
                for _ in 0..200 {
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                terminal::interrupted();
                std::process::exit(128 + signal);
            }
        });
        if watch_stdout && stdout_is_a_pipe() {
            scope.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    if stdout_reader_gone(Duration::from_millis(50)) {
                        caught.store(libc::SIGPIPE, Ordering::SeqCst);
                        pool.terminate();
                        return;
                    }
                }
            });
        }
        let result = f(&caught);
        done.store(true, Ordering::SeqCst);
        handle.close();
        result
    });
    let signal = caught.load(Ordering::SeqCst);
    Ok((result, (signal != 0).then_some(signal)))
}

/// Whether stdout is a pipe or a socket, whose reader can go away.
fn stdout_is_a_pipe() -> bool {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::metadata("/dev/stdout") else {
        return false;
    };
    meta.file_type().is_fifo() || meta.file_type().is_socket()
}

/// Waits up to `timeout` for stdout's reader to go away; whether it has (the write end of a
/// pipe whose readers are all gone reports an error condition).
fn stdout_reader_gone(timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    n > 0 && pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}
