//! The tutorial's process pool: squares with simulated work, sequential vs a pool of 4.
//! Run: `cargo run --release --example pool_map`

use std::time::Instant;

use wasmpool::{Module, Pool};
use wasmpool_artifacts::SQUARE;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `slow-square(x, millis)` sleeps `millis` ms (simulated work), then returns x * x.
    let calculate_square = Module::from_bytes(SQUARE.wasm)?.task("slow-square")?;
    let numbers: Vec<(i64, u32)> = (0..20).map(|n| (n, 100)).collect();

    let sequential = Pool::builder().workers(1).build()?;
    let start = Instant::now();
    let sequential_results: Vec<i64> = sequential.starmap(&calculate_square, &numbers)?;
    let sequential_time = start.elapsed().as_secs_f64();

    let pool = Pool::builder().workers(4).build()?;
    let start = Instant::now();
    let parallel_results: Vec<i64> = pool.starmap(&calculate_square, &numbers)?;
    let parallel_time = start.elapsed().as_secs_f64();

    assert_eq!(sequential_results, parallel_results);
    println!("Sequential time: {sequential_time:.2} seconds");
    println!("Parallel time: {parallel_time:.2} seconds");
    println!("Speedup: {:.2}x", sequential_time / parallel_time);
    Ok(())
}
