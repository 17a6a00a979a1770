//! Batch exports (`Task::batched`, `Pool::map_batched`, `Pool::imap_batched`): each chunk one
//! call of an export that takes a list and returns a list, each item still its own outcome.

use wasmpool::{Error, Limits, Pool, Task, TaskError};
use wasmpool_artifacts::{HOSTILE, SQUARE};

use crate::support::{pool, task};

fn square_many() -> Task {
    task(SQUARE, "square-many")
}

/// An element whose square overflows s64: its call traps.
const TOO_BIG: i64 = 4_000_000_000;

#[test]
fn map_batched_gives_what_map_gives() {
    let pool = pool(2);
    let items: Vec<i64> = (-50_000..50_000).collect();
    let batched: Vec<i64> = pool
        .map_batched(&square_many(), items.iter().copied())
        .unwrap();
    let one_by_one: Vec<i64> = pool
        .map(
            &task(SQUARE, "square").with_instance_reuse(),
            items.iter().copied(),
        )
        .unwrap();
    assert_eq!(batched.len(), 100_000);
    assert_eq!(batched, one_by_one);
    // The streams, and chunks of a chosen size, give the same.
    let streamed: Vec<i64> = pool
        .imap_batched(&square_many(), items.iter().copied())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(streamed, one_by_one);
    let batched_task = square_many().batched().unwrap();
    let chunked: Vec<i64> = pool
        .map_chunked(&batched_task, items.iter().copied(), 777)
        .unwrap();
    assert_eq!(chunked, one_by_one);
    let mut unordered: Vec<i64> = pool
        .imap_unordered(&batched_task, items.iter().copied())
        .collect::<Result<_, _>>()
        .unwrap();
    unordered.sort_unstable();
    let mut sorted = one_by_one.clone();
    sorted.sort_unstable();
    assert_eq!(unordered, sorted);
}

#[test]
fn a_failing_item_fails_alone_with_the_error_of_its_own_call() {
    let pool = pool(2);
    let batched = square_many().batched().unwrap();
    // What the bad item's own call says: its panic, its backtrace.
    let alone = pool.apply::<_, i64>(&batched, (TOO_BIG,)).unwrap_err();
    let TaskError::Trap { panic, .. } = &alone else {
        panic!("{alone:?}")
    };
    assert!(
        panic
            .as_deref()
            .unwrap()
            .starts_with("square overflows s64"),
        "{panic:?}"
    );
    // Among 10,000, in one chunk (and in the pool's own chunks): it alone fails, so.
    let bad = [3_217, 9_999];
    let items: Vec<i64> = (0..10_000)
        .map(|i| if bad.contains(&i) { -TOO_BIG } else { i })
        .collect();
    for chunksize in [Some(10_000), None] {
        let outcomes = match chunksize {
            Some(n) => {
                let fixed = Pool::builder()
                    .workers(2)
                    .chunksize(n)
                    .on_output(|_| {})
                    .build()
                    .unwrap();
                fixed
                    .map_async::<_, i64>(&batched, items.iter().copied())
                    .outcomes()
            }
            None => pool
                .imap_batched::<_, i64>(&square_many(), items.iter().copied())
                .collect(),
        };
        assert_eq!(outcomes.len(), 10_000);
        for (i, outcome) in outcomes.iter().enumerate() {
            if bad.contains(&(i as i64)) {
                assert_eq!(outcome.as_ref().unwrap_err(), &alone, "item {i}");
            } else {
                assert_eq!(outcome, &Ok((i * i) as i64), "item {i}");
            }
        }
    }
    // `map_batched` gives the first error in input order, as `map` does.
    let first = pool.map_batched::<_, i64>(&square_many(), items.iter().copied());
    assert_eq!(first.unwrap_err(), alone);
}

