//! The tutorial's termination handling: wait with a timeout, then close and join, or
//! terminate. Here the wait times out on purpose, and terminate ends the workers at once.
//! Run: `cargo run --release --example termination`

use std::time::{Duration, Instant};

use wasmpool::{Module, Pool, TaskError};
use wasmpool_artifacts::SLEEP;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let worker = Module::from_bytes(SLEEP.wasm)?.task("sleep")?;
    let pool = Pool::builder().workers(4).build()?;

    // Eight long tasks (10 s each); wait for them at most 1 s.
    let results = pool.map_async::<_, u64>(&worker, [10_000u32; 8]);
    match results.result_timeout(Duration::from_secs(1)) {
        Some(Ok(values)) => {
            println!("finished: {values:?}");
            pool.close();
            pool.join();
        }
        Some(Err(e)) => {
            println!("Error: {e}");
            pool.terminate();
        }
        None => {
            println!("Still running after 1 s: terminating");
            let start = Instant::now();
            pool.terminate(); // kills the workers, cancels running and queued tasks
            println!("Terminated in {:.3} s", start.elapsed().as_secs_f64());
            let cancelled = results
                .outcomes()
                .iter()
                .filter(|r| matches!(r, Err(TaskError::Cancelled { .. })))
                .count();
            println!("{cancelled} tasks cancelled");
        }
    }
    Ok(())
}
