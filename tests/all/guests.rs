//! One smoke test per guest of `guest-tasks/`, named after it: every export is there with the
//! signature `wit/tasks.wit` gives it, and a call of each kind of export returns what the guest
//! is written to return, through the JSON front-end API (`args_from_json`, `apply_json`). The
//! other modules test the features these guests exist for; this one makes sure that no guest
//! goes untested: `foreach_guest!` names every guest, and a guest without a test here does not
//! compile.

use serde_json::{Value as Json, json};
use wasmpool::{Module, Pool, TaskError};
use wasmpool_artifacts::Guest;

use crate::support::pool;

macro_rules! assert_tested {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
wasmpool_artifacts::foreach_guest!(assert_tested);

/// The guest's module, after checking that it exports exactly `signatures`.
fn exports(guest: Guest, signatures: &[&str]) -> Module {
    let module = Module::from_bytes_named(guest.wasm, format!("guest {}", guest.name))
        .unwrap_or_else(|e| panic!("{} does not load: {e}", guest.name));
    let listed: Vec<String> = module.exports().iter().map(ToString::to_string).collect();
    assert_eq!(listed, signatures, "the exports of {}", guest.name);
    module
}

/// `func(args)` through the JSON API: its result as JSON, or its error.
fn call(pool: &Pool, module: &Module, func: &str, args: Json) -> Result<Json, TaskError> {
    let task = module.task(func).unwrap();
    task.args_from_json(&args)
        .and_then(|args| pool.apply_json(&task, args))
}

#[test]
fn square() {
    let module = exports(
        wasmpool_artifacts::SQUARE,
        &[
            "square: func(x: s64) -> s64",
            "slow-square: func(x: s64, millis: u32) -> s64",
            "square-many: func(xs: list<s64>) -> list<s64>",
        ],
    );
    let pool = pool(1);
    assert_eq!(call(&pool, &module, "square", json!([-12])), Ok(json!(144)));
    assert_eq!(
        call(&pool, &module, "square-many", json!([[1, -2, 3]])),
        Ok(json!([1, 4, 9]))
    );
    let overflow = call(&pool, &module, "square-many", json!([[1, i64::MAX]]));
    assert!(
        matches!(overflow, Err(TaskError::Trap { .. })),
        "{overflow:?}"
    );
    assert_eq!(
        call(&pool, &module, "slow-square", json!([3, 1])),
        Ok(json!(9))
    );
    let overflow = call(&pool, &module, "square", json!([i64::MAX]));
    assert!(
        matches!(overflow, Err(TaskError::Trap { .. })),
        "{overflow:?}"
    );
}

/// The point of `pure`: a component with no imports, where `square` (std) imports WASI.
#[test]
fn pure() {
    let module = exports(wasmpool_artifacts::PURE, &["square: func(x: s64) -> s64"]);
    assert_eq!(module.imports(), &[] as &[String]);
    let with_std = Module::from_bytes(wasmpool_artifacts::SQUARE.wasm).unwrap();
    assert!(
        with_std
            .imports()
            .iter()
            .any(|name| name.starts_with("wasi:")),
        "{:?}",
        with_std.imports()
    );
    let pool = pool(1);
    assert_eq!(call(&pool, &module, "square", json!(9)), Ok(json!(81)));
}

#[test]
fn power() {
    let module = exports(
        wasmpool_artifacts::POWER,
        &["power: func(base: s64, exponent: u32) -> s64"],
    );
    let pool = pool(1);
    assert_eq!(
        call(&pool, &module, "power", json!([2, 10])),
        Ok(json!(1024))
    );
    let overflow = call(&pool, &module, "power", json!([10, 40]));
    assert!(
        matches!(overflow, Err(TaskError::Trap { .. })),
        "{overflow:?}"
    );
}

#[test]
fn primes() {
    let module = exports(
        wasmpool_artifacts::PRIMES,
        &["count-primes-range: func(lo: u32, hi: u32) -> u32"],
    );
    let pool = pool(1);
    // pi(100) = 25, as `cpu_kernels.md` defines the kernel.
    assert_eq!(
        call(&pool, &module, "count-primes-range", json!([0, 100])),
        Ok(json!(25))
    );
}

#[test]
fn shared() {
    let module = Module::from_bytes(wasmpool_artifacts::SHARED.wasm).unwrap();
    let names: Vec<&str> = module.exports().iter().map(|s| s.name.as_str()).collect();
    for name in [
        "locked-increment",
        "produce",
        "pipe-send",
        "dict-set",
        "open-value",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let pool = pool(1);
    let value = pool.value("v", 1).unwrap();
    let add = module
        .task("atomic-add")
        .unwrap()
        .with_grants(wasmpool::Grants::new().shared(&value))
        .unwrap();
    assert_eq!(pool.apply::<_, i64>(&add, ("v", 2u32)).unwrap(), 3);
}

#[test]
fn sleep() {
    let module = exports(
        wasmpool_artifacts::SLEEP,
        &["sleep: func(millis: u32) -> u64"],
    );
    let pool = pool(1);
    let slept = call(&pool, &module, "sleep", json!(20)).unwrap();
    assert!(slept.as_u64().unwrap() >= 20, "{slept}");
}

#[test]
fn words() {
    let module = exports(
        wasmpool_artifacts::WORDS,
        &[
            "word-count: func(text: string) -> list<record { word: string, count: u32 }>",
            "count-words: func(text: string) -> u32",
            "count-words-many: func(texts: list<string>) -> list<u32>",
        ],
    );
    let pool = pool(1);
    assert_eq!(
        call(&pool, &module, "word-count", json!("b a b")),
        Ok(json!([{"word": "b", "count": 2}, {"word": "a", "count": 1}]))
    );
    assert_eq!(
        call(&pool, &module, "count-words", json!("one two three")),
        Ok(json!(3))
    );
    assert_eq!(
        call(
            &pool,
            &module,
            "count-words-many",
            json!([["a b", "", "c"]])
        ),
        Ok(json!([2, 0, 1]))
    );
}

#[test]
fn records() {
    let module = Module::from_bytes(wasmpool_artifacts::RECORDS.wasm).unwrap();
    let names: Vec<&str> = module.exports().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["describe", "area", "grant", "first-char", "minmax"]);
    let pool = pool(1);
    assert_eq!(
        call(&pool, &module, "area", json!({"rectangle": [2.0, 3.0]})),
        Ok(json!(6.0))
    );
    assert_eq!(
        call(&pool, &module, "first-char", json!("λx")),
        Ok(json!("λ"))
    );
    assert_eq!(
        call(&pool, &module, "first-char", json!("")),
        Ok(Json::Null)
    );
    assert_eq!(
        call(&pool, &module, "minmax", json!([[3.0, -1.0, 2.0]])),
        Ok(json!([-1.0, 3.0]))
    );
    assert_eq!(
        call(&pool, &module, "grant", json!([["read"], ["write"]])),
        Ok(json!(["read", "write"]))
    );
}

#[test]
fn fallible() {
    let module = exports(
        wasmpool_artifacts::FALLIBLE,
        &[
            "parse-int: func(text: string) -> result<s64, string>",
            "process-item: func(item: u32) -> result<tuple<u32, u32>, string>",
        ],
    );
    let pool = pool(1);
    assert_eq!(
        call(&pool, &module, "parse-int", json!("-42")),
        Ok(json!(-42))
    );
    let err = call(&pool, &module, "parse-int", json!("forty")).unwrap_err();
    assert!(matches!(err, TaskError::Guest { .. }), "{err:?}");
}

#[test]
fn trap() {
    let module = exports(
        wasmpool_artifacts::TRAP,
        &[
            "maybe-crash: func(x: u32) -> u32",
            "panic: func(message: string) -> u32",
            "divide: func(a: u32, b: u32) -> u32",
        ],
    );
    let pool = pool(1);
    assert_eq!(call(&pool, &module, "maybe-crash", json!(4)), Ok(json!(16)));
    for (func, args) in [
        ("maybe-crash", json!(5)),
        ("panic", json!("boom")),
        ("divide", json!([1, 0])),
    ] {
        let err = call(&pool, &module, func, args).unwrap_err();
        assert!(matches!(err, TaskError::Trap { .. }), "{func}: {err:?}");
    }
    assert_eq!(call(&pool, &module, "divide", json!([9, 3])), Ok(json!(3)));
}

#[test]
fn hello() {
    let module = exports(
        wasmpool_artifacts::HELLO,
        &["hello: func(name: string) -> string"],
    );
    let pool = pool(1);
    assert_eq!(
        call(&pool, &module, "hello", json!("Ada")),
        Ok(json!("hello, Ada!"))
    );
}

#[test]
fn hostile() {
    let module = Module::from_bytes(wasmpool_artifacts::HOSTILE.wasm).unwrap();
    let names: Vec<&str> = module.exports().iter().map(|s| s.name.as_str()).collect();
    for name in [
        "spin",
        "memory-bomb",
        "stack-overflow",
        "huge-result",
        "stdout-flood",
        "read-file",
        "write-file",
        "list-dir",
        "read-env",
        "read-args",
        "open-socket",
        "read-stdin",
        "unreachable",
        "block",
        "drop-last",
        "spin-on-negative",
    ] {
        assert!(names.contains(&name), "hostile lacks {name}: {names:?}");
    }
    // What it does is for `hostile.rs`; here, that it runs: an empty environment, no args.
    let pool = pool(1);
    assert_eq!(call(&pool, &module, "read-env", json!([])), Ok(json!([])));
    assert_eq!(call(&pool, &module, "read-args", json!([])), Ok(json!([])));
    assert_eq!(
        call(&pool, &module, "drop-last", json!([[1, 2, 3]])),
        Ok(json!([1, 2]))
    );
}

#[test]
fn arith() {
    let module = exports(
        wasmpool_artifacts::ARITH,
        &[
            "add: func(p0: s32, p1: s32) -> s32",
            "mul64: func(p0: s64, p1: s64) -> s64",
            "square: func(p0: s64) -> s64",
            "fdiv: func(p0: f64, p1: f64) -> f64",
            "half: func(p0: f32) -> f32",
            "spin: func()",
            "boom: func() -> s32",
        ],
    );
    let pool = pool(1);
    assert_eq!(call(&pool, &module, "add", json!([2, 3])), Ok(json!(5)));
    assert_eq!(
        call(&pool, &module, "mul64", json!([1_i64 << 40, 4])),
        Ok(json!(1_i64 << 42))
    );
    assert_eq!(call(&pool, &module, "half", json!(3.0)), Ok(json!(1.5)));
    assert_eq!(call(&pool, &module, "square", json!(-12)), Ok(json!(144)));
    let err = call(&pool, &module, "boom", json!([])).unwrap_err();
    assert!(matches!(err, TaskError::Trap { .. }), "{err:?}");
}

#[test]
fn program() {
    let module = Module::from_bytes_named(wasmpool_artifacts::PROGRAM.wasm, "guest program")
        .expect("program loads");
    let listed: Vec<String> = module.exports().iter().map(ToString::to_string).collect();
    assert!(
        listed
            .iter()
            .any(|sig| sig.starts_with("wasi:cli/run@") && sig.ends_with("#run: func() -> result")),
        "{listed:?}"
    );
    let program = module.program().expect("a program");
    let pool = pool(1);
    let code = program
        .args_from_json(&json!([[], "1 2 3"]))
        .and_then(|args| pool.apply_json(&program, args));
    assert_eq!(code, Ok(json!(0)));
}
