//! The tutorial's `Pipe`: a sender task writes messages into one end, a receiver task reads
//! them from the other until the sender closed its end.
//! Run: `cargo run --release --example pipe`

use wasmpool::{Grants, Module, Pool};
use wasmpool_artifacts::SHARED;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(2).build()?;
    // Two ends, granted by their names `conn.a` and `conn.b`.
    let (a, b) = pool.pipe("conn")?;
    let module = Module::from_bytes(SHARED.wasm)?;
    let sender = module
        .task("pipe-send")?
        .with_grants(Grants::new().shared(&a))?;
    let receiver = module
        .task("pipe-receive")?
        .with_grants(Grants::new().shared(&b))?;

    let received = pool.submit::<_, Vec<String>>(&receiver, ("conn.b",));
    pool.apply::<_, ()>(&sender, ("conn.a", ["Hello", "from", "the", "sender"]))?;
    println!("Received: {}", received.result()?.join(" "));
    Ok(())
}
