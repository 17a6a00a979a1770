//! One call at a time: apply, apply_async, map_async, submit, futures, as_completed, wait.

use std::time::{Duration, Instant};

use wasmpool::{ReturnWhen, TaskError, TaskFuture, as_completed, wait};
use wasmpool_artifacts::{FALLIBLE, POWER, SLEEP, SQUARE};

use crate::support::{block_on, pool, task};

#[test]
fn apply_and_apply_async_like_the_tutorial() {
    let pool = pool(2);
    let power = task(POWER, "power");
    let square = task(SQUARE, "square");
    let applied: i64 = pool.apply(&power, (10, 2)).unwrap();
    assert_eq!(applied, 100);
    let handle = pool.apply_async::<_, i64>(&power, (30, 2));
    assert_eq!(handle.result().unwrap(), 900);
    assert!(handle.done());
    assert_eq!(handle.successful(), Some(true));
    let async_map = pool.map_async::<_, i64>(&square, [6, 7, 8, 9, 10]);
    assert_eq!(async_map.result().unwrap(), [36, 49, 64, 81, 100]);
    assert!(async_map.done());
}

#[test]
fn timeouts_on_waits_leave_the_task_running() {
    let pool = pool(1);
    let sleep = task(SLEEP, "sleep");
    let handle = pool.apply_async::<_, u64>(&sleep, (300u32,));
    assert!(!handle.done());
    assert!(handle.result_timeout(Duration::from_millis(20)).is_none());
    let slept = handle
        .result_timeout(Duration::from_secs(30))
        .expect("done in time")
        .unwrap();
    assert!(slept >= 300, "slept {slept} ms");

    let batch = pool.map_async::<_, u64>(&sleep, [200u32, 200]);
    assert!(batch.result_timeout(Duration::from_millis(10)).is_none());
    assert_eq!(
        batch
            .result_timeout(Duration::from_secs(30))
            .unwrap()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn submit_and_as_completed_with_failures() {
    let pool = pool(4);
    let process_item = task(FALLIBLE, "process-item");
    let futures: Vec<TaskFuture<(u32, u32)>> = (0..20u32)
        .map(|i| pool.submit(&process_item, (i,)))
        .collect();
    let mut seen = Vec::new();
    let mut failed = 0;
    for future in as_completed(&futures) {
        match future.result() {
            Ok((item, square)) => {
                assert_eq!(square, item * item);
                seen.push(item);
            }
            Err(TaskError::Guest { message, .. }) => {
                assert!(
                    message.starts_with("processing failed for item"),
                    "{message}"
                );
                failed += 1;
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    // Items 3, 8, 13, 18 fail; the other 16 succeed, each reported once.
    assert_eq!(failed, 4);
    seen.sort_unstable();
    assert_eq!(seen, (0..20).filter(|i| i % 5 != 3).collect::<Vec<_>>());
}

#[test]
fn wait_first_completed_and_all_completed() {
    let pool = pool(2);
    let sleep = task(SLEEP, "sleep");
    let futures: Vec<TaskFuture<u64>> = [2000u32, 10]
        .iter()
        .map(|&ms| pool.submit(&sleep, (ms,)))
        .collect();
    let first = wait(&futures, ReturnWhen::FirstCompleted, None);
    assert_eq!(first.done.len(), 1);
    assert_eq!(first.not_done.len(), 1);
    assert!(futures[1].done() && !futures[0].done());
    let timed = wait(
        &futures,
        ReturnWhen::AllCompleted,
        Some(Duration::from_millis(10)),
    );
    assert_eq!(timed.not_done.len(), 1);
    let all = wait(&futures, ReturnWhen::AllCompleted, None);
    assert_eq!(all.done.len(), 2);
}

#[test]
fn futures_can_be_awaited() {
    let pool = pool(1);
    let square = task(SQUARE, "square");
    let a = pool.submit::<_, i64>(&square, (12,));
    let b = pool.submit::<_, i64>(&square, (13,));
    let sum = block_on(async { a.await.unwrap() + b.await.unwrap() });
    assert_eq!(sum, 144 + 169);
}

#[test]
fn a_queued_future_can_be_cancelled() {
    let pool = pool(1);
    let sleep = task(SLEEP, "sleep");
    let busy = pool.submit::<_, u64>(&sleep, (300u32,));
    let queued = pool.submit::<_, u64>(&sleep, (5000u32,));
    std::thread::sleep(Duration::from_millis(100));
    assert!(busy.running());
    assert!(!busy.cancel(), "a running task cannot be cancelled");
    assert!(queued.cancel());
    assert!(queued.cancelled());
    assert!(matches!(queued.result(), Err(TaskError::Cancelled { .. })));
    let start = Instant::now();
    busy.result().unwrap();
    // The cancelled 5 s task never ran: the worker is free again at once.
    let square = task(SQUARE, "square");
    assert_eq!(pool.apply::<_, i64>(&square, (3,)).unwrap(), 9);
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[test]
fn imap_unordered_yields_in_completion_order() {
    let pool = pool(2);
    let slow_square = task(SQUARE, "slow-square");
    // Item 0 sleeps longest: unordered, it comes last; ordered, first.
    let items = [(0i64, 600u32), (1, 10), (2, 10), (3, 10)];
    let pairs: Vec<(i64, u32)> = items.to_vec();
    let ordered: Vec<i64> = pool.starmap(&slow_square, &pairs).unwrap();
    assert_eq!(ordered, [0, 1, 4, 9]);
    let checker = slow_square.clone();
    let args = pairs
        .clone()
        .into_iter()
        .map(move |(x, millis)| checker.args_from_json(&serde_json::json!([x, millis])));
    let streamed: Vec<(usize, serde_json::Value)> = pool
        .imap_json(&slow_square, args, wasmpool::Order::Completion)
        .map(|outcome| (outcome.index, outcome.result.unwrap()))
        .collect();
    assert_eq!(
        streamed.last(),
        Some(&(0, serde_json::json!(0))),
        "the slow item finishes last: {streamed:?}"
    );
    assert_eq!(streamed.len(), 4);
}
