//! `wasmpool map MODULE FUNC`: one call per JSON line of input, in parallel; one JSON line of
//! result per input line, in input order (or completion order with `--unordered`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use clap::Args;

use crate::TaskError;
use crate::pool::scheduler::results_json;

use super::PoolArgs;
use super::run::error_json;

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
pub(super) struct MapCommand {
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
    pub(super) fn execute(self) -> anyhow::Result<i32> {
        let module = super::load_module(&self.module)?;
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
        // imap streams: a long input is never all in memory. Default chunking for a stream of
        // unknown length: a few items per round trip unless --chunksize says otherwise.
        let mut builder = self.pool.builder(0);
        if self.pool.chunksize.is_none() {
            builder = builder.imap_chunksize(16);
        }
        let pool = builder.build()?;
        let one_param = task.signature().params.len() == 1;
        let started = Instant::now();
        let (counts, signal) = super::with_interrupts(&pool, |caught| -> anyhow::Result<Counts> {
            let lines = input
                .lines()
                .map_while(|line| line.ok())
                .take_while(|_| caught.load(Ordering::SeqCst) == 0)
                .filter(|line| !line.trim().is_empty())
                .map(
                    move |line| match serde_json::from_str::<serde_json::Value>(&line) {
                        // One parameter: the line is the argument itself, arrays included.
                        Ok(json) if one_param => Ok(serde_json::Value::Array(vec![json])),
                        Ok(json) => Ok(json),
                        Err(e) => Err(format!("line is not JSON ({e}): {line}")),
                    },
                );
            let mut counts = Counts::default();
            let mut stream = pool.imap_spread::<_, serde_json::Value>(
                &task,
                lines.map(LineArgs),
                !self.unordered,
            );
            while let Some((index, outcome)) = stream.next_raw() {
                let interrupted = caught.load(Ordering::SeqCst) != 0;
                if interrupted
                    && matches!(
                        outcome,
                        Err(TaskError::Cancelled { .. } | TaskError::PoolClosed { .. })
                    )
                {
                    counts.cancelled += 1;
                    continue;
                }
                let line = match (&outcome, self.unordered) {
                    (Ok(results), false) => results_json(results, false),
                    (Ok(results), true) => {
                        serde_json::json!({"index": index, "result": results_json(results, false)})
                    }
                    (Err(e), false) => error_json(e),
                    (Err(e), true) => {
                        let mut obj = error_json(e);
                        obj["index"] = index.into();
                        obj
                    }
                };
                match outcome {
                    Ok(_) => counts.ok += 1,
                    Err(_) => counts.failed += 1,
                }
                writeln!(output, "{line}")?;
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
            eprintln!(
                "wasmpool map: interrupted by {name}: {done} items finished ({} ok, {} failed), {} cancelled, in {secs:.3} s; all workers stopped",
                counts.ok, counts.failed, counts.cancelled
            );
            return Ok(128 + signal);
        }
        if !self.quiet {
            eprintln!(
                "wasmpool map: {done} items, {} ok, {} failed, in {secs:.3} s ({:.0} items/s) on {} workers",
                counts.ok,
                counts.failed,
                done as f64 / secs.max(1e-9),
                pool.workers()
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

/// One input line's arguments, or why the line is not usable; serializes to the arguments,
/// or fails to serialize with the reason, which the pool reports as that item's bad input.
struct LineArgs(Result<serde_json::Value, String>);

impl serde::Serialize for LineArgs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Ok(json) => json.serialize(s),
            Err(reason) => Err(serde::ser::Error::custom(reason)),
        }
    }
}
