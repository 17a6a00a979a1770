//! Spin briefly before blocking.
//!
//! Waking a thread or process that sleeps on the other core costs about 40 µs on the machines
//! this was measured on (a pipe round trip between two sleeping processes: 43 µs; spinning
//! first: 1.2 µs), more than a whole small task. So every
//! hop of a task's round trip (the pool's queue, the pipe to the worker, the pipe back, the
//! caller's future) first polls for a short, bounded while, yielding the core to any other
//! runnable thread between polls, and only then blocks. The bound keeps an idle pool from
//! burning CPU: a waiter spins only right after activity, for at most [`SPIN`].

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// How long a waiter polls before it blocks.
pub(crate) const SPIN: Duration = Duration::from_micros(100);

/// Polls `ready` until it says yes (true) or [`SPIN`] has passed (false).
pub(crate) fn spin_until(ready: impl FnMut() -> bool) -> bool {
    spin_rounds(16, ready)
}

/// Spins until `fd` has data to read (or is closed), for at most [`SPIN`]. Each look is a
/// system call, so it looks once between yields, not in a tight loop: the calls took CPU
/// time that the worker (or, in a worker, the host) needed.
pub(crate) fn spin_until_readable(fd: &impl AsRawFd) -> bool {
    spin_rounds(1, || readable_now(fd))
}

/// Polls `ready` `per_round` times, then yields, until it says yes or [`SPIN`] has passed.
fn spin_rounds(per_round: u32, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..per_round {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= SPIN {
            return ready();
        }
        // Let a runnable thread on this core (a worker, the caller) go first: measured, a
        // spin without this yield made the round trip 3 to 6 times slower on two cores.
        std::thread::yield_now();
    }
}

/// Whether `fd` has data to read (or is closed) right now, without waiting.
pub(crate) fn readable_now(fd: &impl AsRawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack, a zero timeout.
    unsafe { libc::poll(&mut pfd, 1, 0) > 0 }
}

/// A reader that, when it would block, first spins on its descriptor for up to [`SPIN`]:
/// the worker's end of the host's pipe.
pub(crate) struct SpinRead<R>(pub(crate) R);

impl<R: std::io::Read + AsRawFd> std::io::Read for SpinRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        spin_until_readable(&self.0);
        self.0.read(buf)
    }
}
