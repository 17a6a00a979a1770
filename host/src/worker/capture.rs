//! A guest's stdout or stderr, captured in memory up to a cap.
//!
//! wasmtime-wasi's `MemoryOutputPipe` can only hand its contents out as a copy of everything
//! written so far, which a worker would pay twice per call (stdout and stderr) even when the
//! guest printed nothing. A [`Capture`] hands out only what is new, and nothing at all (no
//! copy, no allocation, no lock) when nothing was written, while still counting every byte
//! against the cap of the whole instance.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// One output stream of one instance. Clones share the same buffer.
#[derive(Clone)]
pub(crate) struct Capture {
    cap: usize,
    inner: Arc<Inner>,
}

struct Inner {
    captured: Mutex<Captured>,
    /// Set by a write, cleared by a take unless the stream overflowed: while it is clear, a
    /// take has nothing to hand out and needs no lock (two locks per call were a tenth of the
    /// worker's own time on a tiny task).
    touched: AtomicBool,
}

#[derive(Default)]
struct Captured {
    /// Written and not yet taken.
    fresh: Vec<u8>,
    /// Written over the instance's life, taken or not.
    written: usize,
    /// Whether the guest tried to write more than the cap allows (a write refused or cut
    /// short): the fact the runner reports as the output limit.
    overflowed: bool,
}

impl Capture {
    /// A capture that refuses writes past `cap` bytes in all.
    pub(crate) fn new(cap: usize) -> Self {
        Capture {
            cap,
            inner: Arc::new(Inner {
                captured: Mutex::new(Captured::default()),
                touched: AtomicBool::new(false),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Captured> {
        self.inner
            .captured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// What was written since the last take, and whether the guest has tried, over the
    /// instance's life, to write more than the cap allows.
    pub(crate) fn take(&self) -> (Vec<u8>, bool) {
        if !self.inner.touched.load(Ordering::Acquire) {
            return (Vec::new(), false);
        }
        let mut inner = self.lock();
        if !inner.overflowed {
            self.inner.touched.store(false, Ordering::Release);
        }
        (std::mem::take(&mut inner.fresh), inner.overflowed)
    }

    /// Appends what fits under the cap; how much that was.
    fn append(&self, bytes: &[u8]) -> usize {
        let mut inner = self.lock();
        let n = bytes.len().min(self.cap - inner.written.min(self.cap));
        inner.fresh.extend_from_slice(&bytes[..n]);
        inner.written += n;
        inner.overflowed |= n < bytes.len();
        self.inner.touched.store(true, Ordering::Release);
        n
    }

    /// Notes a write that was refused whole.
    fn refuse(&self) {
        self.lock().overflowed = true;
        self.inner.touched.store(true, Ordering::Release);
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    /// A write that does not fit traps, as `MemoryOutputPipe`'s does, and the capture notes
    /// the overflow, which the runner reports as the output limit.
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        let room = {
            let inner = self.lock();
            self.cap - inner.written.min(self.cap)
        };
        if bytes.len() > room {
            self.refuse();
            return Err(StreamError::Trap(wasmtime::format_err!(
                "write beyond capacity of the output capture"
            )));
        }
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    /// Room left under the cap; none is an error (the stream is closed), and the guest asking
    /// for room then is an overflow.
    fn check_write(&mut self) -> Result<usize, StreamError> {
        let written = self.lock().written;
        if written < self.cap {
            Ok(self.cap - written)
        } else {
            self.refuse();
            Err(StreamError::Closed)
        }
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(self.append(buf)))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_what_is_new_and_counts_all_against_the_cap() {
        let mut c = Capture::new(10);
        assert_eq!(c.take(), (Vec::new(), false));
        c.write(Bytes::from_static(b"hello")).unwrap();
        assert_eq!(c.take(), (b"hello".to_vec(), false));
        assert_eq!(c.take(), (Vec::new(), false));
        assert_eq!(c.check_write().unwrap(), 5);
        assert!(matches!(
            c.write(Bytes::from_static(b"too long")),
            Err(StreamError::Trap(_))
        ));
        assert_eq!(
            c.take(),
            (Vec::new(), true),
            "a refused write is an overflow"
        );
        assert_eq!(c.append(b"world!"), 5);
        assert_eq!(c.take(), (b"world".to_vec(), true));
        assert!(matches!(c.check_write(), Err(StreamError::Closed)));
    }

    #[test]
    fn filling_the_cap_exactly_is_no_overflow_but_asking_for_more_is() {
        let mut c = Capture::new(5);
        c.write(Bytes::from_static(b"hello")).unwrap();
        assert_eq!(c.take(), (b"hello".to_vec(), false));
        assert!(matches!(c.check_write(), Err(StreamError::Closed)));
        assert_eq!(c.take(), (Vec::new(), true));
        // A cap of nothing: the first write is already too much.
        let mut none = Capture::new(0);
        assert!(matches!(none.check_write(), Err(StreamError::Closed)));
        assert_eq!(none.take(), (Vec::new(), true));
    }
}
