//! The progress bar of the commands that run many items (`map`, `exec`): how many are
//! done, out of how many when that is known, at what rate, how many failed, and when the rest
//! will be. It is drawn on stderr only when stderr is a terminal (see
//! [`terminal::progress_target`]) and never with `--quiet`; otherwise it is nothing, and every
//! call costs one branch. Results on stdout are never touched, and while the bar is shown every
//! line of [`terminal`] goes through it, so that guest output and warnings do not tear it.
//!
//! The bar is drawn [`terminal::PROGRESS_HZ`] times a second by a thread of its own, which reads
//! the counts, and once more when it ends, so that its last state is exact. Counting an item is
//! an atomic increment: nothing measurable on a map of a million items.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{HumanCount, ProgressBar, ProgressState, ProgressStyle};
use wasmpool::{CompileEvent, LARGE_MODULE_BYTES};

use crate::terminal;

/// A command's progress bar, or nothing (stderr is not a terminal, or `--quiet`).
#[derive(Debug)]
pub(crate) struct Progress {
    shown: Option<Shown>,
}

#[derive(Debug)]
struct Shown {
    bar: ProgressBar,
    counts: Arc<Counts>,
    /// The thread that draws the bar.
    ticker: Option<Helper>,
    /// The thread counting the input's lines, while it does.
    counter: Option<Helper>,
}

/// How many items are done, and how many of them failed: read by the bar's style whenever it
/// draws (so that a redrawing after a line of guest output is current too), and given to the
/// bar as its position by the ticker (for its bar and its ETA).
#[derive(Debug, Default)]
struct Counts {
    done: AtomicU64,
    failed: AtomicU64,
}

/// A thread of the bar's, and how to tell it to stop.
#[derive(Debug)]
struct Helper {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Helper {
    /// Runs `f` on a thread named `name`, with the flag that tells it to stop; `None` if no
    /// thread could be started (then there is no bar, or no total: no error).
    fn spawn(name: &str, f: impl FnOnce(&AtomicBool) + Send + 'static) -> Option<Helper> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || f(&flag))
            .ok()?;
        Some(Helper { stop, thread })
    }

    /// Waits for the thread to end, having told it to stop first if `stop`.
    fn end(self, stop: bool) {
        if stop {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.thread().unpark();
        }
        let _ = self.thread.join();
    }
}

/// How often the bar is drawn.
const TICK: Duration = Duration::from_millis(1000 / terminal::PROGRESS_HZ as u64);

/// What the bar shows: without a total, a count; with one, a bar and an ETA; once ended, no
/// ETA.
#[derive(Debug, Clone, Copy)]
enum Look {
    Count,
    Total,
    Ended { total: bool },
}

impl Progress {
    /// No bar.
    pub(crate) fn hidden() -> Progress {
        Progress { shown: None }
    }

    /// A bar for `total` items (a count, when it is `None`), unless `quiet` or stderr is not a
    /// terminal.
    pub(crate) fn new(quiet: bool, total: Option<u64>) -> Progress {
        let Some(target) = terminal::progress_target().filter(|_| !quiet) else {
            return Progress::hidden();
        };
        let counts = Arc::new(Counts::default());
        let bar = ProgressBar::with_draw_target(total, target);
        let look = if total.is_some() {
            Look::Total
        } else {
            Look::Count
        };
        bar.set_style(style(look, &counts));
        let ticker = {
            let (bar, counts) = (bar.clone(), Arc::clone(&counts));
            Helper::spawn("wasmpool-progress", move |stop| {
                // First drawn a tick from now: a command done sooner shows only its end, and a
                // total counted by then is there from the first drawing.
                loop {
                    std::thread::park_timeout(TICK);
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    terminal::flush_progress();
                    bar.set_position(counts.done.load(Ordering::Relaxed));
                }
            })
        };
        if ticker.is_none() {
            return Progress::hidden();
        }
        terminal::show_progress(&bar);
        Progress {
            shown: Some(Shown {
                bar,
                counts,
                ticker,
                counter: None,
            }),
        }
    }

