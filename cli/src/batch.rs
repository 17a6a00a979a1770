//! The loop `map` and `exec` share: one item per input line, one result line per item (in
//! input order, or as items complete with their index), written as soon as it is ready; a
//! progress bar and a summary on stderr; Ctrl-C, SIGTERM and SIGHUP; a reader of the results
//! that goes away. What an item is made of (its line's JSON, the line itself, a program's
//! stdin) and what its result line says are the command's own, given as two functions.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use wasmpool::{Args, JsonOutcome, Order, Pool, StreamOptions, Task, TaskError};

use crate::progress::Progress;
use crate::summary::Summary;
use crate::{interrupt, terminal};

/// The options of the commands that run one item per input line.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Input and output")]
pub(crate) struct BatchArgs {
    /// Read input lines from this file instead of stdin (its lines are counted first, for
    /// the progress bar's total).
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Write result lines to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print results as they complete, each with `"index": N` (N counts input lines from 0).
    #[arg(long)]
    unordered: bool,
    /// Print no progress bar and no summary on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Also write the summary to this file as JSON: counts, failures by kind, item times, wall
    /// time, workers, and the first failures with their input line numbers.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
}

impl BatchArgs {
    /// The batch these options describe, for `command`.
    pub(crate) fn batch(&self, command: &'static str) -> Batch<'_> {
        Batch {
            command,
            input: self.input.as_deref(),
            output: self.output.as_deref(),
            order: if self.unordered {
                Order::Completion
            } else {
                Order::Input
            },
            quiet: self.quiet,
            summary_json: self.summary_json.as_deref(),
        }
    }
}

/// How a command's items are read and its results written.
#[derive(Debug)]
pub(crate) struct Batch<'a> {
    /// The command's name, for the summary (`map`, `exec`).
    pub(crate) command: &'static str,
    /// The input file, or stdin.
    pub(crate) input: Option<&'a Path>,
    /// The output file, or stdout.
    pub(crate) output: Option<&'a Path>,
    pub(crate) order: Order,
    /// No progress bar, no summary.
    pub(crate) quiet: bool,
    /// Where the summary goes as JSON too.
    pub(crate) summary_json: Option<&'a Path>,
}

/// An input line's item: its arguments from the line (without its line ending) and its number,
/// from 1, or why the line is no item (its bad input).
pub(crate) type ParseLine = Box<dyn FnMut(&[u8], usize) -> Result<Args, TaskError> + Send>;

