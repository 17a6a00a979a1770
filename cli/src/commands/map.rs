//! `wasmpool map MODULE FUNC`: one call per JSON line of input, in parallel; one JSON line of
//! result per input line, in input order (or completion order with `--unordered`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use clap::Args;
use wasmpool::{Order, Task, TaskError};

use crate::builtin::load_module;
use crate::commands::run::error_json;
use crate::options::PoolArgs;
use crate::{interrupt, terminal};

/// Call one export for every JSON line of input, in parallel.
///
/// Each input line holds the arguments: for a one-parameter export, the argument itself
/// (`7`, `"text"`, `{"name":"Ada"}`); for more parameters, a JSON array spread over them
/// (`[2, 10]`). Every input line gets exactly one output line: the result as JSON, or
/// `{"error": {"kind": ..., "message": ...}}` for an item that failed (a line that is blank,
/// not JSON or not UTF-8 is a `bad-input` error); the run goes on. Results are written as soon
/// as they are done (in input order: as soon as every earlier one is). With --unordered each
/// line is `{"index": N, "result": ...}` or `{"index": N, "error": ...}`, N counting input
/// lines from 0. A summary goes to stderr; the exit code is 1 if any item failed, 0 otherwise.
/// Ctrl-C (or SIGTERM, SIGHUP) stops reading input, cancels what is queued, stops the workers,
/// prints what finished and a `cancelled` error in the place of each item that did not, and
/// exits 130 (143, 129).
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  seq 1 10 | wasmpool map builtin:square square\n  printf '[2,3]\\n[3,2]\\n' | wasmpool map builtin:power power"
)]
pub(crate) struct MapCommand {
    /// A .wasm component or core module, a .wat file, or builtin:NAME.
    module: String,
    /// The export to call (see `wasmpool inspect`).
    func: String,
    /// Read argument lines from this file instead of stdin.
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Write result lines to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print results as they complete, tagged with their input index.
    #[arg(long)]
    unordered: bool,
    /// Print no summary on stderr.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    load: crate::options::LoadArgs,
    #[command(flatten)]
    pool: PoolArgs,
    /// Call the items of each chunk in one instance instead of a fresh one each: much faster
    /// for tiny pure functions, but an item sees what earlier items of its chunk left in the
    /// instance (a failed call discards it).
    #[arg(long)]
    reuse_instance: bool,
}

impl MapCommand {
    pub(crate) fn execute(self) -> anyhow::Result<i32> {
        let module = load_module(&self.module, &self.load, self.pool.limits())?;
        let mut task = module.task(&self.func)?;
        if self.reuse_instance {
            task = task.with_instance_reuse();
        }
        let input = open_input(self.input.as_deref(), self.output.as_deref())?;
        let mut output = Output::new(match &self.output {
            Some(path) => Box::new(
                File::create(path)
                    .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?,
            ),
            None => Box::new(io::stdout()),
        });
        // A stream: a long input is never all in memory, and the pool sizes its chunks by how
        // long items take, unless --chunksize says otherwise.
        let pool = self.pool.builder(0).build()?;
        let order = if self.unordered {
            Order::Completion
        } else {
            Order::Input
        };
        let started = Instant::now();
        let (counts, signal) = interrupt::with_interrupts(
            &pool,
            self.output.is_none(),
            |caught| -> anyhow::Result<Counts> {
                let lines = Lines::new(input, &task, Arc::clone(caught));
                let mut counts = Counts::default();
                let mut stream = pool.imap_json(&task, lines, order);
                while let Some(outcome) = stream.next() {
                    let line = match outcome.result {
                        Ok(result) => {
                            counts.ok += 1;
                            match order {
                                Order::Input => result,
                                Order::Completion => {
                                    serde_json::json!({"index": outcome.index, "result": result})
                                }
                            }
                        }
                        Err(e) => {
                            // After a signal, what had not finished is cancelled: its line says
                            // so, in its place, so that lines still pair with their inputs.
                            if matches!(
                                e,
                                TaskError::Cancelled { .. } | TaskError::PoolClosed { .. }
                            ) {
                                counts.cancelled += 1;
                            } else {
                                counts.failed += 1;
                            }
                            let mut line = error_json(&e);
                            if order == Order::Completion {
                                line["index"] = outcome.index.into();
                            }
                            line
                        }
                    };
                    output.line(&line, stream.ready())?;
                }
                output.flush()?;
                Ok(counts)
            },
        )?;
        let counts = match counts {
            // The reader of the output went away (`| head`): what it wanted, it has.
            _ if signal == Some(libc::SIGPIPE) => return Ok(0),
            Err(e) if terminal::is_broken_pipe(&e) => return Ok(0),
            counts => counts?,
        };
        let secs = started.elapsed().as_secs_f64();
        let done = counts.ok + counts.failed;
        if let Some(signal) = signal {
            let name = match signal {
                libc::SIGTERM => "SIGTERM",
                libc::SIGHUP => "SIGHUP",
                _ => "SIGINT",
            };
            terminal::summary(
                "map",
                format_args!(
                    "interrupted by {name}: {done} items finished ({} ok, {} failed), {} cancelled, in {secs:.3} s; all workers stopped",
                    counts.ok, counts.failed, counts.cancelled
                ),
            );
            return Ok(128 + signal);
        }
        if !self.quiet {
            terminal::summary(
                "map",
                format_args!(
                    "{done} items, {} ok, {} failed, in {secs:.3} s ({:.0} items/s) on {} workers",
                    counts.ok,
                    counts.failed,
                    done as f64 / secs.max(1e-9),
                    pool.workers()
                ),
            );
        }
        Ok(if counts.failed + counts.cancelled > 0 {
            1
        } else {
            0
        })
    }
}

