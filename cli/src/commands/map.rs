//! `wasmpool map MODULE FUNC`: one call per line of input, in parallel; one JSON line of
//! result per input line, in input order (or completion order with `--unordered`).

use clap::Args;
use wasmpool::{GuestStream, JsonOutcome, Task};

use crate::batch::{BatchArgs, ParseLine, Verdict, bad_input, excerpt, line_text, stderr_tail};
use crate::builtin::load_module;
use crate::commands::run::error_json;
use crate::options::PoolArgs;
use crate::terminal;

/// Call one export for every line of input, in parallel.
///
/// Each input line holds the arguments as JSON: for a one-parameter export, the argument
/// itself (`7`, `"text"`, `{"name":"Ada"}`); for more parameters, a JSON array spread over
/// them (`[2, 10]`) or an object that names them (`{"base": 2, "exponent": 10}`). With --raw,
/// the line itself is the one string argument. Every input line gets exactly one output line:
/// the result as JSON, or `{"error": {"kind": ..., "message": ...}}` for an item that failed
/// (a line that is blank, not JSON or not UTF-8 is a `bad-input` error); the run goes on. A
/// failed item's error carries its stderr (the last 4 KiB) and, for a Rust panic, the panic
/// message. Results are written as soon as they are done (in input order: as soon as every
/// earlier one is). A progress bar (when stderr is a terminal) and a summary go to stderr;
/// the exit code is 1 if any item failed, 0 otherwise. Ctrl-C (or SIGTERM, SIGHUP) stops
/// reading input, cancels what is queued, stops the workers, prints what finished and a
/// `cancelled` error in the place of each item that did not, and exits 130 (143, 129).
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    seq 1 10 | wasmpool map builtin:square square\n  \
    printf '[2,3]\\n{\"base\": 3, \"exponent\": 2}\\n' | wasmpool map builtin:power power\n  \
    wasmpool map builtin:words word-count --raw -i book.txt -o counts.jsonl\n  \
    seq 1 1000000 | wasmpool map builtin:square square --reuse-instance > squares.jsonl\n  \
    seq 1 1000000 | wasmpool map builtin:square square-many --batch > squares.jsonl")]
pub(crate) struct MapCommand {
    /// A .wasm component or core module, a .wat file, or builtin:NAME.
    module: String,
    /// The export to call (see `wasmpool inspect`).
    func: String,
    /// Take each input line as it is (without its line ending) as the one string argument,
    /// not as JSON: for line-oriented text work. The export must take one `string`.
    #[arg(long)]
    raw: bool,
    /// Put what each item printed in its output line, for graders: `{"ok": RESULT, "stdout":
    /// "...", "stderr": "..."}`, or `{"error": {...}, "stdout": ..., "stderr": ...}`.
    /// Without it, an item's output goes to stderr as `[line N] ...` when its result is
    /// written, and a failed item's stderr into its error object.
    #[arg(long)]
    capture: bool,
    /// Call the items of each chunk in one instance instead of a fresh one each: much faster
    /// for tiny pure functions and for large components (Python, JavaScript), but an item
    /// sees what earlier items of its chunk left in the instance (a failed call discards it).
    #[arg(long)]
    reuse_instance: bool,
    /// For an export that takes a list and returns a list (`f: func(xs: list<T>) -> list<R>`):
    /// each line is one element (a `T`) and gets its own result line (an `R`), exactly as
    /// without --batch, but each chunk of lines is one call of the export with the chunk's
    /// elements as its list: tiny items go many times faster. A failing item fails alone, with
    /// its own error (its list is split in halves and called again until it is found); what a
    /// call prints goes with its first line; --timeout and --fuel bound each call, that is
    /// each chunk. An export of another shape is refused before any input is read.
    #[arg(long = "batch")]
    batched: bool,
    #[command(flatten)]
    batch: BatchArgs,
    #[command(flatten)]
    load: crate::options::LoadArgs,
    #[command(flatten)]
    pool: PoolArgs,
}

