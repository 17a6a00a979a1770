//! `wasmpool demo`: the tutorial's pool example, on wasm tasks built into the binary, so a new
//! user sees wasmpool work with no files of their own.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;
use wasmpool::{Module, Pool, PoolBuilder, TaskError};
use wasmpool_artifacts::{PRIMES, SQUARE, TRAP};

/// Run the tutorial's pool example on built-in wasm tasks, timed sequentially and in parallel.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  wasmpool demo\n  wasmpool demo --items 8 -j 2")]
pub(crate) struct DemoCommand {
    /// How many numbers to square (each square simulates 100 ms of work).
    #[arg(long, default_value_t = 20, value_name = "N")]
    items: usize,
    /// Worker processes for the parallel runs (default: 4, as in the tutorial).
    #[arg(short = 'j', long = "workers", default_value_t = 4, value_name = "N")]
    workers: usize,
}

/// The prime-counting job of the benchmarks: pi(2,000,000) in 64 ranges.
const PRIME_LIMIT: u32 = 2_000_000;
const PRIME_RANGES: u32 = 64;
const PRIMES_BELOW_LIMIT: u32 = 148_933;

impl DemoCommand {
    pub(crate) fn execute(self) -> anyhow::Result<i32> {
        let mut out = std::io::stdout().lock();
        // One item per round trip, so that the uneven tasks spread evenly over the workers.
        let quiet = |b: PoolBuilder| b.chunksize(1).on_output(|_| {});
        writeln!(
            out,
            "wasmpool demo: WebAssembly tasks, each in a fresh sandbox inside a worker process.\n"
        )?;

        // 1. The tutorial's example: squares with simulated work, sequential then parallel.
        let slow_square = Module::from_bytes(SQUARE.wasm)?.task("slow-square")?;
        let numbers: Vec<(i64, u32)> = (0..self.items as i64).map(|n| (n, 100)).collect();
        writeln!(
            out,
            "1. slow-square over {} numbers, 100 ms of simulated work each",
            self.items
        )?;
        writeln!(
            out,
            "   (each pool runs a warm-up first, so that compiling the task in every worker is not timed)"
        )?;
        let warm_up: Vec<(i64, u32)> = (0..4 * self.workers as i64).map(|n| (n, 0)).collect();
        let sequential_pool = quiet(Pool::builder().workers(1)).build()?;
        let _: Vec<i64> = sequential_pool.starmap(&slow_square, &warm_up)?;
        let t = Instant::now();
        let sequential: Vec<i64> = sequential_pool.starmap(&slow_square, &numbers)?;
        let sequential_time = t.elapsed();
        drop(sequential_pool);
        let pool = quiet(Pool::builder().workers(self.workers)).build()?;
        let _: Vec<i64> = pool.starmap(&slow_square, &warm_up)?;
        let t = Instant::now();
        let parallel: Vec<i64> = pool.starmap(&slow_square, &numbers)?;
        let parallel_time = t.elapsed();
        let expected: Vec<i64> = (0..self.items as i64).map(|n| n * n).collect();
        anyhow::ensure!(
            sequential == expected && parallel == expected,
            "wrong squares: {parallel:?}"
        );
        writeln!(out, "   sequential (1 worker):  {}", secs(sequential_time))?;
        writeln!(
            out,
            "   parallel ({} workers):   {}   speed-up {:.2}x",
            self.workers,
            secs(parallel_time),
            ratio(sequential_time, parallel_time)
        )?;
        writeln!(out, "   results: {}\n", preview(&parallel))?;

        // 2. CPU-bound work: the prime-count kernel over 64 ranges, 1 worker vs one per core.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let count = Module::from_bytes(PRIMES.wasm)?.task("count-primes-range")?;
        let step = PRIME_LIMIT / PRIME_RANGES;
        let ranges: Vec<(u32, u32)> = (0..PRIME_RANGES)
            .map(|k| (k * step, (k + 1) * step))
            .collect();
        writeln!(
            out,
            "2. counting primes below {PRIME_LIMIT} in {PRIME_RANGES} ranges (CPU-bound)"
        )?;
        let one = quiet(Pool::builder().workers(1)).build()?;
        let _: Vec<u32> = one.starmap(&count, &ranges)?;
        let t = Instant::now();
        let counts_one: Vec<u32> = one.starmap(&count, &ranges)?;
        let one_time = t.elapsed();
        drop(one);
        let all = quiet(Pool::builder().workers(cores)).build()?;
        let _: Vec<u32> = all.starmap(&count, &ranges)?;
        let t = Instant::now();
        let counts: Vec<u32> = all.starmap(&count, &ranges)?;
        let all_time = t.elapsed();
        let total: u32 = counts.iter().sum();
        anyhow::ensure!(
            counts == counts_one && total == PRIMES_BELOW_LIMIT,
            "wrong prime count {total}"
        );
        writeln!(out, "   1 worker:    {}", secs(one_time))?;
        writeln!(
            out,
            "   {cores} worker{}:   {}   speed-up {:.2}x   ({total} primes)\n",
            if cores == 1 { "" } else { "s" },
            secs(all_time),
            ratio(one_time, all_time)
        )?;

        // 3. Failures stay contained: one task traps, the others return, the pool goes on.
        let maybe_crash = Module::from_bytes(TRAP.wasm)?.task("maybe-crash")?;
        writeln!(
            out,
            "3. maybe-crash over 0..15: item 5 executes `unreachable`"
        )?;
        let outcomes = pool.map_async::<_, u32>(&maybe_crash, 0..15u32).outcomes();
        let ok = outcomes.iter().filter(|o| o.is_ok()).count();
        writeln!(out, "   {ok} results, {} error:", outcomes.len() - ok)?;
        for (i, outcome) in outcomes.iter().enumerate() {
            if let Err(e @ TaskError::Trap { .. }) = outcome {
                writeln!(out, "   item {i}: {e}")?;
            }
        }
        let after: u32 = pool.apply(&maybe_crash, (7u32,))?;
        writeln!(
            out,
            "   and the same pool goes on: maybe-crash(7) = {after}"
        )?;
        Ok(0)
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn ratio(slow: Duration, fast: Duration) -> f64 {
    slow.as_secs_f64() / fast.as_secs_f64().max(1e-9)
}

fn preview(values: &[i64]) -> String {
    if values.len() <= 8 {
        return format!("{values:?}");
    }
    let head: Vec<String> = values[..5].iter().map(ToString::to_string).collect();
    format!("[{}, ..., {}]", head.join(", "), values[values.len() - 1])
}