impl Batch<'_> {
    /// Runs `task` once per input line, each line made an item by `parse`, each outcome made
    /// its result line by `result_line` (an object, to which the item's `"index"` is added in
    /// completion order) with what the command makes of an item whose task succeeded (a
    /// program that exited non-zero is a failure); the exit code: 0 when every item
    /// succeeded, 1 when one failed or was cancelled, 128 + N after signal N.
    pub(crate) fn run(
        self,
        pool: &Pool,
        task: &Task,
        parse: ParseLine,
        mut result_line: impl FnMut(JsonOutcome) -> (serde_json::Value, Verdict),
    ) -> anyhow::Result<i32> {
        let input = open_input(self.input, self.output)?;
        let mut output = Output::new(match self.output {
            Some(path) => Box::new(
                File::create(path)
                    .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?,
            ),
            None => Box::new(io::stdout()),
        });
        let started = Instant::now();
        // A progress bar while stderr is a terminal; the summary at the end.
        let progress = Progress::for_lines_of(self.quiet, self.input);
        let mut summary =
            Summary::start(self.command, progress, self.summary_json, pool.workers())?;
        let order = self.order;
        let (ran, signal) = interrupt::with_interrupts(
            pool,
            self.output.is_none(),
            |caught| -> anyhow::Result<()> {
                let lines = Lines::new(input, task.name(), parse, Arc::clone(caught));
                // Each item's output comes with its outcome, for its line or its error.
                let options = StreamOptions::new().order(order).capture_output(true);
                let mut stream = pool.imap_json_with(task, lines, options);
                while let Some(outcome) = stream.next() {
                    let index = outcome.index;
                    let elapsed = outcome.captured.as_ref().map(|c| c.elapsed);
                    // A task that failed is the summary's failure by its error; one that
                    // succeeded may still be the command's (a program's non-zero exit).
                    let task_ok = outcome.result.is_ok();
                    if !task_ok {
                        summary.item(index, &outcome.result, elapsed);
                    }
                    let (mut line, verdict) = result_line(outcome);
                    match verdict {
                        _ if !task_ok => {}
                        Verdict::Ok => summary.succeeded(elapsed),
                        Verdict::Failed { kind, message } => {
                            summary.failed(index, kind, &message, elapsed);
                        }
                    }
                    if order == Order::Completion {
                        line["index"] = index.into();
                    }
                    output.line(&line, stream.ready())?;
                }
                output.flush()?;
                Ok(())
            },
        )?;
        match ran {
            // The reader of the output went away (`| head`): what it wanted, it has.
            _ if signal == Some(libc::SIGPIPE) => return Ok(0),
            Err(e) if terminal::is_broken_pipe(&e) => return Ok(0),
            ran => ran?,
        }
        let (ok, failed, cancelled) = summary.counts();
        summary.finish(signal, self.quiet)?;
        if let Some(signal) = signal {
            let name = match signal {
                libc::SIGTERM => "SIGTERM",
                libc::SIGHUP => "SIGHUP",
                _ => "SIGINT",
            };
            let secs = started.elapsed().as_secs_f64();
            terminal::summary(
                self.command,
                format_args!(
                    "interrupted by {name}: {} items finished ({ok} ok, {failed} failed), {cancelled} cancelled, in {secs:.3} s; all workers stopped",
                    ok + failed,
                ),
            );
            return Ok(128 + signal);
        }
        Ok(if failed + cancelled > 0 { 1 } else { 0 })
    }
}

/// What a command makes of an item whose task succeeded.
#[derive(Debug)]
pub(crate) enum Verdict {
    Ok,
    /// A failure of the command's own, of `kind` (`exit`: a program exited non-zero).
    Failed {
        kind: &'static str,
        message: String,
    },
}

/// The input: `path`, or stdin. An input that cannot be read at all is the command's error
/// (exit 2), named: a missing file, a directory, or the very file the results are to be
/// written to (creating the output would empty it before a line was read).
fn open_input(
    path: Option<&Path>,
    output: Option<&Path>,
) -> anyhow::Result<Box<dyn BufRead + Send>> {
    let Some(path) = path else {
        return Ok(Box::new(BufReader::new(io::stdin())));
    };
    let cannot = |why: String| anyhow::anyhow!("cannot read the input {}: {why}", path.display());
    let file = File::open(path).map_err(|e| cannot(e.to_string()))?;
    let meta = file.metadata().map_err(|e| cannot(e.to_string()))?;
    if meta.is_dir() {
        return Err(cannot("it is a directory".into()));
    }
    if let Some(output) = output
        && let Ok(out) = std::fs::metadata(output)
        && (out.dev(), out.ino()) == (meta.dev(), meta.ino())
    {
        return Err(cannot(format!(
            "it is also the output ({}), which would be emptied before it is read",
            output.display()
        )));
    }
    Ok(Box::new(BufReader::new(file)))
}

/// The results, a line each, written as soon as they are ready and flushed before the command
/// waits for a task (or every few milliseconds, while results keep coming), so that a reader
/// downstream sees each result when it is done, and a reader that goes away (`| head`) ends
/// the run at once.
struct Output {
    out: BufWriter<Box<dyn Write>>,
    flushed: Instant,
    /// Lines written since the clock was last read: it is read every [`CLOCK_EVERY`] lines
    /// while results keep coming (a reading costs as much as writing a short line).
    unclocked: u32,
}

/// How many lines go by between two readings of the clock while results keep coming.
const CLOCK_EVERY: u32 = 64;

/// The longest a written result waits in the buffer while more keep coming.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

impl Output {
    fn new(out: Box<dyn Write>) -> Self {
        Output {
            out: BufWriter::with_capacity(64 << 10, out),
            flushed: Instant::now(),
            unclocked: 0,
        }
    }

