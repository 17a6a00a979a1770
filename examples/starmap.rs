//! The tutorial's starmap: each tuple is spread over the task's parameters.
//! Run: `cargo run --release --example starmap`

use wasmpool::{Module, Pool};
use wasmpool_artifacts::POWER;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let calculate_power = Module::from_bytes(POWER.wasm)?.task("power")?;
    let input_data = [(2, 3), (3, 2), (4, 4), (5, 2)];
    let pool = Pool::builder().workers(4).build()?;
    let results: Vec<i64> = pool.starmap(&calculate_power, input_data)?;
    println!("{results:?}"); // [8, 9, 256, 25]
    assert_eq!(results, [8, 9, 256, 25]);
    Ok(())
}
