//! map, starmap, chunking, imap: many items, in order, correct.

use wasmpool::TaskError;
use wasmpool_artifacts::{POWER, PRIMES, PURE, SQUARE};

use std::sync::Arc;

use crate::support::{pool, task};

#[test]
fn map_10_000_items_in_order() {
    let pool = pool(2);
    let square = task(SQUARE, "square");
    let squares: Vec<i64> = pool.map(&square, 0..10_000i64).unwrap();
    assert_eq!(squares.len(), 10_000);
    assert!(
        squares
            .iter()
            .enumerate()
            .all(|(i, &s)| s == (i as i64) * (i as i64))
    );
}

/// The `no_std` guest, which imports nothing, runs like any other, fresh or reused, and its
/// overflow is a trap whose backtrace says so.
#[test]
fn a_guest_without_imports_maps_and_traps() {
    let pool = pool(2);
    let square = task(PURE, "square");
    let expected: Vec<i64> = (-500..500i64).map(|x| x * x).collect();
    let fresh: Vec<i64> = pool.map(&square, -500..500i64).unwrap();
    assert_eq!(fresh, expected);
    let reused: Vec<i64> = pool
        .map(&square.clone().with_instance_reuse(), -500..500i64)
        .unwrap();
    assert_eq!(reused, expected);
    match pool.apply::<_, i64>(&square, (i64::MAX,)) {
        Err(TaskError::Trap {
            message, backtrace, ..
        }) => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(
                backtrace
                    .as_deref()
                    .is_some_and(|bt| bt.contains("overflow")),
                "{backtrace:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply::<_, i64>(&square, (-3,)).unwrap(), 9);
}

#[test]
fn map_with_one_worker_and_explicit_chunks() {
    let pool = pool(1);
    let square = task(SQUARE, "square");
    for chunksize in [1, 7, 1000] {
        let squares: Vec<i64> = pool.map_chunked(&square, -50..50i64, chunksize).unwrap();
        assert_eq!(
            squares,
            (-50..50i64).map(|x| x * x).collect::<Vec<_>>(),
            "chunksize {chunksize}"
        );
    }
    let empty: Vec<i64> = pool.map(&square, Vec::<i64>::new()).unwrap();
    assert!(empty.is_empty());
}

/// An iterator that promises exactly 10 items, whatever it yields.
struct PromisesTen(std::ops::Range<i64>);

impl Iterator for PromisesTen {
    type Item = i64;
    fn next(&mut self) -> Option<i64> {
        self.0.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (10, Some(10))
    }
}

#[test]
fn map_takes_the_items_an_iterator_yields_not_the_ones_it_promised() {
    let pool = pool(2);
    let square = task(SQUARE, "square");
    let squares: Vec<i64> = pool.map(&square, PromisesTen(0..4)).unwrap();
    assert_eq!(squares, [0, 1, 4, 9]);
    let squares: Vec<i64> = pool.map(&square, PromisesTen(0..25)).unwrap();
    assert_eq!(squares, (0..25i64).map(|x| x * x).collect::<Vec<_>>());
    // Unknown lengths (a filter) are taken whole first, as Python does.
    let odd: Vec<i64> = pool
        .map(&square, (0..10i64).filter(|x| x % 2 == 1))
        .unwrap();
    assert_eq!(odd, [1, 9, 25, 49, 81]);
}

#[test]
fn starmap_spreads_tuples_like_the_tutorial() {
    let pool = pool(4);
    let power = task(POWER, "power");
    let results: Vec<i64> = pool
        .starmap(&power, [(2, 3), (3, 2), (4, 4), (5, 2)])
        .unwrap();
    assert_eq!(results, [8, 9, 256, 25]);
}

#[test]
fn primes_kernel_matches_the_reference() {
    let pool = pool(2);
    let count = task(PRIMES, "count-primes-range");
    let ranges: Vec<(u32, u32)> = (0..64).map(|k| (k * 3125, (k + 1) * 3125)).collect();
    let counts: Vec<u32> = pool.starmap(&count, &ranges).unwrap();
    assert_eq!(&counts[..4], &[445, 367, 347, 333]);
    assert_eq!(counts.iter().sum::<u32>(), 17984);
}

#[test]
fn imap_is_lazy_ordered_and_bounded() {
    let pool = wasmpool::Pool::builder()
        .workers(2)
        .imap_chunksize(3)
        .max_chunks_in_flight(2)
        .on_output(|_| {})
        .build()
        .unwrap();
    let square = task(SQUARE, "square");
    let pulled = std::cell::Cell::new(0usize);
    // An endless input: only a lazy imap can take from it.
    let input = (0i64..).inspect(|_| pulled.set(pulled.get() + 1));
    let first: Vec<i64> = pool
        .imap(&square, input)
        .take(20)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first, (0..20i64).map(|x| x * x).collect::<Vec<_>>());
    // At most 2 chunks of 3 items beyond what was consumed were ever pulled.
    assert!(pulled.get() <= 20 + 6, "pulled {} items", pulled.get());
    // By default, chunks sized by how long items take: one item at first, then each at most
    // twice the last (chunk i holds at most 2^i items), up to 3 chunks per worker in flight.
    // Tiny items soon travel hundreds to a chunk, and still only a few chunks are ever ahead
    // of the consumer: item 19 is in chunk 4 at the latest (1 + 2 + 4 + 8 + 16 = 31 items),
    // and at most the 6 chunks after it were pulled, chunks 0 to 10, 2^11 - 1 items. (A bound
    // of 1020 failed about one run in ten on a busy machine: 1023, chunks 0 to 9.)
    pulled.set(0);
    let input = (0i64..).inspect(|_| pulled.set(pulled.get() + 1));
    let first: Vec<i64> = crate::support::pool(2)
        .imap(&square, input)
        .take(20)
        .map(Result::unwrap)
        .collect();
    assert_eq!(first.len(), 20);
    assert!(pulled.get() < 1 << 11, "pulled {} items", pulled.get());
}

/// A few slow items of a stream go to all the workers at once, not in one chunk to one of
/// them: the first chunks of a stream hold one item each, until items are measured.
#[test]
fn imap_spreads_a_few_slow_items_over_all_workers() {
    let pool = pool(2);
    let sleep = task(wasmpool_artifacts::SLEEP, "sleep");
    let start = std::time::Instant::now();
    let slept: Vec<u64> = pool.imap(&sleep, [400u32; 4]).map(Result::unwrap).collect();
    assert_eq!(slept.len(), 4);
    // Two at a time on two workers: 0.8 s; all four in one chunk on one worker would be 1.6 s.
    assert!(
        start.elapsed() < std::time::Duration::from_millis(1400),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn imap_unordered_yields_every_item_once() {
    let pool = pool(2);
    let square = task(SQUARE, "square");
    let mut results: Vec<i64> = pool
        .imap_unordered(&square, 0..500i64)
        .map(Result::unwrap)
        .collect();
    results.sort_unstable();
    assert_eq!(results, (0..500i64).map(|x| x * x).collect::<Vec<_>>());
}

/// A core module whose one export counts its own calls: what a reused instance remembers.
fn counter() -> wasmpool::Task {
    let wat = r#"(module
        (global $n (mut i64) (i64.const 0))
        (func (export "calls") (param i64) (result i64)
            global.get $n i64.const 1 i64.add global.set $n
            global.get $n))"#;
    wasmpool::Module::from_bytes(wat)
        .unwrap()
        .task("calls")
        .unwrap()
}

#[test]
fn instance_reuse_is_per_chunk_and_never_across_submissions() {
    let pool = pool(2);
    let fresh = counter();
    let ones: Vec<i64> = pool.map_chunked(&fresh, 0..8i64, 4).unwrap();
    assert_eq!(ones, [1; 8], "a fresh instance per item by default");

    let reused = counter().with_instance_reuse();
    let counted: Vec<i64> = pool.map_chunked(&reused, 0..8i64, 4).unwrap();
    assert_eq!(
        counted,
        [1, 2, 3, 4, 1, 2, 3, 4],
        "one instance per chunk of 4"
    );

    // A burst of separate submissions travels in gathered chunks, but each is its own call:
    // none sees another's instance.
    let futures: Vec<wasmpool::TaskFuture<i64>> =
        (0..200i64).map(|i| pool.submit(&reused, (i,))).collect();
    for f in &futures {
        assert_eq!(f.result().unwrap(), 1);
    }

    let square = task(SQUARE, "square").with_instance_reuse();
    let squares: Vec<i64> = pool.map(&square, 0..20_000i64).unwrap();
    assert!(
        squares
            .iter()
            .enumerate()
            .all(|(i, &s)| s == (i * i) as i64)
    );
}

/// Numbers of every core kind, and calls that print or trap amid calls that do not, in one
/// chunk: the worker switches between packed results and full outcomes as it goes, and every
/// item still gets its own outcome, in order.
#[test]
fn packed_numbers_and_full_outcomes_interleave_in_one_chunk() {
    let wat = r#"(module
        (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 16) "odd\n")
        (func (export "mix") (param i32 i64 f32 f64) (result f64)
            ;; Prints for odd x, traps for x = 7 or 8 (a division by zero).
            (if (i32.and (local.get 0) (i32.const 1))
                (then
                    (i32.store (i32.const 0) (i32.const 16))
                    (i32.store (i32.const 4) (i32.const 4))
                    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
            (drop (i32.div_s (i32.const 1) (i32.sub (i32.const 1) (i32.shr_u (local.get 0) (i32.const 3)))))
            (f64.add
                (f64.add (f64.convert_i32_s (local.get 0)) (f64.convert_i64_s (local.get 1)))
                (f64.add (f64.promote_f32 (local.get 2)) (local.get 3)))))"#;
    let mix = wasmpool::Module::from_bytes(wat)
        .unwrap()
        .task("mix")
        .unwrap();
    let printed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&printed);
    let pool = wasmpool::Pool::builder()
        .workers(2)
        .chunksize(12)
        .on_output(move |out| seen.lock().unwrap().push((out.task, out.text.to_string())))
        .build()
        .unwrap();
    let items: Vec<(i32, i64, f32, f64)> = (0..12)
        .map(|x| (x, -10 * x as i64, 0.5, f64::from(x) / 4.0))
        .collect();
    for reuse in [false, true] {
        let task = if reuse {
            mix.clone().with_instance_reuse()
        } else {
            mix.clone()
        };
        let outcomes = pool.starmap_async::<_, f64>(&task, &items).outcomes();
        for (x, outcome) in outcomes.iter().enumerate() {
            let (a, b, c, d) = items[x];
            match x {
                // x >> 3 == 1 makes the divisor zero.
                8..=11 => assert!(
                    matches!(outcome, Err(wasmpool::TaskError::Trap { .. })),
                    "{x}: {outcome:?}"
                ),
                _ => assert_eq!(
                    outcome.as_ref().ok(),
                    Some(&(f64::from(a) + b as f64 + f64::from(c) + d)),
                    "{x}"
                ),
            }
        }
    }
    // Each odd x printed once per run, and only those.
    let printed = printed.lock().unwrap();
    assert_eq!(printed.len(), 12, "{printed:?}");
    assert!(
        printed.iter().all(|(_, text)| text == "odd\n"),
        "{printed:?}"
    );
}

/// A stream that captures output hands each item's stdout and stderr, and its time, with its
/// outcome, and none of it to the pool's output handler.
#[test]
fn a_capturing_stream_keeps_each_items_output_with_its_outcome() {
    let relayed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&relayed);
    let pool = wasmpool::Pool::builder()
        .workers(2)
        .on_output(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let hello = task(wasmpool_artifacts::HELLO, "hello");
    let names: Vec<_> = (0..20)
        .map(|i| hello.arg_from_json(&serde_json::json!(format!("n{i}"))))
        .collect();
    let options = wasmpool::StreamOptions::new().capture_output(true);
    let outcomes: Vec<_> = pool.imap_json_with(&hello, names, options).collect();
    assert_eq!(outcomes.len(), 20);
    for (i, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome.index, i);
        assert_eq!(
            outcome.result,
            Ok(serde_json::json!(format!("hello, n{i}!")))
        );
        let captured = outcome.captured.as_ref().expect("captured");
        assert_eq!(captured.stdout, format!("hello, n{i}!\n").into_bytes());
        assert_eq!(captured.stderr, format!("greeting n{i}\n").into_bytes());
        assert!(captured.elapsed > std::time::Duration::ZERO);
    }
    assert_eq!(relayed.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Without capture, the same stream's output goes to the handler, and outcomes carry none.
    let names: Vec<_> = (0..3)
        .map(|i| hello.arg_from_json(&serde_json::json!(format!("n{i}"))))
        .collect();
    let plain: Vec<_> = pool
        .imap_json(&hello, names, wasmpool::Order::Input)
        .collect();
    assert!(plain.iter().all(|o| o.captured.is_none()));
    assert_eq!(relayed.load(std::sync::atomic::Ordering::SeqCst), 6);
}
