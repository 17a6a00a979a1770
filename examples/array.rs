//! A shared `Array`: two tasks count the residues of 1,000 numbers modulo 10 into one
//! histogram, each `add` atomic on its own.
//! Run: `cargo run --release --example array`

use wasmpool::{Grants, Module, Pool};
use wasmpool_artifacts::SHARED;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(2).build()?;
    let hist = pool.array("hist", 10)?;
    let histogram = Module::from_bytes(SHARED.wasm)?
        .task("histogram")?
        .with_grants(Grants::new().shared(&hist))?;
    let numbers: Vec<u32> = (0..1000).collect();
    let halves: Vec<_> = numbers
        .chunks(500)
        .map(|half| pool.submit::<_, u32>(&histogram, ("hist", half.to_vec())))
        .collect();
    for half in halves {
        half.result()?;
    }
    println!("Histogram: {:?}", hist.to_vec());
    Ok(())
}
