//! The tutorial's "Map vs. Apply": map, apply, apply_async and map_async on one pool.
//! Run: `cargo run --release --example map_apply`

use wasmpool::{Module, Pool};
use wasmpool_artifacts::{POWER, SQUARE};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let square = Module::from_bytes(SQUARE.wasm)?.task("square")?;
    // multiply(x, y) is power's cousin here: power(x, 2) for the demo's apply calls.
    let power = Module::from_bytes(POWER.wasm)?.task("power")?;
    let pool = Pool::builder().workers(4).build()?;

    // map: the same function over many inputs, results in order.
    let result_map: Vec<i64> = pool.map(&square, [1, 2, 3, 4, 5])?;
    println!("Map result: {result_map:?}");

    // apply: one call, arguments spread over the parameters.
    let result_apply: i64 = pool.apply(&power, (10, 2))?;
    println!("Apply result: {result_apply}");

    // apply_async: returns at once; get() blocks for the value.
    let async_result = pool.apply_async::<_, i64>(&power, (30, 2));
    println!("Async result: {}", async_result.result()?);

    // map_async: the non-blocking map.
    let async_map = pool.map_async::<_, i64>(&square, [6, 7, 8, 9, 10]);
    println!("Async map result: {:?}", async_map.result()?);
    Ok(())
}
