//! A `Manager().dict()`: tasks set entries and count in a shared dictionary, which they reach
//! as the `wasi:keyvalue` bucket of its name; the host reads it back.
//! Run: `cargo run --release --example dict`

use wasmpool::{Grants, Module, Pool};
use wasmpool_artifacts::SHARED;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(2).build()?;
    let d = pool.dict("d")?;
    let module = Module::from_bytes(SHARED.wasm)?;
    let grants = Grants::new().shared(&d);
    let set = module.task("dict-set")?.with_grants(grants.clone())?;
    let count = module.task("dict-count")?.with_grants(grants)?;

    pool.apply::<_, ()>(&set, ("d", "greeting", "hello"))?;
    let counting: Vec<_> = (0..2)
        .map(|_| pool.submit::<_, u64>(&count, ("d", "visits", 50u32)))
        .collect();
    for c in counting {
        c.result()?;
    }
    for (key, value) in d.entries() {
        println!("{key} = {}", String::from_utf8_lossy(&value));
    }
    Ok(())
}
