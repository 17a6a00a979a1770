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
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::{Grants, GuestOutput, Limits, Pool, PoolBuilder};

/// Run WebAssembly tasks in parallel, each sandboxed in wasmtime inside a worker process.
#[derive(Debug, Parser)]
#[command(name = "wasmpool", version, about, long_about = None)]
#[command(
    after_help = "Start with `wasmpool demo`, then `wasmpool tasks --export DIR` for tasks to try.\n\n\
                  Compiled code is cached in $WASMPOOL_CACHE_DIR (default: $XDG_CACHE_HOME/wasmpool \
                  or ~/.cache/wasmpool; `off` disables it)."
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
    /// List a module's exports with their WIT signatures, and its imports.
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
    /// Worker processes (default: one per available core; `run`: 1).
    #[arg(short = 'j', long = "workers", value_name = "N")]
    workers: Option<usize>,
    /// Items per round trip to a worker (default: 16 for `map`).
    #[arg(long, value_name = "N")]
    chunksize: Option<usize>,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

/// What each task may use and reach.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Sandbox (deny by default)")]
struct SandboxArgs {
    /// Wall-clock limit per task: `500ms`, `2s`, `1m` (default: none).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Instruction budget per task, in fuel units (about one per wasm instruction).
    #[arg(long, value_name = "UNITS")]
    fuel: Option<u64>,
    /// Cap on each linear memory of a task: `64M`, `1G`, bytes (default: 1G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Cap on a task's stdout, and on its stderr (default: 1M).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_output: Option<u64>,
    /// Cap on a task's result (default: 64M).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_result: Option<u64>,
    /// Grant read-write access to a host directory, seen as GUEST (default: the same path).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Grant read-only access to a host directory, seen as GUEST.
    #[arg(long = "ro-dir", value_name = "HOST[::GUEST]")]
    ro_dirs: Vec<String>,
    /// Set an environment variable the task can read.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Run a task again (up to N times) if its worker process dies under it.
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: u32,
}

impl PoolArgs {
    fn builder(&self, default_workers: usize) -> PoolBuilder {
        let mut builder = Pool::builder()
            .workers(self.workers.unwrap_or(default_workers))
            .on_output(print_guest_output);
        if let Some(n) = self.chunksize {
            builder = builder.chunksize(n).imap_chunksize(n);
        }
        self.sandbox.apply(builder)
    }
}

impl SandboxArgs {
    fn apply(&self, builder: PoolBuilder) -> PoolBuilder {
        let mut limits = Limits::new();
        limits.timeout = self.timeout;
        limits.fuel = self.fuel;
        limits.max_memory = self.max_memory;
        limits.max_output_bytes = self.max_output;
        limits.max_result_bytes = self.max_result;
        let mut grants = Grants::new();
        for (spec, read_only) in self
            .dirs
            .iter()
            .map(|d| (d, false))
            .chain(self.ro_dirs.iter().map(|d| (d, true)))
        {
            let (host, guest) = spec.split_once("::").unwrap_or((spec, spec));
            grants = if read_only {
                grants.read_only_dir(host, guest)
            } else {
                grants.dir(host, guest)
            };
        }
        for (key, value) in &self.env {
            grants = grants.env(key, value);
        }
        builder.limits(limits).grants(grants).retries(self.retries)
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 2s or 1m"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown time unit `{other}` (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 64M or 1G"))?;
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use K, M or G)")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// Runs `f` with Ctrl-C (SIGINT) and SIGTERM caught: on either, the pool is terminated
/// (queued tasks cancelled, workers killed and reaped) and `f` is told through the flag, so it
/// can print what finished. Returns `f`'s result and the signal, if one came. If `f` is stuck
/// (reading a terminal, say), the process exits on its own two seconds later.
fn with_interrupts<T>(
    pool: &Pool,
    f: impl FnOnce(&AtomicI32) -> T,
) -> anyhow::Result<(T, Option<i32>)> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    let caught = AtomicI32::new(0);
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            if let Some(signal) = signals.forever().next() {
                caught.store(signal, Ordering::SeqCst);
                pool.terminate();
                for _ in 0..200 {
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = writeln!(io::stderr(), "wasmpool: interrupted");
                std::process::exit(128 + signal);
            }
        });
        let result = f(&caught);
        done.store(true, Ordering::SeqCst);
        handle.close();
        result
    });
    let signal = caught.load(Ordering::SeqCst);
    Ok((result, (signal != 0).then_some(signal)))
}

/// A module path: a file, or `builtin:NAME` for a task embedded in the binary.
fn load_module(path: &str) -> Result<crate::Module, crate::Error> {
    match path.strip_prefix("builtin:") {
        Some(name) => match crate::builtin::get(name) {
            Some(task) => crate::Module::new(task.wasm.to_vec(), path.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("=x").is_err());
    }
}
