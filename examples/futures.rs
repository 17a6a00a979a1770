//! The tutorial's concurrent.futures example: an executor-style map with a timing, and the
//! advanced pattern: submit, as_completed, and failures handled per task.
//! Run: `cargo run --release --example futures`

use std::collections::HashMap;
use std::time::Instant;

use wasmpool::{Module, Pool, TaskFuture, as_completed};
use wasmpool_artifacts::{FALLIBLE, SQUARE};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(4).build()?;

    // executor.map(process_item, data): slow-square sleeps 100 ms, then squares.
    let process_item = Module::from_bytes(SQUARE.wasm)?.task("slow-square")?;
    let start = Instant::now();
    let results: Vec<i64> = pool.starmap(&process_item, (0..10).map(|i| (i, 100)))?;
    println!("Results: {results:?}");
    println!("Time taken: {:.2} seconds", start.elapsed().as_secs_f64());

    // submit + as_completed: process-item(i) takes a variable time and fails for some items.
    let process_item = Module::from_bytes(FALLIBLE.wasm)?.task("process-item")?;
    let future_to_item: HashMap<TaskFuture<(u32, u32)>, u32> = (0..20u32)
        .map(|item| (pool.submit(&process_item, (item,)), item))
        .collect();
    let futures: Vec<_> = future_to_item.keys().cloned().collect();
    for future in as_completed(&futures) {
        let item = future_to_item[&future];
        match future.result() {
            Ok((_, square)) => println!("Item {item} processed: {square}"),
            Err(e) => println!("Item {item} generated an exception: {e}"),
        }
    }
    Ok(())
}
