//! Compiled code that workers map instead of receiving a copy each (`host/src/shared_code.rs`):
//! the code reaches every worker as one file, runs, and opens nothing new in the worker.
//!
//! Every module's code goes so to a worker the host started itself (whatever its size: see
//! `WorkerCommand::share_code_above`); these pools say it explicitly.

use wasmpool::{Limits, Module, Pool, TaskError, WorkerCommand};
use wasmpool_artifacts::{ARITH, HOSTILE, SQUARE};

use crate::support::{assert_no_network, run_alone_with_env, task};
use crate::walls::assert_only_its_own_descriptors;

/// A pool of `workers` whose workers get every module's code as a descriptor, however small.
fn sharing_pool(workers: usize, limits: Limits) -> Pool {
    let command = WorkerCommand::current_exe().unwrap().share_code_above(0);
    Pool::builder()
        .workers(workers)
        .chunksize(1)
        .limits(limits)
        .worker_command(command)
        .on_output(|_| {})
        .build()
        .unwrap()
}

/// The files of compiled code mapped into a worker: cache entries, or the sealed memfds of
/// modules compiled without a cache (each file once).
fn mapped_code(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut files: Vec<String> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|file| file.ends_with(".cwasm") || file.starts_with("/memfd:wasmpool-code"))
        .map(str::to_string)
        .collect();
    files.sort();
    files.dedup();
    files
}

#[test]
fn a_component_reaches_several_workers_as_one_mapped_file_and_runs() {
    let pool = sharing_pool(3, Limits::new());
    let slow_square = task(SQUARE, "slow-square");
    // Items slow enough (20 ms) that each of the three workers gets some.
    let items: Vec<(i64, u32)> = (0..12).map(|x| (x, 20)).collect();
    let squares: Vec<i64> = pool.starmap(&slow_square, &items).unwrap();
    assert_eq!(squares, (0..12).map(|x| x * x).collect::<Vec<i64>>());
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 3, "{pids:?}");
    let mut files = Vec::new();
    for pid in pids {
        let mapped = mapped_code(pid);
        assert_eq!(mapped.len(), 1, "worker {pid} maps its code: {mapped:?}");
        assert_eq!(assert_only_its_own_descriptors(pid).len(), 1);
        files.extend(mapped);
    }
    files.sort();
    files.dedup();
    assert_eq!(files.len(), 1, "one file for all the workers: {files:?}");
    // The same pool then runs a task whose code comes the same way, on the same workers.
    let square = task(SQUARE, "square");
    assert_eq!(pool.apply::<_, i64>(&square, (-7,)).unwrap(), 49);
}

#[test]
fn a_core_module_and_its_other_engine_variants_come_mapped_too() {
    // A timeout and a fuel limit each need code of their own, compiled when first used.
    let plain = sharing_pool(1, Limits::new());
    let add = Module::from_bytes(ARITH.wasm).unwrap().task("add").unwrap();
    assert_eq!(plain.apply::<_, i32>(&add, (2, 3)).unwrap(), 5);
    let fuel = add.clone().with_limits(Limits::new().fuel(1_000_000));
    assert_eq!(plain.apply::<_, i32>(&fuel, (4, 5)).unwrap(), 9);
    let pid = plain.worker_pids()[0];
    assert_eq!(mapped_code(pid).len(), 2, "{:?}", mapped_code(pid));
    assert_eq!(assert_only_its_own_descriptors(pid).len(), 2);
}

/// What a hostile guest tries, on a worker that holds its code as a descriptor: no files
/// (not even through the descriptor's `/proc` link, which only its own loading may use), no
/// network, nothing inherited; and a limit still fires and the worker goes on.
#[test]
fn a_worker_holding_mapped_code_reaches_nothing_more() {
    let pool = sharing_pool(1, Limits::new());
    let read_file = task(HOSTILE, "read-file");
    for path in ["/etc/passwd", "../../../../etc/passwd", "/proc/self/fd/3"] {
        let err = pool.apply::<_, String>(&read_file, (path,)).unwrap_err();
        assert!(matches!(err, TaskError::Guest { .. }), "{path}: {err}");
    }
    assert_no_network(&pool);
    let err = pool
        .apply::<_, u32>(&task(HOSTILE, "unreachable"), ())
        .unwrap_err();
    assert!(matches!(err, TaskError::Trap { .. }), "{err}");
    let pid = pool.worker_pids()[0];
    let code = assert_only_its_own_descriptors(pid);
    assert!(
        !code.is_empty(),
        "the hostile guest's code came as a descriptor"
    );
    assert_eq!(
        pool.apply::<_, i64>(&task(SQUARE, "square"), (9,)).unwrap(),
        81
    );
}

/// A worker told to take code of any size down its pipe (as one behind a launcher does) maps
/// no code file, holds no code descriptor, and runs the same.
#[test]
fn code_can_still_go_down_the_pipe() {
    let command = WorkerCommand::current_exe()
        .unwrap()
        .share_code_above(usize::MAX);
    let pool = Pool::builder()
        .workers(1)
        .worker_command(command)
        .on_output(|_| {})
        .build()
        .unwrap();
    assert_eq!(
        pool.apply::<_, i64>(&task(SQUARE, "square"), (5,)).unwrap(),
        25
    );
    let add = Module::from_bytes(ARITH.wasm).unwrap().task("add").unwrap();
    assert_eq!(pool.apply::<_, i32>(&add, (2, 3)).unwrap(), 5);
    let pid = pool.worker_pids()[0];
    assert_eq!(mapped_code(pid), Vec::<String>::new());
    assert_eq!(assert_only_its_own_descriptors(pid), Vec::<String>::new());
}

/// Without a cache, the code is kept in a sealed memfd, which the workers map: checked in a
/// process of this test binary's own, started with the cache turned off (the environment is
/// set by the parent when it starts the process, never in a running test binary).
#[test]
fn without_a_cache_workers_map_a_sealed_memfd() {
    let test = "shared_code::workers_of_a_host_without_a_cache";
    run_alone_with_env(test, ("WASMPOOL_CACHE_DIR", "off"));
}

#[test]
#[ignore = "run by without_a_cache_workers_map_a_sealed_memfd, in a process of its own"]
fn workers_of_a_host_without_a_cache() {
    assert_eq!(wasmpool::cache_dir(), None, "the cache is off");
    let pool = sharing_pool(2, Limits::new());
    let slow_square = task(SQUARE, "slow-square");
    let items: Vec<(i64, u32)> = (0..8).map(|x| (x, 20)).collect();
    let squares: Vec<i64> = pool.starmap(&slow_square, &items).unwrap();
    assert_eq!(squares, (0..8).map(|x| x * x).collect::<Vec<i64>>());
    for pid in pool.worker_pids() {
        let mapped = mapped_code(pid);
        assert_eq!(mapped.len(), 1, "{mapped:?}");
        assert!(mapped[0].starts_with("/memfd:wasmpool-code"), "{mapped:?}");
        assert_eq!(assert_only_its_own_descriptors(pid).len(), 1);
    }
}
