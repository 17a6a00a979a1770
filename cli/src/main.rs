//! The `wasmpool` command line: a front end over the library's public API, and nothing more.
//!
//! One file per verb under `commands/`; the options they share in [`options`]; the built-in
//! tasks the binary offers in [`builtin`]; Ctrl-C and SIGTERM in [`interrupt`]. Results go to
//! stdout (or `--output`), and only [`terminal`] writes to stderr: guest output, summaries,
//! warnings and errors. Exit codes: 0 success, 1 a task failed, 2 a usage or load error,
//! 128 + N interrupted by signal N.

mod batch;
mod builtin;
mod commands;
mod interrupt;
mod options;
mod progress;
mod shared_state;
mod summary;
mod terminal;

use clap::{CommandFactory, Parser, Subcommand};

use commands::{build, completions, demo, exec, inspect, map, new, run, tasks};

/// Run WebAssembly tasks in parallel, each sandboxed in wasmtime inside a worker process.
#[derive(Debug, Parser)]
#[command(name = "wasmpool", version, about, long_about = None)]
#[command(
    after_help = "Start with `wasmpool demo`, then `wasmpool tasks --export DIR` for tasks to try.\n\n\
                  Compiled code is cached in $WASMPOOL_CACHE_DIR (default: $XDG_CACHE_HOME/wasmpool \
                  or ~/.cache/wasmpool; `off` disables it)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Call one export once: `wasmpool run square.wasm square 7`.
    Run(run::RunCommand),
    /// Call one export for every JSON line of input, in parallel.
    Map(map::MapCommand),
    /// Run a whole program once per input line (its stdin or its arguments), in parallel.
    Exec(exec::ExecCommand),
    /// List a module's exports with their WIT signatures, and its imports.
    Inspect(inspect::InspectCommand),
    /// Run the built-in demo: the tutorial's pool example on wasm tasks, with timings.
    Demo(demo::DemoCommand),
    /// List the built-in tasks, or write them out as files to try the CLI on.
    Tasks(tasks::TasksCommand),
    /// Print a completion script for bash, zsh or fish.
    Completions(completions::CompletionsCommand),
    /// Make a task project (Rust, Python or JavaScript) that builds with one command.
    New(new::NewCommand),
    /// Build the task project in DIR and print the path of its component.
    Build(build::BuildCommand),
    /// Serve the worker protocol on stdin/stdout (started by a pool; for remote workers).
    #[command(hide = true)]
    Worker,
}

fn main() {
    let cli = Cli::parse();
    terminal::install_logger();
    let result = match cli.command {
        Command::Run(cmd) => cmd.execute(),
        Command::Map(cmd) => cmd.execute(),
        Command::Exec(cmd) => cmd.execute(),
        Command::Inspect(cmd) => cmd.execute(),
        Command::Demo(cmd) => cmd.execute(),
        Command::Tasks(cmd) => cmd.execute(),
        Command::Completions(cmd) => cmd.execute(Cli::command()),
        Command::New(cmd) => cmd.execute(),
        Command::Build(cmd) => cmd.execute(),
        Command::Worker => wasmpool::worker_main(),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) if terminal::is_broken_pipe(&e) => 0,
        Err(e) => {
            terminal::error(&e);
            2
        }
    };
    std::process::exit(code);
}
