//! Ctrl-C and SIGTERM while a command runs a pool: the pool is terminated (queued tasks
//! cancelled, workers killed and reaped) and the command is told, so it can report what
//! finished before it exits.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use wasmpool::Pool;

use crate::terminal;

/// Runs `f` with Ctrl-C (SIGINT) and SIGTERM caught: on either, the pool is terminated
/// (queued tasks cancelled, workers killed and reaped) and `f` is told through the flag, so it
/// can print what finished. Returns `f`'s result and the signal, if one came. If `f` is stuck
/// (reading a terminal, say), the process exits on its own two seconds later.
pub(crate) fn with_interrupts<T>(
    pool: &Pool,
    f: impl FnOnce(&AtomicI32) -> T,
) -> anyhow::Result<(T, Option<i32>)> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    let caught = AtomicI32::new(0);
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
        let result = f(&caught);
        done.store(true, Ordering::SeqCst);
        handle.close();
        result
    });
    let signal = caught.load(Ordering::SeqCst);
    Ok((result, (signal != 0).then_some(signal)))
}
