//! What guests print: each task's stdout and stderr, handed to the pool's handler when the task
//! ends. The library never prints: by default the text goes to the `log` facade (target
//! `wasmpool::guest`, level info), and a program that wants it on a terminal, in a file or
//! beside each result says so with [`crate::PoolBuilder::on_output`].

use std::sync::Arc;

/// Which stream a guest wrote to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestStream {
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
}

/// What one task printed, handed to the output handler when the task ends.
#[derive(Debug)]
#[non_exhaustive]
pub struct GuestOutput<'a> {
    /// The task's number in its pool, counting from 0 in submission order.
    pub task: u64,
    /// The export the task called.
    pub func: &'a str,
    /// stdout or stderr.
    pub stream: GuestStream,
    /// What it wrote (invalid UTF-8 replaced).
    pub text: &'a str,
}

type OutputFn = dyn Fn(&GuestOutput<'_>) + Send + Sync;

/// Where guests' stdout and stderr go.
#[derive(Clone)]
pub(crate) struct OutputSink(Arc<OutputFn>);

impl std::fmt::Debug for OutputSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputSink")
    }
}

impl Default for OutputSink {
    /// Each line to the log, as `[square#3] hello`, at level info.
    fn default() -> Self {
        OutputSink::new(|out: &GuestOutput<'_>| {
            for line in out.text.lines() {
                let stream = match out.stream {
                    GuestStream::Stdout => "",
                    GuestStream::Stderr => " stderr",
                };
                log::info!(target: "wasmpool::guest", "[{}#{}{stream}] {line}", out.func, out.task);
            }
        })
    }
}

impl OutputSink {
    pub(crate) fn new(handler: impl Fn(&GuestOutput<'_>) + Send + Sync + 'static) -> Self {
        OutputSink(Arc::new(handler))
    }

    /// Hands what task `task_no` (a call to `func`) printed to the handler, stream by stream;
    /// an empty stream is not handed over.
    pub(crate) fn relay(&self, task_no: u64, func: &str, stdout: &[u8], stderr: &[u8]) {
        for (stream, bytes) in [(GuestStream::Stdout, stdout), (GuestStream::Stderr, stderr)] {
            if !bytes.is_empty() {
                let text = String::from_utf8_lossy(bytes);
                (self.0)(&GuestOutput {
                    task: task_no,
                    func,
                    stream,
                    text: &text,
                });
            }
        }
    }
}
