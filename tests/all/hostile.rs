//! Hostile guests: each gets its exact error, and the same pool then runs a normal task.

use std::time::{Duration, Instant};

use wasmpool::{Grants, Limits, Pool, TaskError};
use wasmpool_artifacts::{HOSTILE, SQUARE};

use crate::support::{assert_no_network, task};

fn pool_with(limits: Limits) -> Pool {
    Pool::builder()
        .workers(1)
        .limits(limits)
        .on_output(|_| {})
        .build()
        .unwrap()
}

/// The pool still works: a normal task on the same pool returns the right value.
fn still_works(pool: &Pool) {
    let square = task(SQUARE, "square");
    assert_eq!(pool.apply::<_, i64>(&square, (9,)).unwrap(), 81);
}

#[test]
fn an_endless_loop_times_out_and_the_worker_goes_on() {
    let pool = pool_with(Limits::new().timeout(Duration::from_millis(200)));
    let pid = pool.worker_pids();
    let start = Instant::now();
    let err = pool
        .apply::<_, u32>(&task(HOSTILE, "spin"), ())
        .unwrap_err();
    assert_eq!(
        err,
        TaskError::Timeout {
            func: "spin".into(),
            limit: Duration::from_millis(200)
        }
    );
    assert_eq!(err.to_string(), "`spin` exceeded its 200ms timeout");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    still_works(&pool);
    assert_eq!(
        pool.worker_pids(),
        pid,
        "epoch interruption keeps the same worker"
    );
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let pool = pool_with(Limits::new().fuel(5_000_000));
    let err = pool
        .apply::<_, u32>(&task(HOSTILE, "spin"), ())
        .unwrap_err();
    assert_eq!(
        err,
        TaskError::OutOfFuel {
            func: "spin".into(),
            limit: 5_000_000
        }
    );
    still_works(&pool);
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let pool = pool_with(Limits::new().max_memory(64 << 20));
    let err = pool
        .apply::<_, u64>(&task(HOSTILE, "memory-bomb"), ())
        .unwrap_err();
    assert_eq!(
        err,
        TaskError::MemoryLimit {
            func: "memory-bomb".into(),
            limit: 64 << 20
        }
    );
    assert!(err.to_string().contains("memory limit of 64 MiB"), "{err}");
    still_works(&pool);
}

#[test]
fn a_stack_overflow_is_its_own_error() {
    let pool = Pool::builder()
        .workers(1)
        .max_wasm_stack(256 << 10)
        .on_output(|_| {})
        .build()
        .unwrap();
    let err = pool
        .apply::<_, u64>(&task(HOSTILE, "stack-overflow"), (1u64 << 40,))
        .unwrap_err();
    assert_eq!(
        err,
        TaskError::StackOverflow {
            func: "stack-overflow".into(),
            limit: 256 << 10
        }
    );
    still_works(&pool);
}

