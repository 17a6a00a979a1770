//! Everything the command line writes to stderr, and nothing else does: guest output, the
//! library's warnings, summaries, errors, and the progress bar's draw target. Results go to
//! stdout (or a file), so output pipes cleanly whatever happens here.
//!
//! While a progress bar is shown ([`show_progress`]), every line written here goes through it
//! (the bar is cleared, the lines written, the bar drawn again below them), whichever thread
//! writes it: guest output and warnings never tear the bar. What guests print comes in bursts:
//! while the bar is shown, their lines are written together at most [`PROGRESS_HZ`] times a
//! second (a line after a quiet moment at once), so that a chatty task does not redraw the bar
//! once a line.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget};
use wasmpool::{GuestOutput, GuestStream, TaskError};

/// The progress bar on screen, if one is: what is written to stderr goes through it.
static PROGRESS: Mutex<Option<Shown>> = Mutex::new(None);

struct Shown {
    bar: ProgressBar,
    /// Lines of guest output waiting for the bar's next drawing.
    pending: Vec<u8>,
    /// When pending lines were last written.
    flushed: Instant,
}

impl Shown {
    /// Writes the pending lines above the bar.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = &self.pending;
        self.bar.suspend(|| {
            let _ = io::stderr().lock().write_all(pending);
        });
        self.pending.clear();
        self.flushed = Instant::now();
    }
}

/// How many times a second a progress bar may be drawn: enough to look alive, few enough to
/// cost nothing measurable on a map of a million tiny items.
pub(crate) const PROGRESS_HZ: u8 = 10;

/// How long a line of guest output may wait, while a bar is shown, for the lines after it.
const BATCH: Duration = Duration::from_millis(1000 / PROGRESS_HZ as u64);

/// How much guest output may wait.
const BATCH_BYTES: usize = 64 << 10;

/// Where a progress bar draws: stderr, when it is a terminal that can move its cursor (not
/// `TERM=dumb`); `None` otherwise (a pipe, a file), and then no bar is drawn at all.
pub(crate) fn progress_target() -> Option<ProgressDrawTarget> {
    let dumb = std::env::var_os("TERM").is_some_and(|term| term == "dumb");
    (io::stderr().is_terminal() && !dumb).then(|| ProgressDrawTarget::stderr_with_hz(PROGRESS_HZ))
}

fn progress() -> std::sync::MutexGuard<'static, Option<Shown>> {
    PROGRESS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// From now on, until [`end_progress`], every line written to stderr goes through `bar`.
pub(crate) fn show_progress(bar: &ProgressBar) {
    *progress() = Some(Shown {
        bar: bar.clone(),
        pending: Vec::new(),
        flushed: Instant::now()
            .checked_sub(BATCH)
            .unwrap_or_else(Instant::now),
    });
}

/// Writes the guest output waiting for the bar; called each time the bar is drawn.
pub(crate) fn flush_progress() {
    if let Some(shown) = &mut *progress() {
        shown.flush();
    }
}

/// The bar has been drawn for the last time and stays on screen: what was waiting is written
/// above it, and what is written from now on goes straight to stderr, from the line below it
/// (a bar leaves the cursor on its line).
pub(crate) fn end_progress() {
    if let Some(mut shown) = progress().take() {
        shown.flush();
        let _ = writeln!(io::stderr().lock());
    }
}

/// Whether a progress bar is on screen (what is written to stderr goes above it).
pub(crate) fn progress_shown() -> bool {
    progress().is_some()
}

/// The bar shown is gone from the screen (cleared, not left there, as a spinner is): what was
/// waiting is written, and what is written from now on goes straight to stderr.
pub(crate) fn clear_progress() {
    if let Some(mut shown) = progress().take() {
        shown.flush();
    }
}

/// A line about what the command is doing (`wasmpool: compiling x.wasm (18 MB), ...`).
pub(crate) fn note(text: std::fmt::Arguments<'_>) {
    with_stderr(|err| {
        let _ = writeln!(err, "wasmpool: {text}");
    });
}

/// Runs `write` for stderr, and writes what it wrote there at once; or while a progress bar is
/// shown, into what the bar writes above itself: at once, with what was waiting, or, when
/// `batched` (guest output), with the next lines unless the last were written a while ago.
fn with_stderr_as(batched: bool, write: impl FnOnce(&mut dyn Write)) {
    let mut progress = progress();
    match &mut *progress {
        Some(shown) => {
            write(&mut shown.pending);
            if !batched || shown.pending.len() >= BATCH_BYTES || shown.flushed.elapsed() >= BATCH {
                shown.flush();
            }
        }
        None => {
            drop(progress);
            // In one piece: stderr is not buffered, and a line written in parts costs a
            // system call a part.
            let mut text = Vec::new();
            write(&mut text);
            let _ = io::stderr().lock().write_all(&text);
        }
    }
}

/// Writes on stderr now (above the bar, if one is shown).
fn with_stderr(write: impl FnOnce(&mut dyn Write)) {
    with_stderr_as(false, write);
}

/// Writes guest output on stderr (above the bar, if one is shown: with the lines after it).
fn guest_stderr(write: impl FnOnce(&mut dyn Write)) {
    with_stderr_as(true, write);
}

/// What a task printed, each line prefixed by its task: `[task 3] hello`, `[task 3 stderr] ...`.
/// Control characters are escaped (`\u{1b}`, `\r`): a task's output cannot move the cursor,
/// clear the screen or overwrite its prefix to pass for a line of ours.
pub(crate) fn guest_output(out: &GuestOutput<'_>) {
    let stream = match out.stream {
        GuestStream::Stdout => "",
        GuestStream::Stderr => " stderr",
    };
    guest_stderr(|err| {
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
    guest_stderr(|err| {
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

/// The shared objects' final state, for `--state -`: one JSON line, as it is.
pub(crate) fn state(json_line: &str) {
    with_stderr(|err| {
        let _ = err.write_all(json_line.as_bytes());
    });
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
