//! The worker's clock thread.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::limits::EPOCH_TICK;

use super::Output;
use super::engines::Flavors;

/// The worker's clock: every [`EPOCH_TICK`] it advances the engine's epoch (which interrupts
/// a guest past its deadline) and flushes buffered outcomes to the host.
pub(super) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    pub(super) fn start<W: Write + Send + 'static>(
        engines: Flavors,
        output: Output<W>,
    ) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("wasmpool-ticker".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    // Parked rather than asleep, so that stopping it is immediate.
                    std::thread::park_timeout(EPOCH_TICK);
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    engines.increment_epochs();
                    if let Ok(mut out) = output.try_lock()
                        && !out.buffer().is_empty()
                    {
                        let _ = out.flush();
                    }
                }
            })?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
