//! Helpers shared by the integration tests.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};

use wasmpool::{Module, Pool, Task, TaskError};
use wasmpool_artifacts::{Guest, HOSTILE};

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

/// Runs the ignored test `test` of this binary in a process of its own with `var` set in its
/// environment, and checks that it passed: the environment is set by the parent when it starts
/// the process, never with `set_var` in a running test binary, whose other tests read the
/// environment concurrently.
pub(crate) fn run_alone_with_env(test: &str, var: (&str, &str)) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--ignored", "--test-threads", "1"])
        .env(var.0, var.1)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks that a hostile guest in `pool` cannot connect to a listening socket on loopback.
pub(crate) fn assert_no_network(pool: &Pool) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let err = pool
        .apply::<_, ()>(&task(HOSTILE, "open-socket"), (addr,))
        .unwrap_err();
    assert!(matches!(err, TaskError::Guest { .. }), "{err}");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "nothing connected");
}
