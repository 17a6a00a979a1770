//! `wasmpool run MODULE FUNC [ARG...]`: one call, its result as JSON on stdout.

use std::io::Write;

use clap::Args;
use wasmpool::TaskError;

use crate::builtin::load_module;
use crate::options::PoolArgs;
use crate::terminal;

/// Call one export once and print its result as JSON.
///
/// Each ARG is JSON (`7`, `"text"`, `[1,2]`, `{"name":"Ada"}`); an ARG that is not valid JSON
/// is taken as a string, so `wasmpool run hello.wasm hello world` works.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wasmpool run builtin:square square 7\n  wasmpool run builtin:power power 2 10\n  wasmpool run builtin:words word-count 'the cat and the hat'"
)]
pub(crate) struct RunCommand {
    /// A .wasm component or core module, a .wat file, or builtin:NAME.
    module: String,
    /// The export to call (see `wasmpool inspect`).
    func: String,
    /// The arguments, one per parameter, each as JSON.
    #[arg(allow_negative_numbers = true)]
    args: Vec<String>,
    #[command(flatten)]
    load: crate::options::LoadArgs,
    #[command(flatten)]
    pool: PoolArgs,
}

/// A command-line argument as JSON: itself if it parses, else a string.
fn arg_json(arg: &str) -> serde_json::Value {
    serde_json::from_str(arg).unwrap_or_else(|_| serde_json::Value::String(arg.to_string()))
}

/// A failed task as the JSON object the command line prints on its line.
pub(crate) fn error_json(e: &TaskError) -> serde_json::Value {
    let mut obj = serde_json::json!({ "kind": e.kind(), "message": e.to_string() });
    if let TaskError::Guest { value, .. } = e {
        obj["value"] = value.clone();
    }
    if let TaskError::Trap {
        backtrace: Some(bt),
        ..
    } = e
    {
        obj["backtrace"] = serde_json::Value::String(bt.clone());
    }
    serde_json::json!({ "error": obj })
}

impl RunCommand {
    pub(crate) fn execute(self) -> anyhow::Result<i32> {
        let module = load_module(&self.module, &self.load, self.pool.limits())?;
        let task = module.task(&self.func)?;
        let pool = self.pool.builder(1).build()?;
        let args = serde_json::Value::Array(self.args.iter().map(|a| arg_json(a)).collect());
        let outcome = task
            .args_from_json(&args)
            .and_then(|args| pool.apply_json(&task, args));
        match outcome {
            Ok(result) => {
                writeln!(std::io::stdout().lock(), "{result}")?;
                Ok(0)
            }
            Err(e) => {
                terminal::task_failed(&e);
                Ok(1)
            }
        }
    }
}