#[derive(Debug, Default)]
struct Counts {
    ok: usize,
    failed: usize,
    cancelled: usize,
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

/// The input, line by line, each line parsed once: its JSON checked against the task's
/// signature, or why it cannot be, as that line's bad input. Every line is an item, a blank
/// one too (its bad input says so), so that output lines pair with input lines. The input
/// ends at its end, after a line that could not be read, or when a signal has been caught.
struct Lines {
    input: Box<dyn BufRead + Send>,
    task: Task,
    one_param: bool,
    caught: Arc<AtomicI32>,
    line: Vec<u8>,
    /// The number of the line being read, from 1, for messages.
    number: usize,
    failed: bool,
}

/// How much of a bad line a message quotes.
const EXCERPT_CHARS: usize = 60;

impl Lines {
    fn new(input: Box<dyn BufRead + Send>, task: &Task, caught: Arc<AtomicI32>) -> Self {
        Lines {
            input,
            one_param: task.signature().params.len() == 1,
            task: task.clone(),
            caught,
            line: Vec::new(),
            number: 0,
            failed: false,
        }
    }

    fn bad(&self, detail: String) -> TaskError {
        TaskError::BadInput {
            func: self.task.name().to_string(),
            detail,
            param: None,
        }
    }

    /// A line's arguments: for a one-parameter export the line is the argument itself,
    /// arrays included; otherwise an array is spread over the parameters.
    fn args(&self, text: &[u8]) -> Result<wasmpool::Args, TaskError> {
        if text.is_empty() {
            return Err(self.bad(format!("line {} is blank", self.number)));
        }
        match serde_json::from_slice::<serde_json::Value>(text) {
            Ok(json) if self.one_param => self.task.arg_from_json(&json),
            Ok(json) => self.task.args_from_json(&json),
            Err(e) => Err(self.bad(format!(
                "line {} is not JSON ({e}): {}",
                self.number,
                excerpt(text)
            ))),
        }
    }
}

impl Iterator for Lines {
    type Item = Result<wasmpool::Args, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.caught.load(Ordering::SeqCst) != 0 {
            return None;
        }
        self.line.clear();
        self.number += 1;
        match self.input.read_until(b'\n', &mut self.line) {
            Ok(0) => None,
            Ok(_) => Some(self.args(self.line.trim_ascii())),
            Err(e) => {
                // The input cannot be read on: this line is its last, and says why.
                self.failed = true;
                Some(Err(
                    self.bad(format!("line {} cannot be read: {e}", self.number))
                ))
            }
        }
    }
}

/// The start of a line, for a message: at most [`EXCERPT_CHARS`] characters (invalid UTF-8
/// replaced), and the line's length when it was cut.
fn excerpt(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], text.len()),
        None => text.into_owned(),
    }
}
