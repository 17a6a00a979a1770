//! Helpers shared by the integration tests.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};

use wasmpool::{Module, Pool, Task};
use wasmpool_artifacts::Guest;

/// A pool of `workers` that keeps guest output quiet.
pub(crate) fn pool(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .on_output(|_| {})
        .build()
        .expect("pool starts")
}

/// The export `func` of a built-in task.
pub(crate) fn task(guest: Guest, func: &str) -> Task {
    Module::from_bytes(guest.wasm)
        .expect("built-in task loads")
        .task(func)
        .expect("export exists")
}

/// Whether a process with this pid still exists (a zombie counts as existing).
pub(crate) fn process_exists(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Runs a future to completion on this thread.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park(),
        }
    }
}
