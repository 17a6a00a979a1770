//! Untrusted code, safely: limits and grants, each failure its own typed error, and the pool
//! going on after each one.
//! Run: `cargo run --release --example limits`

use std::time::Duration;

use wasmpool::{Grants, Limits, Module, Pool};
use wasmpool_artifacts::{HOSTILE, SQUARE};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = std::env::temp_dir().join("wasmpool-limits-example");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("input.txt"), "visible to the task")?;

    let pool = Pool::builder()
        .workers(2)
        .limits(
            Limits::new()
                .timeout(Duration::from_millis(500))
                .max_memory(64 << 20),
        )
        .grants(Grants::new().read_only_dir(&data, "/data"))
        .build()?;
    let hostile = Module::from_bytes(HOSTILE.wasm)?;
    let square = Module::from_bytes(SQUARE.wasm)?.task("square")?;

    let spin = hostile.task("spin")?;
    println!(
        "endless loop:    {}",
        pool.apply::<_, u32>(&spin, ()).unwrap_err()
    );
    let fuel_limited = spin.with_limits(Limits::new().fuel(10_000_000));
    println!(
        "fuel:            {}",
        pool.apply::<_, u32>(&fuel_limited, ()).unwrap_err()
    );
    let bomb = hostile.task("memory-bomb")?;
    println!(
        "memory bomb:     {}",
        pool.apply::<_, u64>(&bomb, ()).unwrap_err()
    );
    let read = hostile.task("read-file")?;
    println!(
        "/etc/passwd:     {}",
        pool.apply::<_, String>(&read, ("/etc/passwd",))
            .unwrap_err()
    );
    println!(
        "granted file:    {:?}",
        pool.apply::<_, String>(&read, ("/data/input.txt",))?
    );
    let write = hostile.task("write-file")?;
    println!(
        "read-only write: {}",
        pool.apply::<_, ()>(&write, ("/data/x", "no")).unwrap_err()
    );
    let env = hostile.task("read-env")?;
    println!(
        "environment:     {:?}",
        pool.apply::<_, Vec<(String, String)>>(&env, ())?
    );

    // After all that, the same pool still works.
    println!("square(12) =     {}", pool.apply::<_, i64>(&square, (12,))?);
    Ok(())
}
