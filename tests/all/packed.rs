//! Maps over numbers take the typed fast path: each chunk's arguments packed straight from the
//! caller's values, its results filed as numbers. These tests hold it to the general route's
//! word: each item exactly one outcome, in input order, a failed item failing alone with its
//! own typed error, and anything the fast path does not decide (a string among numbers, a
//! number out of range, a float where an integer goes) decided exactly as before.

use wasmpool::{Pool, TaskError};
use wasmpool_artifacts::{ARITH, FALLIBLE, SQUARE, TRAP};

use crate::support::task;

/// A pool whose maps cut chunks of `chunksize`.
fn chunked_pool(workers: usize, chunksize: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .chunksize(chunksize)
        .on_output(|_| {})
        .build()
        .unwrap()
}

#[test]
fn failing_items_in_the_middle_fail_alone_in_their_place() {
    let divide = task(TRAP, "divide");
    // Divisions by zero scattered through chunks of 100, at a chunk's start, middle and end.
    let zero = |i: u32| [0, 150, 199, 200, 777, 999].contains(&i);
    let pairs: Vec<(u32, u32)> = (0..1000)
        .map(|i| (i * 7, if zero(i) { 0 } else { 7 }))
        .collect();
    for reuse in [false, true] {
        let divide = if reuse {
            divide.clone().with_instance_reuse()
        } else {
            divide.clone()
        };
        let pool = chunked_pool(2, 100);
        let outcomes = pool
            .starmap_async::<_, u32>(&divide, pairs.iter().copied())
            .outcomes();
        assert_eq!(outcomes.len(), 1000);
        for (i, outcome) in (0u32..).zip(&outcomes) {
            if zero(i) {
                assert!(
                    matches!(outcome, Err(TaskError::Trap { func, .. }) if func == "divide"),
                    "item {i}: {outcome:?}"
                );
            } else {
                assert_eq!(outcome, &Ok(i), "item {i} (reuse {reuse})");
            }
        }
        // The whole map: the first error in input order, the one of item 0.
        let first = pool.starmap::<_, u32>(&divide, pairs.iter().copied());
        assert_eq!(first.unwrap_err(), outcomes[0].clone().unwrap_err());
        let failed = pool.starmap_async::<_, u32>(&divide, pairs.iter().copied());
        failed.wait();
        assert_eq!(failed.successful(), Some(false));
        let fine = pool.starmap_async::<_, u32>(&divide, [(6u32, 3u32), (8, 2)]);
        assert_eq!(fine.result(), Ok(vec![2, 4]));
        assert_eq!(fine.successful(), Some(true));
    }
}

#[test]
fn items_the_fast_path_leaves_are_decided_as_one_by_one() {
    let pool = chunked_pool(2, 4);
    let square = task(SQUARE, "square");
    // Numbers of every shape serde gives, strings, floats, out-of-range numbers, nulls: each
    // item's outcome in a map is exactly what `apply` of that item alone gives.
    let items = serde_json::json!([
        1,
        2,
        3,
        4,
        -5,
        6,
        7,
        8,
        "nine",
        10,
        11,
        12,
        13.0,
        14,
        15,
        16,
        17,
        18446744073709551615u64,
        19,
        20,
        null,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        1.5,
        30,
        31,
        [32]
    ]);
    let items = items.as_array().unwrap();
    let mapped = pool.map_async::<_, i64>(&square, items).outcomes();
    assert_eq!(mapped.len(), items.len());
    for (item, outcome) in items.iter().zip(&mapped) {
        let alone = pool.apply::<_, i64>(&square, (item,));
        assert_eq!(outcome, &alone, "{item}");
    }
    assert!(matches!(mapped[8], Err(TaskError::BadInput { .. })));
    assert_eq!(mapped[9], Ok(100));
    // Integers of any Rust type, for any integer parameter that holds them.
    let from_u8: Vec<i64> = pool.map(&square, [3u8, 4, 5]).unwrap();
    assert_eq!(from_u8, [9, 16, 25]);
    let power = task(wasmpool_artifacts::POWER, "power");
    let powers: Vec<u64> = pool
        .starmap(&power, [(2i32, 10u8), (3, 3), (10, 0)])
        .unwrap();
    assert_eq!(powers, [1024, 27, 1]);
    // A negative exponent does not fit u32: that item alone is bad input, naming it.
    let outcomes = pool
        .starmap_async::<_, i64>(&power, [(2i64, 1i64), (2, -1), (2, 2)])
        .outcomes();
    assert_eq!(outcomes[0], Ok(2));
    let Err(TaskError::BadInput { param, .. }) = &outcomes[1] else {
        panic!("{:?}", outcomes[1])
    };
    assert_eq!(param.as_deref(), Some("exponent"));
    assert_eq!(outcomes[2], Ok(4));
}