#[test]
fn a_result_list_of_the_wrong_length_fails_every_item_of_its_call() {
    let pool = pool(2);
    let drop_last = task(HOSTILE, "drop-last").batched().unwrap();
    let outcomes = pool
        .map_chunked::<_, i64>(&drop_last, 0..10_i64, 5)
        .unwrap_err();
    assert_eq!(
        outcomes,
        TaskError::BatchLength {
            func: "drop-last".into(),
            expected: 5,
            got: 4,
        }
    );
    assert!(
        outcomes.to_string().contains("expected 5 results, got 4"),
        "{outcomes}"
    );
    assert_eq!(outcomes.kind(), "batch-length");
    // Every item of the call, not only the last.
    let all = pool.map_async::<_, i64>(&drop_last, 0..3_i64).outcomes();
    assert_eq!(all.len(), 3);
    assert!(
        all.iter()
            .all(|o| matches!(o, Err(TaskError::BatchLength { .. }))),
        "{all:?}"
    );
}

#[test]
fn an_export_of_another_shape_is_refused() {
    let refused = |task: &Task| match task.batched() {
        Err(Error::NotBatchable { why, .. }) => why,
        other => panic!("{other:?}"),
    };
    let why = refused(&task(SQUARE, "square"));
    assert!(
        why.contains("parameter `x` is of type s64, not a list"),
        "{why}"
    );
    let why = refused(&task(SQUARE, "slow-square"));
    assert!(why.contains("takes 2 parameters"), "{why}");
    let why = refused(&task(wasmpool_artifacts::RECORDS, "minmax"));
    assert!(why.contains("returns option<tuple<f64, f64>>"), "{why}");
    let why = refused(&task(wasmpool_artifacts::ARITH, "mul64"));
    assert!(why.contains("core module"), "{why}");
    let program = wasmpool::Module::from_bytes(wasmpool_artifacts::PROGRAM.wasm)
        .unwrap()
        .program()
        .unwrap();
    assert!(refused(&program).contains("program"));
    // Through the pool: every item's bad input, nothing run.
    let pool = pool(1);
    let square = task(SQUARE, "square");
    let err = pool.map_batched::<_, i64>(&square, 0..3_i64).unwrap_err();
    let TaskError::BadInput { detail, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(detail.contains("cannot be mapped in batches"), "{detail}");
    let outcomes: Vec<Result<i64, TaskError>> = pool.imap_batched(&square, 0..3_i64).collect();
    assert_eq!(outcomes, vec![Err(err.clone()), Err(err.clone()), Err(err)]);
}

#[test]
fn items_are_checked_against_the_element_type() {
    let batched = square_many().batched().unwrap();
    assert_eq!(
        batched.signature().to_string(),
        "square-many: func(xs: s64) -> s64"
    );
    assert!(batched.is_batched() && batched.batched().unwrap().is_batched());
    assert_eq!(
        batched
            .arg_from_json(&serde_json::json!(3))
            .unwrap()
            .values()
            .len(),
        1
    );
    let err = batched.arg_from_json(&serde_json::json!([3])).unwrap_err();
    assert!(err.to_string().contains("expected s64"), "{err}");
    // Arguments checked for the list export are not the batched task's, nor the reverse.
    let pool = pool(1);
    let list_args = square_many()
        .arg_from_json(&serde_json::json!([1, 2]))
        .unwrap();
    let err = pool.apply_json(&batched, list_args).unwrap_err();
    assert!(matches!(err, TaskError::BadInput { .. }), "{err:?}");
    // A single submission is a list of one.
    assert_eq!(pool.apply::<_, i64>(&batched, (-7,)), Ok(49));
    let futures: Vec<_> = (0..20_i64)
        .map(|i| pool.submit::<_, i64>(&batched, (i,)))
        .collect();
    for (i, future) in futures.iter().enumerate() {
        assert_eq!(future.result(), Ok((i * i) as i64));
    }
}

/// A limit bounds each list call: a list that runs out of fuel is split until its parts fit,
/// and every item gets its result.
#[test]
fn a_limit_that_fires_splits_the_list_too() {
    let pool = pool(2);
    let fuel = 200_000;
    let batched = square_many()
        .with_limits(Limits::new().fuel(fuel))
        .batched()
        .unwrap();
    // One call of 50,000 elements runs out; a part of a few thousand does not.
    let items: Vec<i64> = (0..50_000).collect();
    let whole_list = square_many().with_limits(Limits::new().fuel(fuel));
    let one_call = pool.apply::<_, Vec<i64>>(&whole_list, (items.clone(),));
    assert!(
        matches!(one_call, Err(TaskError::OutOfFuel { .. })),
        "{one_call:?}"
    );
    let part = pool.apply::<_, Vec<i64>>(&whole_list, (items[..2000].to_vec(),));
    assert_eq!(part.map(|p| p.len()), Ok(2000));
    let whole = Pool::builder()
        .workers(1)
        .chunksize(50_000)
        .on_output(|_| {})
        .build()
        .unwrap();
    let squares: Vec<i64> = whole.map(&batched, items.iter().copied()).unwrap();
    assert_eq!(squares, items.iter().map(|i| i * i).collect::<Vec<_>>());
    // A fuel limit too small for one element fails each item with its own out-of-fuel.
    let starved = square_many()
        .with_limits(Limits::new().fuel(10))
        .batched()
        .unwrap();
    let outcomes = pool.map_async::<_, i64>(&starved, 0..4_i64).outcomes();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Err(TaskError::OutOfFuel { limit: 10, .. }))),
        "{outcomes:?}"
    );
}

