//! The tutorial's pool sizing: one worker per core is the default for CPU-bound work.
//! Run: `cargo run --release --example pool_sizing`

use std::time::Instant;

use wasmpool::{Module, Pool};
use wasmpool_artifacts::PRIMES;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count = Module::from_bytes(PRIMES.wasm)?.task("count-primes-range")?;
    let ranges: Vec<(u32, u32)> = (0..64).map(|k| (k * 31_250, (k + 1) * 31_250)).collect();
    let cores = std::thread::available_parallelism()?.get();
    for workers in [1, cores] {
        let pool = Pool::builder().workers(workers).build()?;
        let start = Instant::now();
        let counts: Vec<u32> = pool.starmap(&count, &ranges)?;
        let total: u32 = counts.iter().sum();
        println!(
            "{workers} worker(s): {total} primes below 2,000,000 in {:.3} s",
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
