//! The `wasmpool` command line: a thin layer over the library. Each subcommand lives in its
//! own file under `cli/`; only this layer prints. Results go to stdout, everything else
//! (guest output, progress, summaries, errors) to stderr, so output pipes cleanly.

mod demo;
mod inspect;
mod map;
mod run;
mod tasks;

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{GuestOutput, Pool, PoolBuilder};

/// Run WebAssembly tasks in parallel, each sandboxed in wasmtime inside a worker process.
#[derive(Debug, Parser)]
#[command(name = "wasmpool", version, about, long_about = None)]
#[command(
    after_help = "Start with `wasmpool demo`, then `wasmpool tasks --export DIR` for tasks to try."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Call one export once: `wasmpool run square.wasm square 7`.
    Run(run::RunCommand),
    /// Call one export for every JSON line of input, in parallel.
    Map(map::MapCommand),
    /// List a module's exports with their WIT signatures.
    Inspect(inspect::InspectCommand),
    /// Run the built-in demo: the tutorial's pool example on wasm tasks, with timings.
    Demo(demo::DemoCommand),
    /// List the built-in tasks, or write them out as files to try the CLI on.
    Tasks(tasks::TasksCommand),
    /// Serve the worker protocol on stdin/stdout (started by a pool; for remote workers).
    #[command(hide = true)]
    Worker,
}

/// Options shared by the commands that start a pool.
#[derive(Debug, Clone, Args)]
struct PoolArgs {
    /// Worker processes (default: one per available core).
    #[arg(short = 'j', long = "workers", value_name = "N")]
    workers: Option<usize>,
    /// Items per round trip to a worker (default: Python's heuristic for `map`).
    #[arg(long, value_name = "N")]
    chunksize: Option<usize>,
}

impl PoolArgs {
    fn builder(&self) -> PoolBuilder {
        let mut builder = Pool::builder()
            .workers(self.workers.unwrap_or(0))
            .on_output(print_guest_output);
        if let Some(n) = self.chunksize {
            builder = builder.chunksize(n).imap_chunksize(n);
        }
        builder
    }
}

/// A module path: a file, or `builtin:NAME` for a task embedded in the binary.
fn load_module(path: &str) -> Result<crate::Module, crate::Error> {
    match path.strip_prefix("builtin:") {
        Some(name) => match crate::builtin::get(name) {
            Some(task) => crate::Module::from_bytes(task.wasm),
            None => Err(crate::Error::Read {
                path: path.to_string(),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "no such built-in task (see `wasmpool tasks`)",
                ),
            }),
        },
        None => crate::Module::from_file(PathBuf::from(path)),
    }
}

/// Guest output goes to stderr, each line prefixed by its task.
fn print_guest_output(out: &GuestOutput<'_>) {
    let mut err = io::stderr().lock();
    let stream = match out.stream {
        crate::Stream::Stdout => "",
        crate::Stream::Stderr => " stderr",
    };
    for line in out.text.lines() {
        let _ = writeln!(err, "[task {}{stream}] {line}", out.task);
    }
}

/// Logs warnings and errors from the library (worker stderr, replaced workers) to stderr.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let _ = writeln!(io::stderr().lock(), "wasmpool: {}", record.args());
        }
    }

    fn flush(&self) {}
}

/// Whether an error is the reader of our stdout going away (`| head`): not a failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Parses the command line, runs the command, and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let _ = log::set_logger(&StderrLogger).map(|()| log::set_max_level(log::LevelFilter::Warn));
    let result = match cli.command {
        Command::Run(cmd) => cmd.execute(),
        Command::Map(cmd) => cmd.execute(),
        Command::Inspect(cmd) => cmd.execute(),
        Command::Demo(cmd) => cmd.execute(),
        Command::Tasks(cmd) => cmd.execute(),
        Command::Worker => crate::worker_main(),
    };
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            let _ = writeln!(io::stderr(), "wasmpool: error: {e:#}");
            2
        }
    }
}