/// The timeout bounds each list call: an item that runs past it fails alone with `Timeout`,
/// and the worker, which makes several calls before it can report, is not killed for it.
#[test]
fn a_timeout_bounds_each_call_and_fails_only_the_item_that_runs_past_it() {
    let pool = pool(1);
    let timeout = std::time::Duration::from_millis(200);
    let spin = task(HOSTILE, "spin-on-negative")
        .with_limits(Limits::new().timeout(timeout))
        .batched()
        .unwrap();
    // The first of 64: seven calls (64, 32, ... 1 elements) run past the timeout before its
    // outcome can be sent, longer than one timeout and its grace.
    let items: Vec<i64> = (0..64).map(|i| if i == 0 { -1 } else { i }).collect();
    let outcomes = pool
        .map_chunked::<_, i64>(&spin, items.iter().copied(), 64)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        outcomes,
        TaskError::Timeout {
            func: "spin-on-negative".into(),
            limit: timeout
        }
    );
    let fixed = Pool::builder()
        .workers(1)
        .chunksize(64)
        .on_output(|_| {})
        .build()
        .unwrap();
    let _: Vec<i64> = fixed.map(&spin, [1_i64]).unwrap();
    let pids = fixed.worker_pids();
    let all = fixed
        .map_async::<_, i64>(&spin, items.iter().copied())
        .outcomes();
    for (item, outcome) in items.iter().zip(&all) {
        match outcome {
            Ok(value) => assert_eq!(value, item),
            Err(e) => {
                assert_eq!(*item, -1);
                assert!(matches!(e, TaskError::Timeout { .. }), "{e:?}");
            }
        }
    }
    assert_eq!(all.iter().filter(|o| o.is_err()).count(), 1, "{all:?}");
    // No worker was killed for it.
    assert_eq!(fixed.worker_pids(), pids);
}

/// Elements that are not numbers take the general path: strings in, numbers out.
#[test]
fn strings_are_batched_too() {
    let pool = pool(2);
    let count = task(wasmpool_artifacts::WORDS, "count-words-many");
    let texts: Vec<String> = (0..5_000).map(|i| "word ".repeat(i % 7)).collect();
    let counts: Vec<u32> = pool.map_batched(&count, &texts).unwrap();
    let expected: Vec<u32> = (0..5_000).map(|i| (i % 7) as u32).collect();
    assert_eq!(counts, expected);
    // The wrong type of element is that item's bad input, the others run.
    let batched = count.batched().unwrap();
    let outcomes: Vec<Result<u32, TaskError>> = pool
        .imap(&batched, [serde_json::json!("a b"), serde_json::json!(3)])
        .collect();
    assert_eq!(outcomes[0], Ok(2));
    assert!(
        matches!(&outcomes[1], Err(TaskError::BadInput { .. })),
        "{outcomes:?}"
    );
}