    /// Writes one result line; flushes unless `more` are ready to be written at once.
    fn line(&mut self, line: &serde_json::Value, more: bool) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, line)?;
        self.out.write_all(b"\n")?;
        self.unclocked += 1;
        if !more || (self.unclocked >= CLOCK_EVERY && self.flushed.elapsed() >= FLUSH_EVERY) {
            self.flush()?;
        } else if self.unclocked >= CLOCK_EVERY {
            self.unclocked = 0;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flushed = Instant::now();
        self.unclocked = 0;
        self.out.flush()
    }
}

/// The input, line by line, each line made an item once by the command's parser. Every line
/// is an item, a blank one too (the parser says what is wrong with it), so that output lines
/// pair with input lines. The input ends at its end, after a line that could not be read, or
/// when a signal has been caught.
struct Lines {
    input: Box<dyn BufRead + Send>,
    func: String,
    parse: ParseLine,
    caught: Arc<AtomicI32>,
    line: Vec<u8>,
    /// The number of the line being read, from 1, for messages.
    number: usize,
    failed: bool,
}

impl Lines {
    fn new(
        input: Box<dyn BufRead + Send>,
        func: &str,
        parse: ParseLine,
        caught: Arc<AtomicI32>,
    ) -> Self {
        Lines {
            input,
            func: func.to_string(),
            parse,
            caught,
            line: Vec::new(),
            number: 0,
            failed: false,
        }
    }
}

impl Iterator for Lines {
    type Item = Result<Args, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.caught.load(Ordering::SeqCst) != 0 {
            return None;
        }
        self.line.clear();
        self.number += 1;
        match self.input.read_until(b'\n', &mut self.line) {
            Ok(0) => None,
            Ok(_) => {
                let line = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                Some((self.parse)(line, self.number))
            }
            Err(e) => {
                // The input cannot be read on: this line is its last, and says why.
                self.failed = true;
                Some(Err(bad_input(
                    &self.func,
                    format!("line {} cannot be read: {e}", self.number),
                )))
            }
        }
    }
}

/// A line that is no item, as its outcome.
pub(crate) fn bad_input(func: &str, detail: String) -> TaskError {
    TaskError::BadInput {
        func: func.to_string(),
        detail,
        param: None,
    }
}

/// Line `number` as text, or its bad input: a line that is not UTF-8, quoted.
pub(crate) fn line_text<'l>(
    func: &str,
    line: &'l [u8],
    number: usize,
) -> Result<&'l str, TaskError> {
    std::str::from_utf8(line).map_err(|e| {
        bad_input(
            func,
            format!("line {number} is not UTF-8 ({e}): {}", excerpt(line)),
        )
    })
}

/// How much of a bad line a message quotes.
const EXCERPT_CHARS: usize = 60;

/// The start of a line, for a message: at most [`EXCERPT_CHARS`] characters (invalid UTF-8
/// replaced), and the line's length when it was cut.
pub(crate) fn excerpt(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()),
        None => text.into_owned(),
    }
}

/// How much of a failed item's stderr its error object carries: the end, where a panic or a
/// last message is.
const STDERR_TAIL_BYTES: usize = 4096;

/// The last [`STDERR_TAIL_BYTES`] of `stderr`, from a line start when one is near, as text.
pub(crate) fn stderr_tail(stderr: &[u8]) -> String {
    let mut start = stderr.len().saturating_sub(STDERR_TAIL_BYTES);
    if start > 0
        && let Some(newline) = stderr[start..].iter().position(|&b| b == b'\n')
    {
        start += newline + 1;
    }
    String::from_utf8_lossy(&stderr[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stderr_tail_starts_at_a_line() {
        assert_eq!(stderr_tail(b"short\n"), "short\n");
        let mut long = vec![b'x'; 5000];
        long.extend_from_slice(b"\nlast line\n");
        assert_eq!(stderr_tail(&long), "last line\n");
    }

    #[test]
    fn excerpts_are_cut_with_the_length() {
        assert_eq!(excerpt(b"abc"), "abc");
        let long = "y".repeat(100);
        assert_eq!(
            excerpt(long.as_bytes()),
            format!("{}... (100 bytes)", "y".repeat(60))
        );
    }
}