#[test]
fn floats_and_core_modules_take_it_too() {
    let pool = chunked_pool(2, 3);
    let fdiv = task(ARITH, "fdiv");
    let quotients: Vec<f64> = pool
        .starmap(
            &fdiv,
            [(1.0f64, 4.0f64), (3.0, 2.0), (-9.0, 3.0), (1.0, 8.0)],
        )
        .unwrap();
    assert_eq!(quotients, [0.25, 1.5, -3.0, 0.125]);
    // Integers for float parameters, as JSON numbers are.
    let from_ints: Vec<f64> = pool.starmap(&fdiv, [(1i32, 2i64), (5, 4)]).unwrap();
    assert_eq!(from_ints, [0.5, 1.25]);
    let half = task(ARITH, "half").with_instance_reuse();
    let halves: Vec<f32> = pool.map(&half, [1.0f32, 3.0, -0.5, 1e30]).unwrap();
    assert_eq!(halves, [0.5, 1.5, -0.25, 5e29]);
    // A result that is not finite is no JSON number: the caller's type says whether it fits.
    let inf = pool.starmap::<_, f64>(&fdiv, [(1.0f64, 0.0f64)]);
    assert_eq!(
        inf,
        pool.apply::<_, f64>(&fdiv, (1.0f64, 0.0f64))
            .map(|v| vec![v])
    );
    let square = task(ARITH, "square").with_instance_reuse();
    let squares: Vec<i64> = pool.map(&square, 0..10_000_i64).unwrap();
    assert!(squares.iter().zip(0..).all(|(&s, i)| s == i * i));
}

#[test]
fn results_in_the_callers_type_or_a_typed_error_each() {
    let pool = chunked_pool(2, 50);
    let square = task(SQUARE, "square");
    let as_floats: Vec<f64> = pool.map(&square, 0..200_i64).unwrap();
    assert_eq!(as_floats[199], 39_601.0);
    // A result that does not fit the caller's type fails its own item, typed.
    let outcomes = pool
        .map_async::<_, u8>(&square, [3i64, 15, 16, 2])
        .outcomes();
    assert_eq!(outcomes[0], Ok(9));
    assert!(
        matches!(&outcomes[2], Err(TaskError::ResultType { func, .. }) if func == "square"),
        "{:?}",
        outcomes[2]
    );
    assert_eq!(outcomes[3], Ok(4));
    let strings = pool.map::<_, String>(&square, 0..3_i64);
    assert!(matches!(strings, Err(TaskError::ResultType { .. })));
    // Packed arguments, results that are no numbers: a guest's `result` per item.
    let process = task(FALLIBLE, "process-item");
    let outcomes = pool
        .map_async::<_, (u32, u32)>(&process, 0..20_u32)
        .outcomes();
    let alone: Vec<_> = (0..20_u32)
        .map(|i| pool.apply::<_, (u32, u32)>(&process, (i,)))
        .collect();
    assert_eq!(outcomes, alone);
}

#[test]
fn a_batch_map_with_failures_and_short_results_keeps_every_outcome_in_place() {
    let pool = chunked_pool(2, 1000);
    let square_many = task(SQUARE, "square-many").batched().unwrap();
    // Squares that overflow s64 trap their list call, which is halved down to them.
    let bad = |i: i64| i % 997 == 3;
    let items: Vec<i64> = (0..20_000)
        .map(|i| if bad(i) { 4_000_000_000 } else { i })
        .collect();
    let outcomes = pool
        .map_async::<_, i64>(&square_many, items.iter().copied())
        .outcomes();
    assert_eq!(outcomes.len(), items.len());
    for (i, outcome) in (0..).zip(&outcomes) {
        if bad(i) {
            assert!(
                matches!(outcome, Err(TaskError::Trap { .. })),
                "{i}: {outcome:?}"
            );
        } else {
            assert_eq!(outcome, &Ok(i * i), "item {i}");
        }
    }
    // A list call that returns one result short fails each of its items, and only those.
    let drop_last = task(wasmpool_artifacts::HOSTILE, "drop-last")
        .batched()
        .unwrap();
    let outcomes = pool.map_async::<_, i64>(&drop_last, 0..2500_i64).outcomes();
    assert_eq!(outcomes.len(), 2500);
    assert!(outcomes.iter().all(|o| matches!(
        o,
        Err(TaskError::BatchLength {
            expected: 1000 | 500,
            ..
        })
    )));
}
