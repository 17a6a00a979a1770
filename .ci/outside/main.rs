//! A program outside the workspace, built by `.ci/run` against the library as `cargo package`
//! packages it (no guest sources, no wasm target, no build script): it loads a module from
//! WebAssembly text, maps over it with real worker processes (this program is its own
//! worker), calls it through the JSON API, and checks every result.

use wasmpool::{Module, Pool, TaskError};

fn main() {
    let wat = r#"(module
        (func (export "double") (param i64) (result i64) local.get 0 i64.const 2 i64.mul)
        (func (export "boom") (result i32) unreachable))"#;
    let module = Module::from_bytes(wat).expect("the module loads");
    let double = module.task("double").expect("it exports double");
    let pool = Pool::builder().workers(2).build().expect("the workers start");
    let doubled: Vec<i64> = pool.map(&double, 0..10_000_i64).expect("the map runs");
    assert!(doubled.iter().enumerate().all(|(i, &d)| d == 2 * i as i64));
    let args = double.args_from_json(&serde_json::json!(21)).expect("21 fits an s64");
    assert_eq!(pool.apply_json(&double, args), Ok(serde_json::json!(42)));
    let boom = module.task("boom").expect("it exports boom");
    let trapped = pool.apply::<_, i32>(&boom, ());
    assert!(matches!(trapped, Err(TaskError::Trap { .. })), "{trapped:?}");
    println!(
        "outside the workspace: {} results on {} workers, a trap reported as one",
        doubled.len(),
        pool.workers()
    );
}
