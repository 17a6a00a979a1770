//! The tutorial's chunking: one item per round trip vs many.
//! Run: `cargo run --release --example chunking`

use std::time::Instant;

use wasmpool::{Module, Pool};
use wasmpool_artifacts::SQUARE;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let square = Module::from_bytes(SQUARE.wasm)?.task("square")?;
    let pool = Pool::builder().workers(4).build()?;
    let data: Vec<i64> = (0..10_000).collect();

    let start = Instant::now();
    let without: Vec<i64> = pool.map_chunked(&square, &data, 1)?;
    println!(
        "Without chunking: {:.3} seconds",
        start.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let with: Vec<i64> = pool.map_chunked(&square, &data, 100)?;
    println!(
        "With chunking (100): {:.3} seconds",
        start.elapsed().as_secs_f64()
    );

    // The default is Python's heuristic: ceil(len / (4 * workers)) items per chunk.
    let start = Instant::now();
    let default: Vec<i64> = pool.map(&square, &data)?;
    println!(
        "Default chunking: {:.3} seconds",
        start.elapsed().as_secs_f64()
    );

    assert!(without == with && with == default);
    Ok(())
}