    /// A bar for a command that makes an item of every line of `input` (stdin when `None`):
    /// when the input is a regular file (`--input FILE`, or `< FILE`), its lines are counted on
    /// a thread of their own, and the bar has a total as soon as they are; until then (and for
    /// a pipe) it counts.
    pub(crate) fn for_lines_of(quiet: bool, input: Option<&Path>) -> Progress {
        let mut progress = Progress::new(quiet, None);
        if let Some(shown) = &mut progress.shown
            && let Some(file) = regular_file(input)
        {
            let (bar, counts) = (shown.bar.clone(), Arc::clone(&shown.counts));
            shown.counter = Helper::spawn("wasmpool-count-lines", move |stop| {
                if let Ok(Some(lines)) = count_lines(file, stop) {
                    bar.set_length(lines);
                    bar.set_style(style(Look::Total, &counts));
                }
            });
        }
        progress
    }

    /// One more item is done; `ok` is false if it failed.
    pub(crate) fn item(&self, ok: bool) {
        if let Some(shown) = &self.shown {
            if !ok {
                shown.counts.failed.fetch_add(1, Ordering::Relaxed);
            }
            shown.counts.done.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every item is done: the bar is drawn a last time, exact (once the input's lines are
    /// counted, which the command has just read to its end), and left on screen above what
    /// follows.
    pub(crate) fn finish(mut self) {
        if let Some(shown) = &mut self.shown
            && let Some(counter) = shown.counter.take()
        {
            counter.end(false);
        }
    }

    /// The command stops before its input ends (a signal): the bar is drawn a last time where
    /// it got to, without waiting for the input's lines to be counted.
    pub(crate) fn abandon(self) {
        drop(self);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        let Some(shown) = self.shown.take() else {
            return;
        };
        for helper in [shown.counter, shown.ticker].into_iter().flatten() {
            helper.end(true);
        }
        shown
            .bar
            .set_position(shown.counts.done.load(Ordering::Relaxed));
        let total = shown.bar.length().is_some();
        shown
            .bar
            .set_style(style(Look::Ended { total }, &shown.counts));
        shown.bar.abandon();
        terminal::end_progress();
    }
}

/// A spinner for a wait that has no count, drawn as the bar is (on a terminal, never over
/// another bar); elsewhere, its message is one line of stderr and nothing more.
#[derive(Debug)]
pub(crate) struct Spinner {
    bar: Option<ProgressBar>,
}

impl Spinner {
    /// Shows `message` beside a spinner and the time it has spun; or, when stderr is not a
    /// terminal or a bar is already shown, writes it as a line.
    pub(crate) fn start(message: String) -> Spinner {
        let target = terminal::progress_target().filter(|_| !terminal::progress_shown());
        let Some(target) = target else {
            terminal::note(format_args!("{message}"));
            return Spinner { bar: None };
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .expect("the template is valid"),
        );
        bar.set_message(message);
        bar.enable_steady_tick(TICK);
        terminal::show_progress(&bar);
        Spinner { bar: Some(bar) }
    }

    /// The wait is over: a spinner is cleared, and `done` written in its place; a message
    /// written as a line is all there is.
    pub(crate) fn finish(self, done: impl FnOnce() -> String) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
            terminal::clear_progress();
            terminal::note(format_args!("{}", done()));
        }
    }
}

/// What a command's loader tells of compiling a module (`Loader::on_compile`): a large module,
/// whose first compile takes seconds (an 18 MB Python component, 10 to 20), says that it is
/// compiling, with a spinner on a terminal; smaller ones say nothing.
pub(crate) fn on_compile() -> impl Fn(CompileEvent<'_>) + Send + Sync + 'static {
    let spinning = Mutex::new(None::<Spinner>);
    move |event| {
        let mut spinning = spinning.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            CompileEvent::Started { origin, bytes } if bytes >= LARGE_MODULE_BYTES => {
                *spinning = Some(Spinner::start(format!(
                    "compiling {origin} ({}), once per machine...",
                    megabytes(bytes)
                )));
            }
            CompileEvent::Finished {
                origin, elapsed, ..
            } => {
                if let Some(spinner) = spinning.take() {
                    spinner
                        .finish(|| format!("compiled {origin} in {:.1} s", elapsed.as_secs_f64()));
                }
            }
            _ => {}
        }
    }
}

/// A module's size as a person says it: `18 MB`, `1.5 MB`.
fn megabytes(bytes: u64) -> String {
    let mb = bytes as f64 / 1e6;
    if mb < 10.0 {
        format!("{mb:.1} MB")
    } else {
        format!("{mb:.0} MB")
    }
}

/// The bar's look: `00:00:03 [=====>    ] 4,100/10,000, 1,366 items/s, 2 failed, ETA 4s`.
fn style(look: Look, counts: &Arc<Counts>) -> ProgressStyle {
    let template = match look {
        Look::Count | Look::Ended { total: false } => {
            "{elapsed_precise} {done} items, {rate}, {failed}"
        }
        // The bar takes what the terminal's width leaves: the line never wraps.
        Look::Total => {
            "{elapsed_precise} [{wide_bar}] {done}/{human_len}, {rate}, {failed}, ETA {eta}"
        }
        Look::Ended { total: true } => {
            "{elapsed_precise} [{wide_bar}] {done}/{human_len}, {rate}, {failed}"
        }
    };
    let (for_done, for_rate, for_failed) = (counts.clone(), counts.clone(), counts.clone());
    ProgressStyle::with_template(template)
        .expect("the templates are valid")
        .progress_chars("=> ")
        .with_key(
            "done",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", HumanCount(for_done.done.load(Ordering::Relaxed)));
            },
        )
        .with_key(
            "rate",
            move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let done = for_rate.done.load(Ordering::Relaxed);
                let _ = write!(w, "{} items/s", rate(done, state.elapsed()));
            },
        )
        .with_key(
            "failed",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{} failed", for_failed.failed.load(Ordering::Relaxed));
            },
        )
}

