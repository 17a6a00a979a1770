//! close, join, terminate and drop: no worker process outlives its pool.

use std::time::{Duration, Instant};

use wasmpool::TaskError;
use wasmpool_artifacts::{SLEEP, SQUARE};

use crate::support::{pool, process_exists, task};

#[test]
fn dropping_a_pool_leaves_no_child_process() {
    let pool = pool(3);
    assert_eq!(
        pool.worker_pids().len(),
        1,
        "the first worker starts with the pool, the others when work comes for them"
    );
    // Six tasks of 100 ms, one per chunk: work for every slot.
    let sleep = task(SLEEP, "sleep");
    let _: Vec<u64> = pool.map_chunked(&sleep, [100u32; 6], 1).unwrap();
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|&pid| process_exists(pid)));
    drop(pool);
    // Reaped, not just killed: a zombie would still exist.
    assert!(pids.iter().all(|&pid| !process_exists(pid)), "{pids:?}");
}

#[test]
fn close_then_join_finishes_queued_work() {
    let pool = pool(2);
    let sleep = task(SLEEP, "sleep");
    let pids = pool.worker_pids();
    let batch = pool.map_async::<_, u64>(&sleep, [50u32; 6]);
    pool.close();
    let late = pool.apply_async::<_, u64>(&sleep, (1u32,));
    assert!(matches!(late.result(), Err(TaskError::PoolClosed { .. })));
    pool.join();
    assert!(batch.done());
    assert_eq!(batch.result().unwrap().len(), 6);
    assert!(pids.iter().all(|&pid| !process_exists(pid)));
}

#[test]
fn terminate_cancels_running_and_queued_tasks_at_once() {
    let pool = pool(2);
    let sleep = task(SLEEP, "sleep");
    let pids = pool.worker_pids();
    let handles: Vec<_> = (0..6)
        .map(|_| pool.submit::<_, u64>(&sleep, (10_000u32,)))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    pool.terminate();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "terminate took {:?}",
        start.elapsed()
    );
    for h in &handles {
        assert!(
            matches!(h.result(), Err(TaskError::Cancelled { .. })),
            "{:?}",
            h.result()
        );
    }
    assert!(pids.iter().all(|&pid| !process_exists(pid)));
}

#[test]
fn pools_and_tasks_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<wasmpool::Pool>();
    check::<wasmpool::Task>();
    check::<wasmpool::Module>();
    check::<wasmpool::TaskFuture<i64>>();
    check::<wasmpool::MapResult<i64>>();
}

#[test]
fn a_pool_can_be_shared_between_threads() {
    let pool = pool(2);
    let square = task(SQUARE, "square");
    std::thread::scope(|s| {
        for t in 0..4i64 {
            let (pool, square) = (&pool, &square);
            s.spawn(move || {
                let got: Vec<i64> = pool.map(square, (0..200).map(|x| x + t)).unwrap();
                assert_eq!(got, (0..200).map(|x| (x + t) * (x + t)).collect::<Vec<_>>());
            });
        }
    });
}

#[test]
fn max_tasks_per_worker_recycles_workers() {
    let pool = wasmpool::Pool::builder()
        .workers(1)
        .max_tasks_per_worker(3)
        .on_output(|_| {})
        .build()
        .unwrap();
    let square = task(SQUARE, "square");
    let mut pids = std::collections::BTreeSet::new();
    for x in 0..9i64 {
        pids.extend(pool.worker_pids());
        assert_eq!(pool.apply::<_, i64>(&square, (x,)).unwrap(), x * x);
    }
    // Nine tasks, three per worker: three workers, each replaced once it had run its three.
    assert_eq!(pids.len(), 3, "{pids:?}");
    let retired: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| !pool.worker_pids().contains(p))
        .collect();
    assert!(
        retired.iter().all(|&pid| !process_exists(pid)),
        "retired workers are reaped: {retired:?}"
    );
}

/// A pool of many slots given a few items starts a few workers, not one per slot.
#[test]
fn workers_start_as_work_needs_them() {
    let start = Instant::now();
    let pool = pool(64);
    let built = start.elapsed();
    let sleep = task(SLEEP, "sleep");
    let slept: Vec<u64> = pool.map_chunked(&sleep, [200u32; 3], 1).unwrap();
    assert_eq!(slept.len(), 3);
    let started = pool.worker_pids().len();
    assert!((1..=4).contains(&started), "{started} workers for 3 items");
    assert!(
        built < Duration::from_secs(5),
        "a pool of 64 slots started in {built:?}"
    );
}
