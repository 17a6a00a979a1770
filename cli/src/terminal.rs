//! Everything the command line writes to stderr, and nothing else does: guest output, the
//! library's warnings, summaries, errors. Results go to stdout (or a file), so output pipes
//! cleanly whatever happens here.

use std::borrow::Cow;
use std::io::{self, Write};

use wasmpool::{GuestOutput, GuestStream, TaskError};

/// What a task printed, each line prefixed by its task: `[task 3] hello`, `[task 3 stderr] ...`.
/// Control characters are escaped (`\u{1b}`, `\r`): a task's output cannot move the cursor,
/// clear the screen or overwrite its prefix to pass for a line of ours.
pub(crate) fn guest_output(out: &GuestOutput<'_>) {
    let mut err = io::stderr().lock();
    let stream = match out.stream {
        GuestStream::Stdout => "",
        GuestStream::Stderr => " stderr",
    };
    for line in out.text.lines() {
        let _ = writeln!(err, "[task {}{stream}] {}", out.task, printable(line));
    }
}

/// `line` with its control characters but tabs escaped, as Rust writes them in a literal.
fn printable(line: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\t';
    if !line.chars().any(unsafe_char) {
        return Cow::Borrowed(line);
    }
    let mut shown = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        if unsafe_char(c) {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

/// A task that failed, for `run`: its error, and its wasm backtrace if it trapped. Both may
/// carry the guest's own text (an `err` it returned, a trap message), escaped as its output is.
pub(crate) fn task_failed(e: &TaskError) {
    let mut err = io::stderr().lock();
    for line in e.to_string().lines() {
        let _ = writeln!(err, "wasmpool: {}", printable(line));
    }
    if let TaskError::Trap {
        backtrace: Some(bt),
        ..
    } = e
    {
        for line in bt.lines() {
            let _ = writeln!(err, "{}", printable(line));
        }
    }
}

/// A one-line report of a command (`wasmpool map: 100 items, ...`).
pub(crate) fn summary(command: &str, text: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "wasmpool {command}: {text}");
}

/// A line that says the process is exiting on a signal without having finished.
pub(crate) fn interrupted() {
    let _ = writeln!(io::stderr().lock(), "wasmpool: interrupted");
}

/// An error that ends the command (a usage or load error): its whole chain.
pub(crate) fn error(e: &anyhow::Error) {
    let _ = writeln!(io::stderr().lock(), "wasmpool: error: {e:#}");
}

/// Whether an error is the reader of our stdout going away (`| head`): not a failure.
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Sends the library's warnings and errors (a worker's stderr, a replaced worker, a rebuilt
/// cache entry) to stderr.
pub(crate) fn install_logger() {
    let _ = log::set_logger(&StderrLogger).map(|()| log::set_max_level(log::LevelFilter::Warn));
}

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            // A worker's stderr comes through here: escaped, as guest output is.
            let text = record.args().to_string();
            let _ = writeln!(io::stderr().lock(), "wasmpool: {}", printable(&text));
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_guest_output_are_escaped() {
        assert_eq!(printable("plain\ttext"), "plain\ttext");
        assert_eq!(
            printable("\u{1b}[2J\rwasmpool map: 0 failed"),
            "\\u{1b}[2J\\rwasmpool map: 0 failed"
        );
        assert_eq!(printable("bell\u{7}"), "bell\\u{7}");
    }
}