/// Items a second, over the whole run: steadier than a recent rate, and what the summary says.
fn rate(done: u64, elapsed: Duration) -> String {
    let per_sec = done as f64 / elapsed.as_secs_f64().max(1e-3);
    if per_sec < 10.0 {
        format!("{per_sec:.1}")
    } else {
        HumanCount(per_sec.round() as u64).to_string()
    }
}

/// The input, opened again to be counted apart from the command's reading: the file at `path`,
/// or stdin's file from where stdin is at; `None` unless it is a regular file.
fn regular_file(path: Option<&Path>) -> Option<File> {
    let regular = |file: &File| file.metadata().is_ok_and(|meta| meta.is_file());
    if let Some(path) = path {
        return File::open(path).ok().filter(regular);
    }
    // A copy of the descriptor shares stdin's offset: it says where stdin is, and moves nothing.
    let stdin = File::from(io::stdin().as_fd().try_clone_to_owned().ok()?);
    if !regular(&stdin) {
        return None;
    }
    let at = (&stdin).stream_position().ok()?;
    // Opened again, the file has an offset of its own, which the counting moves.
    let mut file = File::open("/proc/self/fd/0").ok().filter(regular)?;
    file.seek(SeekFrom::Start(at)).ok()?;
    Some(file)
}

/// How many items a command that reads `input` line by line makes of it: one per newline,
/// and one for a last line without one (a blank line is an item too). `None` if `stop` was
/// set before the end.
fn count_lines(mut input: impl Read, stop: &AtomicBool) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; 256 << 10];
    let mut lines = 0u64;
    let mut last = b'\n';
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Ok(Some(lines + u64::from(last != b'\n')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &str) -> u64 {
        count_lines(text.as_bytes(), &AtomicBool::new(false))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn lines_are_counted_as_the_commands_read_them() {
        assert_eq!(count(""), 0);
        assert_eq!(count("1"), 1);
        assert_eq!(count("1\n"), 1);
        assert_eq!(count("\n"), 1);
        assert_eq!(count("1\n\n3"), 3);
        assert_eq!(count("1\n2\n3\n"), 3);
        let long: String = (0..100_000).map(|i| format!("{i}\n")).collect();
        assert_eq!(count(&long), 100_000);
        assert_eq!(count(&long[..long.len() - 1]), 100_000);
    }

    #[test]
    fn counting_stops_when_asked() {
        let stop = AtomicBool::new(true);
        assert_eq!(count_lines(&b"1\n2\n"[..], &stop).unwrap(), None);
    }

    #[test]
    fn rates_read_well() {
        assert_eq!(rate(5, Duration::from_secs(2)), "2.5");
        assert_eq!(rate(1_000_000, Duration::from_secs(2)), "500,000");
        assert_eq!(rate(0, Duration::ZERO), "0.0");
    }

    #[test]
    fn module_sizes_read_well() {
        assert_eq!(megabytes(18_404_485), "18 MB");
        assert_eq!(megabytes(1_500_000), "1.5 MB");
    }

    #[test]
    fn quiet_shows_no_bar() {
        let progress = Progress::new(true, Some(3));
        assert!(progress.shown.is_none());
        progress.item(false);
        progress.finish();
    }
}
