//! Everything the command line writes to stderr, and nothing else does: guest output, the
//! library's warnings, summaries, errors, and the progress bar's draw target. Results go to
//! stdout (or a file), so output pipes cleanly whatever happens here.
//!
//! While a progress bar is shown ([`show_progress`]), every line written here goes through it
//! (the bar is cleared, the line written, the bar drawn again below it), whichever thread
//! writes it: guest output and warnings never tear the bar.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, PoisonError};

use indicatif::{ProgressBar, ProgressDrawTarget};
use wasmpool::{GuestOutput, GuestStream, TaskError};

/// The progress bar on screen, if one is: what writes to stderr must go through it.
static PROGRESS: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// How many times a second a progress bar may be drawn: enough to look alive, few enough to
/// cost nothing measurable on a map of a million tiny items.
pub(crate) const PROGRESS_HZ: u8 = 10;

/// Where a progress bar draws: stderr, when it is a terminal that can move its cursor (not
/// `TERM=dumb`); `None` otherwise (a pipe, a file), and then no bar is drawn at all.
pub(crate) fn progress_target() -> Option<ProgressDrawTarget> {
    let dumb = std::env::var_os("TERM").is_some_and(|term| term == "dumb");
    (io::stderr().is_terminal() && !dumb).then(|| ProgressDrawTarget::stderr_with_hz(PROGRESS_HZ))
}

/// From now on, until [`end_progress`], every line written to stderr goes through `bar`.
pub(crate) fn show_progress(bar: &ProgressBar) {
    *PROGRESS.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar.clone());
}

/// The bar has been drawn for the last time and stays on screen: what is written from now on
/// goes straight to stderr, from the line below it (a bar leaves the cursor on its line).
pub(crate) fn end_progress() {
    let bar = PROGRESS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if bar.is_some() {
        let _ = writeln!(io::stderr().lock());
    }
}

/// Runs `write` on stderr, locked; while a progress bar is shown, with the bar cleared first
/// and drawn again after, so that what is written stays above it, whole.
fn with_stderr(write: impl FnOnce(&mut io::StderrLock<'static>)) {
    // Cloned out, so that no lock of ours is held while the bar takes its own.
    let bar = PROGRESS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    match bar {
        Some(bar) => bar.suspend(|| write(&mut io::stderr().lock())),
        None => write(&mut io::stderr().lock()),
    }
}

/// What a task printed, each line prefixed by its task: `[task 3] hello`, `[task 3 stderr] ...`.
/// Control characters are escaped (`\u{1b}`, `\r`): a task's output cannot move the cursor,
/// clear the screen or overwrite its prefix to pass for a line of ours.
pub(crate) fn guest_output(out: &GuestOutput<'_>) {
    let stream = match out.stream {
        GuestStream::Stdout => "",
        GuestStream::Stderr => " stderr",
    };
    with_stderr(|err| {
        for line in out.text.lines() {
            let _ = writeln!(err, "[task {}{stream}] {}", out.task, printable(line));
        }
    });
}

/// What the item of input line `line` printed, each line prefixed by it: `[line 3] hello`,
/// `[line 3 stderr] ...`, escaped as [`guest_output`] is. `map` and `exec` show an item's output
/// when its outcome is written, so that it reads in the order of the results.
pub(crate) fn item_output(line: usize, stream: GuestStream, text: &[u8]) {
    if text.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(text);
    let stream = match stream {
        GuestStream::Stdout => "",
        GuestStream::Stderr => " stderr",
    };
    with_stderr(|err| {
        for text_line in text.lines() {
            let _ = writeln!(err, "[line {line}{stream}] {}", printable(text_line));
        }
    });
}

/// `line` with its control characters but tabs escaped, as Rust writes them in a literal.
pub(crate) fn printable(line: &str) -> Cow<'_, str> {
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
    with_stderr(|err| {
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
    });
}

/// A one-line report of a command (`wasmpool map: 100 items, ...`).
pub(crate) fn summary(command: &str, text: std::fmt::Arguments<'_>) {
    with_stderr(|err| {
        let _ = writeln!(err, "wasmpool {command}: {text}");
    });
}

/// A line that says the process is exiting on a signal without having finished.
pub(crate) fn interrupted() {
    with_stderr(|err| {
        let _ = writeln!(err, "wasmpool: interrupted");
    });
}

/// An error that ends the command (a usage or load error): its whole chain.
pub(crate) fn error(e: &anyhow::Error) {
    let text = chain_text(e);
    with_stderr(|err| {
        let _ = writeln!(err, "wasmpool: error: {text}");
    });
}

/// An error and its causes, `: `-separated, each cause once: an error whose message already
/// quotes its cause (`cannot read x.wasm: No such file or directory`) is not followed by the
/// cause again.
fn chain_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
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
            with_stderr(|err| {
                let _ = writeln!(err, "wasmpool: {}", printable(&text));
            });
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_the_message_already_quotes_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let quoted = anyhow::Error::new(wasmpool::Error::Read {
            path: "x.wasm".into(),
            source: io,
        });
        assert_eq!(chain_text(&quoted), "cannot read x.wasm: No such file");
        let wrapped = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_text(&wrapped), "outer: inner");
    }

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
