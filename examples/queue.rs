//! The tutorial's producer and consumer, joined by a `Queue`: the producer puts ten numbers,
//! the consumer takes them until the queue is closed and empty.
//! Run: `cargo run --release --example queue`

use wasmpool::{Grants, Module, Pool};
use wasmpool_artifacts::SHARED;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(2).build()?;
    let queue = pool.queue("items")?;
    let module = Module::from_bytes(SHARED.wasm)?;
    let grants = Grants::new().shared(&queue);
    let producer = module.task("produce")?.with_grants(grants.clone())?;
    let consumer = module.task("consume-all")?.with_grants(grants)?;

    let consumed = pool.submit::<_, Vec<i64>>(&consumer, ("items",));
    pool.apply::<_, ()>(&producer, ("items", 1i64, 10u32))?;
    println!("Produced: 1..=10");
    // No more puts: the consumer drains what is left, then sees `closed`.
    queue.close();
    for item in consumed.result()? {
        println!("Consumed: {item}");
    }
    Ok(())
}