#[test]
fn a_huge_result_is_refused() {
    let pool = pool_with(Limits::new().max_result_bytes(1 << 20));
    let ok: String = pool
        .apply(&task(HOSTILE, "huge-result"), (1000u64,))
        .unwrap();
    assert_eq!(ok.len(), 1000);
    let err = pool
        .apply::<_, String>(&task(HOSTILE, "huge-result"), (8u64 << 20,))
        .unwrap_err();
    let TaskError::ResultTooLarge { limit, size, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(limit, 1 << 20);
    assert!(size >= 8 << 20, "{size}");
    still_works(&pool);
}

#[test]
fn a_stdout_flood_hits_the_output_limit() {
    let pool = pool_with(Limits::new().max_output_bytes(64 << 10));
    let ok: u64 = pool
        .apply(&task(HOSTILE, "stdout-flood"), (1000u64,))
        .unwrap();
    assert!(ok >= 1000);
    let err = pool
        .apply::<_, u64>(&task(HOSTILE, "stdout-flood"), (10u64 << 20,))
        .unwrap_err();
    assert_eq!(
        err,
        TaskError::OutputLimit {
            func: "stdout-flood".into(),
            limit: 64 << 10
        }
    );
    still_works(&pool);
}

#[test]
fn no_files_environment_arguments_stdin_or_network_by_default() {
    // SAFETY: tests in this binary do not read this variable concurrently.
    unsafe { std::env::set_var("WASMPOOL_TEST_SECRET", "hunter2") };
    let pool = pool_with(Limits::new());
    let err = pool
        .apply::<_, String>(&task(HOSTILE, "read-file"), ("/etc/passwd",))
        .unwrap_err();
    assert!(matches!(err, TaskError::Guest { .. }), "{err}");
    let err = pool
        .apply::<_, String>(&task(HOSTILE, "read-file"), ("../../../../etc/passwd",))
        .unwrap_err();
    assert!(matches!(err, TaskError::Guest { .. }), "{err}");
    let env: Vec<(String, String)> = pool.apply(&task(HOSTILE, "read-env"), ()).unwrap();
    assert!(env.is_empty(), "{env:?}");
    let args: Vec<String> = pool.apply(&task(HOSTILE, "read-args"), ()).unwrap();
    assert!(args.is_empty(), "{args:?}");
    let stdin: String = pool.apply(&task(HOSTILE, "read-stdin"), ()).unwrap();
    assert_eq!(stdin, "");
    assert_no_network(&pool);
    still_works(&pool);
}

#[test]
fn unreachable_is_a_trap() {
    let pool = pool_with(Limits::new());
    let err = pool
        .apply::<_, u32>(&task(HOSTILE, "unreachable"), ())
        .unwrap_err();
    let TaskError::Trap { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("unreachable"), "{message}");
    still_works(&pool);
}

#[test]
fn a_task_stuck_in_a_host_call_is_killed_and_its_worker_replaced() {
    let pool = pool_with(Limits::new().timeout(Duration::from_millis(200)));
    let before = pool.worker_pids();
    let start = Instant::now();
    let err = pool
        .apply::<_, u64>(&task(HOSTILE, "block"), (30_000u64,))
        .unwrap_err();
    assert_eq!(
        err,
        TaskError::Timeout {
            func: "block".into(),
            limit: Duration::from_millis(200)
        }
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    still_works(&pool);
    assert_ne!(pool.worker_pids(), before, "the stuck worker was replaced");
    assert!(!crate::support::process_exists(before[0]));
}

#[test]
fn per_task_limits_override_the_pool() {
    let pool = pool_with(Limits::new().timeout(Duration::from_secs(30)));
    let quick = task(HOSTILE, "spin").with_limits(Limits::new().timeout(Duration::from_millis(50)));
    let err = pool.apply::<_, u32>(&quick, ()).unwrap_err();
    assert_eq!(
        err,
        TaskError::Timeout {
            func: "spin".into(),
            limit: Duration::from_millis(50)
        }
    );
}

#[test]
fn granted_directories_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hi there").unwrap();
    let read_only = Pool::builder()
        .workers(1)
        .grants(
            Grants::new()
                .read_only_dir(dir.path(), "/data")
                .env("MODE", "fast"),
        )
        .on_output(|_| {})
        .build()
        .unwrap();
    let text: String = read_only
        .apply(&task(HOSTILE, "read-file"), ("/data/hello.txt",))
        .unwrap();
    assert_eq!(text, "hi there");
    let names: Vec<String> = read_only
        .apply(&task(HOSTILE, "list-dir"), ("/data",))
        .unwrap();
    assert_eq!(names, ["hello.txt"]);
    let env: Vec<(String, String)> = read_only.apply(&task(HOSTILE, "read-env"), ()).unwrap();
    assert_eq!(env, [("MODE".to_string(), "fast".to_string())]);
    let err = read_only
        .apply::<_, ()>(&task(HOSTILE, "write-file"), ("/data/new.txt", "x"))
        .unwrap_err();
    assert!(matches!(err, TaskError::Guest { .. }), "{err}");
    assert!(
        !dir.path().join("new.txt").exists(),
        "a read-only grant is enforced"
    );
    let err = read_only
        .apply::<_, String>(&task(HOSTILE, "read-file"), ("/data/../../etc/passwd",))
        .unwrap_err();
    assert!(
        matches!(err, TaskError::Guest { .. }),
        "no escape from the granted directory: {err}"
    );

    let writable = task(HOSTILE, "write-file")
        .with_grants(Grants::new().dir(dir.path(), "/out"))
        .unwrap();
    read_only
        .apply::<_, ()>(&writable, ("/out/new.txt", "written by wasm"))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("new.txt")).unwrap(),
        "written by wasm"
    );

    let err = Pool::builder()
        .grants(Grants::new().dir("/no/such/dir", "/x"))
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("/no/such/dir is not a directory"),
        "{err}"
    );
}