impl MapCommand {
    pub(crate) fn execute(self) -> anyhow::Result<i32> {
        // From here on a Ctrl-C is the run's, even before its pool is up.
        crate::interrupt::catch_early();
        let module = load_module(&self.module, &self.load, self.pool.limits())?;
        let mut task = module.task(&self.func)?;
        if self.reuse_instance {
            task = task.with_instance_reuse();
        }
        if self.batched {
            task = task.batched()?;
        }
        if self.raw {
            check_raw(&task)?;
        }
        // A stream: a long input is never all in memory, and the pool sizes its chunks by how
        // long items take, unless --chunksize says otherwise.
        let pool = self.pool.builder(0).build()?;
        let (task, objects) = self.pool.with_shared(&pool, task)?;
        let capture = self.capture;
        let batch = self.batch.batch("map");
        // In completion order, a line is an object that can take the item's index.
        let envelope = capture || batch.order == wasmpool::Order::Completion;
        let status = batch.run(&pool, &task, parser(&task, self.raw), |outcome| {
            (result_line(outcome, capture, envelope), Verdict::Ok)
        });
        objects.write_state()?;
        status
    }
}

/// How a line becomes a call's arguments: for a one-parameter export the line's JSON is the
/// argument itself, arrays included; otherwise an array is spread over the parameters (or an
/// object names them). With `raw`, the line is the one string argument.
fn parser(task: &Task, raw: bool) -> ParseLine {
    let task = task.clone();
    let one_param = task.signature().params.len() == 1;
    Box::new(move |line: &[u8], number: usize| {
        if raw {
            let text = line_text(task.name(), line, number)?;
            return task.arg_from_json(&serde_json::Value::String(text.into()));
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            return Err(bad_input(task.name(), format!("line {number} is blank")));
        }
        match serde_json::from_slice::<serde_json::Value>(text) {
            Ok(json) if one_param => task.arg_from_json(&json),
            Ok(json) => task.args_from_json(&json),
            Err(e) => Err(bad_input(
                task.name(),
                format!("line {number} is not JSON ({e}): {}", excerpt(text)),
            )),
        }
    })
}

/// The output line of one outcome: its result, or its error object (with the item's stderr,
/// and the panic message of a panic); what the item printed in the line with `capture`, on
/// stderr otherwise, labelled with its input line. With `envelope`, a result is
/// `{"result": ...}` (`{"ok": ...}` with `capture`), never the bare value.
fn result_line(outcome: JsonOutcome, capture: bool, envelope: bool) -> serde_json::Value {
    let JsonOutcome {
        index,
        result,
        captured,
        ..
    } = outcome;
    let captured = captured.unwrap_or_default();
    let failed = result.is_err();
    let mut line = match result {
        Ok(result) if capture => serde_json::json!({ "ok": result }),
        Ok(result) if envelope => serde_json::json!({ "result": result }),
        Ok(result) => result,
        Err(e) => error_json(&e),
    };
    if capture {
        line["stdout"] = String::from_utf8_lossy(&captured.stdout).into();
        line["stderr"] = String::from_utf8_lossy(&captured.stderr).into();
        return line;
    }
    terminal::item_output(index + 1, GuestStream::Stdout, &captured.stdout);
    if failed {
        if !captured.stderr.is_empty() {
            line["error"]["stderr"] = stderr_tail(&captured.stderr).into();
        }
    } else {
        terminal::item_output(index + 1, GuestStream::Stderr, &captured.stderr);
    }
    line
}

/// `--raw` needs an export of one `string` parameter: say so before reading any input.
fn check_raw(task: &Task) -> anyhow::Result<()> {
    match task.signature().params.as_slice() {
        [(_, wasmpool::WitType::String)] => Ok(()),
        [(_, element)] if task.is_batched() => Err(anyhow::anyhow!(
            "--raw passes each line as one string, but with --batch a line is an element of the list `{}` takes, of type {element}, not a string",
            task.name()
        )),
        _ => Err(anyhow::anyhow!(
            "--raw passes each line as the one string argument, but `{}` is not a function of one string",
            task.signature()
        )),
    }
}
