//! `wasmpool run MODULE FUNC [ARG...]`: one call, its result as JSON on stdout.

use std::io::Write;

use clap::Args;
use wasmpool::TaskError;

use crate::builtin::load_module;
use crate::options::SandboxArgs;
use crate::terminal;

/// Call one export once and print its result as JSON.
///
/// Each ARG is JSON (`7`, `"text"`, `[1,2]`, `{"name":"Ada"}`); an ARG that is not valid JSON
/// is taken as a string, so `wasmpool run hello.wasm hello world` works. Several ARGs are one
/// per parameter; one ARG is taken as a line of `map` is (the argument itself for one
/// parameter; an array spread over several, or an object that names them). With --raw, the
/// one ARG is the string argument as it is. What the task prints goes to stderr; if it fails,
/// its error (and, for a Rust panic, the panic message and the guest's own frames) too, and
/// the exit code is 1.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    wasmpool run builtin:square square 7\n  \
    wasmpool run builtin:power power 2 10\n  \
    wasmpool run builtin:power power '{\"base\": 2, \"exponent\": 10}'\n  \
    wasmpool run builtin:words word-count --raw '[not json] just text'\n  \
    wasmpool run untrusted.wasm main --timeout 2s --max-memory 64M --ro-dir ./data")]
pub(crate) struct RunCommand {
    /// A .wasm component or core module, a .wat file, or builtin:NAME.
    module: String,
    /// The export to call (see `wasmpool inspect`).
    func: String,
    /// The arguments: one per parameter, each as JSON; or one, as a line of `map`.
    #[arg(allow_negative_numbers = true)]
    args: Vec<String>,
    /// The one ARG is the export's one string argument, as it is (not JSON).
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    load: crate::options::LoadArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
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
        backtrace, panic, ..
    } = e
    {
        if let Some(panic) = panic {
            obj["panic"] = serde_json::Value::String(panic.clone());
        }
        if let Some(bt) = backtrace {
            obj["backtrace"] = serde_json::Value::String(bt.clone());
        }
    }
    serde_json::json!({ "error": obj })
}

impl RunCommand {
    pub(crate) fn execute(self) -> anyhow::Result<i32> {
        // The worker starts while the module loads (hashed, its code read from the cache):
        // a large module's run then waits for one, not for the sum.
        let (module, pool) = std::thread::scope(|scope| {
            let pool = scope.spawn(|| self.sandbox.one_worker().build());
            let module = load_module(&self.module, &self.load, self.sandbox.limits());
            (module, pool.join())
        });
        let module = module?;
        let pool = match pool {
            Ok(pool) => pool?,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let (task, objects) = self.sandbox.with_shared(&pool, module.task(&self.func)?)?;
        let args = match (self.raw, self.args.as_slice()) {
            (true, [text]) => task.arg_from_json(&serde_json::Value::String(text.clone())),
            (true, _) => anyhow::bail!(
                "--raw takes exactly one ARG, the string argument ({} given)",
                self.args.len()
            ),
            // One ARG, as a line of `map`.
            (false, [one]) if task.signature().params.len() == 1 => {
                task.arg_from_json(&arg_json(one))
            }
            (false, [one]) => task.args_from_json(&arg_json(one)),
            (false, args) => task.args_from_json(&serde_json::Value::Array(
                args.iter().map(|a| arg_json(a)).collect(),
            )),
        };
        let outcome = args.and_then(|args| pool.apply_json(&task, args));
        objects.write_state()?;
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
