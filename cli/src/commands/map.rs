//! `wasmpool map MODULE FUNC`: one call per JSON line of input, in parallel; one JSON line of
//! result per input line, in input order (or completion order with `--unordered`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
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
/// (`[2, 10]`). Blank lines are skipped. Each output line is the result as JSON, or
/// `{"error": {"kind": ..., "message": ...}}` for an item that failed; the run goes on.
/// With --unordered each line is `{"index": N, "result": ...}` or `{"index": N, "error": ...}`,
/// N counting input lines from 0. A summary goes to stderr; the exit code is 1 if any item
/// failed, 0 otherwise. Ctrl-C (or SIGTERM) stops reading input, cancels what is queued,
/// stops the workers, prints what finished and a summary, and exits 130 (143).
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
    pool: PoolArgs,
    /// Call the items of each chunk in one instance instead of a fresh one each: much faster
    /// for tiny pure functions, but an item sees what earlier items of its chunk left in the
    /// instance (a failed call discards it).
    #[arg(long)]
    reuse_instance: bool,
}

impl MapCommand {
    pub(crate) fn execute(self) -> anyhow::Result<i32> {
        let module = load_module(&self.module)?;
        let mut task = module.task(&self.func)?;
        if self.reuse_instance {
            task = task.with_instance_reuse();
        }
        let input: Box<dyn BufRead> = match &self.input {
            Some(path) => {
                Box::new(BufReader::new(File::open(path).map_err(|e| {
                    anyhow::anyhow!("cannot open {}: {e}", path.display())
                })?))
            }
            None => Box::new(BufReader::new(io::stdin())),
        };
        let mut output: Box<dyn Write> = match &self.output {
            Some(path) => {
                Box::new(BufWriter::new(File::create(path).map_err(|e| {
                    anyhow::anyhow!("cannot create {}: {e}", path.display())
                })?))
            }
            None => Box::new(BufWriter::new(io::stdout().lock())),
        };
        // A stream: a long input is never all in memory, and the pool sizes its chunks by how
        // long items take, unless --chunksize says otherwise.
        let pool = self.pool.builder(0).build()?;
        let order = if self.unordered {
            Order::Completion
        } else {
            Order::Input
        };
        let started = Instant::now();
        let (counts, signal) =
            interrupt::with_interrupts(&pool, |caught| -> anyhow::Result<Counts> {
                let lines = Lines::new(input, &task, caught);
                let mut counts = Counts::default();
                for outcome in pool.imap_json(&task, lines, order) {
                    let interrupted = caught.load(Ordering::SeqCst) != 0;
                    let line = match outcome.result {
                        Err(TaskError::Cancelled { .. } | TaskError::PoolClosed { .. })
                            if interrupted =>
                        {
                            counts.cancelled += 1;
                            continue;
                        }
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
                            counts.failed += 1;
                            let mut line = error_json(&e);
                            if order != Order::Input {
                                line["index"] = outcome.index.into();
                            }
                            line
                        }
                    };
                    serde_json::to_writer(&mut output, &line)?;
                    output.write_all(b"\n")?;
                }
                output.flush()?;
                Ok(counts)
            })?;
        let counts = counts?;
        let secs = started.elapsed().as_secs_f64();
        let done = counts.ok + counts.failed;
        if let Some(signal) = signal {
            let name = if signal == libc::SIGTERM {
                "SIGTERM"
            } else {
                "SIGINT"
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
        Ok(if counts.failed > 0 { 1 } else { 0 })
    }
}

#[derive(Debug, Default)]
struct Counts {
    ok: usize,
    failed: usize,
    cancelled: usize,
}

/// The input, line by line, each line parsed once: its JSON checked against the task's
/// signature, or why it cannot be (the line's bad input). Blank lines are skipped; the input
/// ends at its end, at an error reading it, or when a signal has been caught.
struct Lines<'a> {
    input: Box<dyn BufRead>,
    task: Task,
    one_param: bool,
    caught: &'a AtomicI32,
    line: Vec<u8>,
}

impl<'a> Lines<'a> {
    fn new(input: Box<dyn BufRead>, task: &Task, caught: &'a AtomicI32) -> Self {
        Lines {
            input,
            one_param: task.signature().params.len() == 1,
            task: task.clone(),
            caught,
            line: Vec::new(),
        }
    }

    /// A line's arguments: for a one-parameter export the line is the argument itself,
    /// arrays included; otherwise an array is spread over the parameters.
    fn args(&self, json: &serde_json::Value) -> Result<wasmpool::Args, TaskError> {
        if self.one_param {
            self.task.arg_from_json(json)
        } else {
            self.task.args_from_json(json)
        }
    }
}

impl Iterator for Lines<'_> {
    type Item = Result<wasmpool::Args, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.caught.load(Ordering::SeqCst) != 0 {
                return None;
            }
            self.line.clear();
            match self.input.read_until(b'\n', &mut self.line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let text = self.line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            return Some(match serde_json::from_slice::<serde_json::Value>(text) {
                Ok(json) => self.args(&json),
                Err(e) => Err(TaskError::BadInput {
                    func: self.task.name().to_string(),
                    detail: format!("line is not JSON ({e}): {}", String::from_utf8_lossy(text)),
                    param: None,
                }),
            });
        }
    }
}