/// Results past the 128 MiB wasmtime lets a guest copy out by default follow the result limit:
/// a large limit lets them through, the default one refuses them as too large, not as a trap.
#[test]
fn large_results_follow_the_result_limit() {
    let roomy = pool_with(Limits::new().max_result_bytes(512 << 20));
    let big: String = roomy
        .apply(&task(HOSTILE, "huge-result"), (200u64 << 20,))
        .unwrap();
    assert_eq!(big.len(), 200 << 20);
    drop(big);
    let default = pool_with(Limits::new());
    let err = default
        .apply::<_, String>(&task(HOSTILE, "huge-result"), (150u64 << 20,))
        .unwrap_err();
    assert!(
        matches!(err, TaskError::ResultTooLarge { size, .. } if size >= 150 << 20),
        "{err:?}"
    );
    still_works(&default);
}

#[test]
fn a_table_past_its_limit_is_its_own_error() {
    let wat = r#"(module
        (table 1 funcref)
        (func (export "grow") (param i32) (result i32)
            ref.null func local.get 0 table.grow 0))"#;
    let grow = wasmpool::Module::from_bytes(wat)
        .unwrap()
        .task("grow")
        .unwrap()
        .with_limits(Limits::new().max_table_elements(10));
    let pool = pool_with(Limits::new());
    assert_eq!(pool.apply::<_, i32>(&grow, (5,)).unwrap(), 1);
    let err = pool.apply::<_, i32>(&grow, (100,)).unwrap_err();
    assert_eq!(
        err,
        TaskError::TableLimit {
            func: "grow".into(),
            limit: 10
        }
    );
    assert_eq!(
        err.to_string(),
        "`grow` exceeded its table limit of 10 elements"
    );
}

#[test]
fn no_room_for_output_is_the_output_limit() {
    let pool = pool_with(Limits::new().max_output_bytes(0));
    let err = pool
        .apply::<_, String>(&task(wasmpool_artifacts::HELLO, "hello"), ("world",))
        .unwrap_err();
    assert_eq!(
        err,
        TaskError::OutputLimit {
            func: "hello".into(),
            limit: 0
        }
    );
}

/// A link a guest could not follow out of its grant would still point there for every other
/// program on the host: a guest makes no symbolic links.
#[test]
fn a_guest_cannot_make_symbolic_links() {
    let dir = tempfile::tempdir().unwrap();
    let grant = dir.path().join("grant");
    std::fs::create_dir(&grant).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "hunter2").unwrap();
    let pool = Pool::builder()
        .workers(1)
        .grants(Grants::new().dir(&grant, "/out"))
        .on_output(|_| {})
        .build()
        .unwrap();
    let make = task(HOSTILE, "make-symlink");
    for target in ["../secret.txt", "/etc/passwd", "inside.txt"] {
        let err = pool
            .apply::<_, ()>(&make, (target, "/out/evil"))
            .unwrap_err();
        assert!(matches!(err, TaskError::Guest { .. }), "{target}: {err}");
        assert!(
            std::fs::symlink_metadata(grant.join("evil")).is_err(),
            "a link to {target} was made"
        );
    }
    // The grant itself still works.
    let write = task(HOSTILE, "write-file");
    pool.apply::<_, ()>(&write, ("/out/inside.txt", "ok"))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(grant.join("inside.txt")).unwrap(),
        "ok"
    );
}

#[test]
fn exports_holding_resources_are_refused_as_tasks() {
    let module = wasmpool::Module::from_bytes(HOSTILE.wasm).unwrap();
    let listed: Vec<String> = module.exports().iter().map(|s| s.name.clone()).collect();
    for name in ["handles#make", "handles#[method]counter.get"] {
        assert!(listed.iter().any(|n| n.ends_with(name)), "{listed:?}");
        let err = module.task(name).unwrap_err();
        assert!(
            matches!(&err, wasmpool::Error::UnsupportedExport { what, .. } if what == "resource"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("cannot cross a process boundary"),
            "{message}"
        );
        assert!(
            !message.chars().any(|c| c.is_ascii_digit()),
            "no addresses or handles in: {message}"
        );
    }
    // Its other exports are tasks as before.
    assert!(module.task("spin").is_ok());
}
