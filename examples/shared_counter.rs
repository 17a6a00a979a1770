//! The tutorial's shared counter: two tasks, in two worker processes, each add 1 to a shared
//! `Value` 100,000 times under its lock (Python's `with counter.get_lock():`).
//! Run: `cargo run --release --example shared_counter`

use wasmpool::{Grants, Module, Pool};
use wasmpool_artifacts::SHARED;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(2).build()?;
    // A shared integer with initial value 0; tasks reach it only under a granted name.
    let counter = pool.value("counter", 0)?;
    let increment = Module::from_bytes(SHARED.wasm)?
        .task("own-lock-increment")?
        .with_grants(Grants::new().shared(&counter))?;
    // Two tasks that increment it, at the same time.
    let p1 = pool.submit::<_, i64>(&increment, ("counter", 100_000u32));
    let p2 = pool.submit::<_, i64>(&increment, ("counter", 100_000u32));
    p1.result()?;
    p2.result()?;
    println!("Final counter value: {}", counter.get());
    assert_eq!(counter.get(), 200_000);
    Ok(())
}
