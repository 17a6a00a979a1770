//! `wasmpool exec PROGRAM`: a whole program run once per input line, in parallel, as
//! autograders and online judges run submissions; one JSON line per run with its exit code
//! and what it printed.

use clap::Args;
use serde_json::{Value as Json, json};
use wasmpool::{JsonOutcome, Task};

use crate::batch::{BatchArgs, ParseLine, Verdict, bad_input, excerpt, line_text};
use crate::builtin::load_module;
use crate::commands::run::error_json;
use crate::options::PoolArgs;

/// Run a whole program once per input line, in parallel, each run sandboxed.
///
/// PROGRAM is a `wasi:cli/run` component (what `cargo build --target wasm32-wasip2` makes of
/// a binary crate) or a WASI preview-1 command module (`_start`). By default each input line,
/// with its newline, is one run's stdin. With --args each line is one run's arguments instead
/// (a JSON array of strings, or else words split on whitespace), and its stdin is empty; with
/// --json each line is an object `{"args": [...], "stdin": "..."}` (both optional). ARGS after
/// `--` go first to every run. Every input line gets exactly one output line:
/// `{"exit": CODE, "stdout": "...", "stderr": "..."}`, or `{"error": {...}, "stdout": ...,
/// "stderr": ...}` for a run that did not finish (a trap, a timeout, a limit). The limits and
/// grants are those of any task: deny by default. A component can only exit with 0 or 1
/// (`wasi:cli/exit` knows no other code); a preview-1 module with any code. The exit code is 1
/// if any run failed or exited non-zero, 0 otherwise.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    printf '1 2 3\\n4 5\\n' | wasmpool exec builtin:program\n  \
    printf '[\"--exit\", \"0\"]\\n[\"--panic\"]\\n' | wasmpool exec builtin:program --args\n  \
    wasmpool exec submission.wasm -i tests.jsonl --json --timeout 2s --max-memory 256M -- --strict")]
pub(crate) struct ExecCommand {
    /// A command component or a preview-1 command module (.wasm or .wat), or builtin:NAME.
    program: String,
    /// Arguments every run gets first (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
    /// Each input line is one run's arguments (a JSON array of strings, or words split on
    /// whitespace), not its stdin.
    #[arg(long = "args", conflicts_with = "json")]
    line_args: bool,
    /// Each input line is an object `{"args": ["..."], "stdin": "..."}`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    batch: BatchArgs,
    #[command(flatten)]
    load: crate::options::LoadArgs,
    #[command(flatten)]
    pool: PoolArgs,
}

/// How an input line becomes a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineIs {
    /// The run's stdin (with its newline).
    Stdin,
    /// The run's arguments.
    Args,
    /// `{"args": [...], "stdin": "..."}`.
    Json,
}

impl ExecCommand {
    pub(crate) fn execute(self) -> anyhow::Result<i32> {
        // From here on a Ctrl-C is the run's, even before its pool is up.
        crate::interrupt::catch_early();
        let module = load_module(&self.program, &self.load, self.pool.limits())?;
        let program = module.program()?;
        let pool = self.pool.builder(0).build()?;
        let (program, objects) = self.pool.with_shared(&pool, program)?;
        let line_is = if self.json {
            LineIs::Json
        } else if self.line_args {
            LineIs::Args
        } else {
            LineIs::Stdin
        };
        let status = self.batch.batch("exec").run(
            &pool,
            &program,
            parser(&program, line_is, self.args),
            result_line,
        );
        objects.write_state()?;
        status
    }
}

/// How a line becomes a run's arguments and stdin, `fixed` arguments first.
fn parser(program: &Task, line_is: LineIs, fixed: Vec<String>) -> ParseLine {
    let program = program.clone();
    Box::new(move |line: &[u8], number: usize| {
        let bad = |why: String| bad_input(program.name(), format!("line {number} {why}"));
        let text = line_text(program.name(), line, number)?;
        let (args, stdin) = match line_is {
            LineIs::Stdin => (Vec::new(), format!("{text}\n")),
            LineIs::Args => (line_arguments(text), String::new()),
            LineIs::Json => {
                json_run(text).map_err(|why| bad(format!("{why}: {}", excerpt(line))))?
            }
        };
        let argv: Vec<String> = fixed.iter().cloned().chain(args).collect();
        program.args_from_json(&json!([argv, stdin]))
    })
}

/// A line of arguments: a JSON array of strings as it is, or else the line's words.
fn line_arguments(text: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(text) {
        Ok(args) => args,
        Err(_) => text.split_whitespace().map(str::to_string).collect(),
    }
}

/// A `--json` line: `{"args": [...], "stdin": "..."}`, both optional, nothing else.
fn json_run(text: &str) -> Result<(Vec<String>, String), String> {
    let value: Json = serde_json::from_str(text).map_err(|e| format!("is not JSON ({e})"))?;
    let Json::Object(fields) = value else {
        return Err("is not an object {\"args\": [...], \"stdin\": \"...\"}".into());
    };
    if let Some(other) = fields.keys().find(|k| *k != "args" && *k != "stdin") {
        return Err(format!(
            "has `{other}`, which is neither `args` nor `stdin`"
        ));
    }
    let args = match fields.get("args") {
        None => Vec::new(),
        Some(args) => serde_json::from_value(args.clone())
            .map_err(|_| "has `args` that is not an array of strings".to_string())?,
    };
    let stdin = match fields.get("stdin") {
        None => String::new(),
        Some(Json::String(stdin)) => stdin.clone(),
        Some(_) => return Err("has `stdin` that is not a string".into()),
    };
    Ok((args, stdin))
}

/// A run's line; a run that exited with a non-zero code is a failure of kind `exit`.
fn result_line(outcome: JsonOutcome) -> (Json, Verdict) {
    let JsonOutcome {
        result, captured, ..
    } = outcome;
    let captured = captured.unwrap_or_default();
    let (mut line, verdict) = match result {
        Ok(code) => {
            let verdict = match code.as_i64() {
                Some(0) => Verdict::Ok,
                _ => Verdict::Failed {
                    kind: "exit",
                    message: format!("exited with {code}"),
                },
            };
            (json!({ "exit": code }), verdict)
        }
        Err(e) => (error_json(&e), Verdict::Ok),
    };
    line["stdout"] = String::from_utf8_lossy(&captured.stdout).into();
    line["stderr"] = String::from_utf8_lossy(&captured.stderr).into();
    (line, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_of_arguments_is_json_or_words() {
        assert_eq!(line_arguments(r#"["a b", "c"]"#), ["a b", "c"]);
        assert_eq!(line_arguments("--exit 3"), ["--exit", "3"]);
        assert!(line_arguments("").is_empty());
    }

    #[test]
    fn a_json_run_names_only_args_and_stdin() {
        assert_eq!(
            json_run(r#"{"args": ["x"], "stdin": "1 2"}"#),
            Ok((vec!["x".to_string()], "1 2".to_string()))
        );
        assert_eq!(json_run("{}"), Ok((vec![], String::new())));
        assert!(json_run(r#"{"argv": []}"#).unwrap_err().contains("`argv`"));
        assert!(json_run(r#"{"args": "x"}"#).is_err());
        assert!(json_run("[1]").is_err());
    }
}
