//! Chaos: thousands of tasks while workers are SIGKILLed at random mid-task. Every task ends
//! with exactly one outcome, every task on a surviving worker is correct, no process remains,
//! and it ends within a fixed bound.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmpool::{ExitCause, Pool, TaskError};
use wasmpool_artifacts::SQUARE;

use crate::support::{process_exists, task};

/// A small xorshift generator: reproducible chaos without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_sigkills_lose_nothing_and_leave_nothing() {
    const TASKS: i64 = 2_000;
    let started = Instant::now();
    let pool = Pool::builder()
        .workers(4)
        .chunksize(5)
        .on_output(|_| {})
        .build()
        .unwrap();
    let slow_square = task(SQUARE, "slow-square");
    // 10 ms of simulated work each: about 5 s of work on 4 workers.
    let items: Vec<(i64, u32)> = (0..TASKS).map(|x| (x, 10)).collect();
    let batch = pool.starmap_async::<_, i64>(&slow_square, &items);

    let done = AtomicBool::new(false);
    let (kills, seen) = std::thread::scope(|s| {
        let killer = s.spawn(|| {
            let mut rng = Rng(0x5eed_cafe_f00d_1234);
            let mut kills = 0i64;
            let mut seen = HashSet::new();
            // One worker killed every 10 to 20 ms, mid-task, until 5% of the tasks have lost
            // their worker.
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10 + rng.next() % 10));
                let pids = pool.worker_pids();
                seen.extend(pids.iter().copied());
                if kills < TASKS / 20 && !pids.is_empty() {
                    let victim = pids[(rng.next() % pids.len() as u64) as usize];
                    // SAFETY: SIGKILL to one of the pool's own worker children.
                    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
                    kills += 1;
                }
            }
            (kills, seen)
        });
        batch.wait();
        done.store(true, Ordering::SeqCst);
        killer.join().unwrap()
    });

    let outcomes = batch.outcomes();
    assert_eq!(outcomes.len(), TASKS as usize, "one outcome per task");
    let mut crashed = 0;
    for (x, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Ok(v) => assert_eq!(
                *v,
                (x * x) as i64,
                "task {x} on a surviving worker is correct"
            ),
            Err(TaskError::WorkerCrashed {
                cause: ExitCause::Signal(9),
                attempts: 1,
                ..
            }) => crashed += 1,
            Err(other) => panic!("task {x}: unexpected {other}"),
        }
    }
    assert_eq!(kills, TASKS / 20, "5% of the tasks lost their worker");
    assert!(
        crashed <= kills,
        "{crashed} crashed tasks for {kills} kills"
    );
    eprintln!(
        "chaos: {TASKS} tasks, {kills} workers killed, {crashed} tasks failed, in {:?}",
        started.elapsed()
    );

    let mut all: HashSet<u32> = seen;
    all.extend(pool.worker_pids());
    drop(pool);
    let leftover: Vec<u32> = all.into_iter().filter(|&pid| process_exists(pid)).collect();
    assert!(leftover.is_empty(), "processes remain: {leftover:?}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
}

/// Quick tasks (microseconds each) run with the next chunk already sent ahead to the worker,
/// and submissions gathered into chunks: a kill must still cost at most the one item that was
/// running, and lose nothing that was sent ahead.
#[test]
fn sigkills_among_quick_tasks_lose_nothing_sent_ahead() {
    const ITEMS: i64 = 20_000;
    const KILLS: usize = 15;
    let pool = Pool::builder()
        .workers(2)
        .chunksize(1)
        .on_output(|_| {})
        .build()
        .unwrap();
    let square = task(SQUARE, "square");
    let batch = pool.map_async::<_, i64>(&square, 0..ITEMS);
    let submitted: Vec<wasmpool::TaskFuture<i64>> =
        (0..ITEMS).map(|x| pool.submit(&square, (x,))).collect();
    let mut kills = 0;
    let mut rng = Rng(0xdead_beef_1234_5678);
    while kills < KILLS && !(batch.done() && submitted.iter().all(|f| f.done())) {
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 10));
        let pids = pool.worker_pids();
        if let Some(&victim) = pids.get((rng.next() % 2) as usize) {
            // SAFETY: SIGKILL to one of the pool's own worker children.
            unsafe { libc::kill(victim as i32, libc::SIGKILL) };
            kills += 1;
        }
    }
    let mut crashed = 0;
    let outcomes = batch.outcomes();
    assert_eq!(outcomes.len(), ITEMS as usize);
    let submitted: Vec<Result<i64, TaskError>> = submitted.iter().map(|f| f.result()).collect();
    for (x, outcome) in outcomes.iter().chain(submitted.iter()).enumerate() {
        let x = x as i64 % ITEMS;
        match outcome {
            Ok(v) => assert_eq!(*v, x * x, "item {x}"),
            Err(TaskError::WorkerCrashed {
                cause: ExitCause::Signal(9),
                ..
            }) => crashed += 1,
            Err(other) => panic!("item {x}: unexpected {other}"),
        }
    }
    assert!(crashed <= kills, "{crashed} failed items for {kills} kills");
    eprintln!(
        "quick chaos: {} items, {kills} kills, {crashed} failed",
        2 * ITEMS
    );
}

#[test]
fn retries_rerun_a_task_whose_worker_was_killed() {
    let pool = Pool::builder()
        .workers(1)
        .retries(2)
        .on_output(|_| {})
        .build()
        .unwrap();
    let sleep = task(wasmpool_artifacts::SLEEP, "sleep");
    let victim = pool.worker_pids()[0];
    let handle = pool.submit::<_, u64>(&sleep, (500u32,));
    std::thread::sleep(Duration::from_millis(150));
    // SAFETY: SIGKILL to the pool's own worker child.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    assert!(
        handle.result().unwrap() >= 500,
        "the retry ran to completion"
    );
    assert_ne!(pool.worker_pids(), vec![victim]);
}
