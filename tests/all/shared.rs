//! Shared state between tasks (`wasmpool:shared`, `wasi:keyvalue`), through real workers: the
//! tutorial's counter, queue and pipe, arrays and dicts, and what happens to a lock whose
//! holder fails or dies.

use std::time::{Duration, Instant};

use wasmpool::{Grants, Limits, Pool, Task, TaskError};
use wasmpool_artifacts::SHARED;

use crate::support::{pool, task};

/// The `shared` guest's export `func`, granted `grants`, within `limits`.
pub(crate) fn granted(func: &str, grants: Grants) -> Task {
    task(SHARED, func).with_grants(grants).unwrap()
}

pub(crate) fn with_timeout(task: Task, timeout: Duration) -> Task {
    task.with_limits(Limits::new().timeout(timeout))
}

#[test]
fn two_tasks_of_locked_increments_add_up_every_time() {
    let pool = pool(2);
    let counter = pool.value("counter", 0).unwrap();
    let lock = pool.lock("lock").unwrap();
    let increment = granted(
        "locked-increment",
        Grants::new().shared(&counter).shared(&lock),
    );
    let runs: Vec<_> = (0..2)
        .map(|_| pool.submit::<_, i64>(&increment, ("lock", "counter", 100_000u32)))
        .collect();
    for run in runs {
        run.result().unwrap();
    }
    assert_eq!(counter.get(), 200_000);
    assert!(!lock.is_held());

    // The same under the value's own lock (Python's get_lock()), and with atomic adds.
    let own = granted("own-lock-increment", Grants::new().shared(&counter));
    let add = granted("atomic-add", Grants::new().shared(&counter));
    for task in [own, add] {
        let runs: Vec<_> = (0..2)
            .map(|_| pool.submit::<_, i64>(&task, ("counter", 50_000u32)))
            .collect();
        for run in runs {
            run.result().unwrap();
        }
    }
    assert_eq!(counter.get(), 400_000);
}

#[test]
fn floats_add_atomically_and_arrays_hold_their_numbers() {
    let pool = pool(2);
    let total = pool.float_value("total", 0.5).unwrap();
    let add = granted("float-add", Grants::new().shared(&total));
    let runs: Vec<_> = (0..2)
        .map(|_| pool.submit::<_, f64>(&add, ("total", 0.25, 1000u32)))
        .collect();
    for run in runs {
        run.result().unwrap();
    }
    assert_eq!(total.get(), 500.5);

    let hist = pool.array("hist", 10).unwrap();
    let histogram = granted("histogram", Grants::new().shared(&hist));
    let xs: Vec<u32> = (0..1000).collect();
    let halves: Vec<_> = xs
        .chunks(500)
        .map(|half| pool.submit::<_, u32>(&histogram, ("hist", half.to_vec())))
        .collect();
    for half in halves {
        assert_eq!(half.result().unwrap(), 10);
    }
    assert_eq!(hist.to_vec(), vec![100; 10]);

    let squares = pool.array_from("squares", &[1, 4, 9]).unwrap();
    let write = granted("array-write", Grants::new().shared_as("a", &squares));
    let read = granted("array-read", Grants::new().shared_as("a", &squares));
    pool.apply::<_, ()>(&write, ("a", 1u32, vec![40i64, 90]))
        .unwrap();
    assert_eq!(
        pool.apply::<_, Vec<i64>>(&read, ("a",)).unwrap(),
        [1, 40, 90]
    );
    let err = pool
        .apply::<_, ()>(&write, ("a", 2u32, vec![1i64, 2]))
        .unwrap_err();
    assert!(err.to_string().contains("out-of-range(3)"), "{err}");

    let scale = pool.float_array_from("f", &[1.0, 2.5]).unwrap();
    let scaled: Vec<f64> = pool
        .apply(
            &granted("float-array-scale", Grants::new().shared(&scale)),
            ("f", 2.0),
        )
        .unwrap();
    assert_eq!(scaled, [2.0, 5.0]);
    assert_eq!(scale.to_vec(), [2.0, 5.0]);
}

#[test]
fn producers_and_consumers_in_different_workers_take_every_item_once() {
    let pool = pool(4);
    let jobs = pool.queue("jobs").unwrap();
    let grants = Grants::new().shared(&jobs);
    let produce = with_timeout(granted("produce", grants.clone()), Duration::from_secs(30));
    let consume = with_timeout(granted("consume", grants), Duration::from_secs(30));
    let consumers: Vec<_> = (0..2)
        .map(|_| pool.submit::<_, Vec<i64>>(&consume, ("jobs", 5_000u32)))
        .collect();
    let producers: Vec<_> = (0..2)
        .map(|i| pool.submit::<_, ()>(&produce, ("jobs", i * 5_000i64, 5_000u32)))
        .collect();
    for p in producers {
        p.result().unwrap();
    }
    let mut all: Vec<i64> = consumers
        .into_iter()
        .flat_map(|c| c.result().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..10_000).collect::<Vec<i64>>());
    assert!(jobs.is_empty());

    // The host puts and closes; a task drains, then sees `closed`.
    for i in 0..3 {
        jobs.put(&i).unwrap();
    }
    jobs.close();
    let drain = granted("consume-all", Grants::new().shared(&jobs));
    assert_eq!(
        pool.apply::<_, Vec<i64>>(&drain, ("jobs",)).unwrap(),
        [0, 1, 2]
    );
}

#[test]
fn a_pipe_carries_messages_in_order_then_says_closed() {
    let pool = pool(2);
    let (a, b) = pool.pipe("p").unwrap();
    let send = granted("pipe-send", Grants::new().shared(&a));
    let receive = granted("pipe-receive", Grants::new().shared(&b));
    let got = pool.submit::<_, Vec<String>>(&receive, ("p.b",));
    pool.apply::<_, ()>(&send, ("p.a", vec!["hello", "from", "a"]))
        .unwrap();
    assert_eq!(got.result().unwrap(), ["hello", "from", "a"]);

    // The host at one end, a task at the other.
    let (host, task_end) = pool.pipe("echo").unwrap();
    let echo = granted("pipe-echo", Grants::new().shared(&task_end));
    let echoing = pool.submit::<_, ()>(&echo, ("echo.b", 3u32));
    for i in 0..3 {
        host.send_bytes(vec![i]).unwrap();
        assert_eq!(
            host.recv_bytes_timeout(Duration::from_secs(10)).unwrap(),
            [i]
        );
    }
    echoing.result().unwrap();
}

#[test]
fn a_dict_is_wasi_keyvalue_with_decimal_increments() {
    let pool = pool(2);
    let d = pool.dict("d").unwrap();
    let grants = Grants::new().shared(&d);
    pool.apply::<_, ()>(
        &granted("dict-set", grants.clone()),
        ("d", "greeting", "hi"),
    )
    .unwrap();
    assert_eq!(d.get_bytes("greeting").unwrap(), b"hi");
    d.set("n", &40).unwrap();
    let count = granted("dict-count", grants.clone());
    let runs: Vec<_> = (0..2)
        .map(|_| pool.submit::<_, u64>(&count, ("d", "n", 100u32)))
        .collect();
    for run in runs {
        run.result().unwrap();
    }
    assert_eq!(d.get_bytes("n").unwrap(), b"240");
    let got: Option<String> = pool
        .apply(&granted("dict-get", grants.clone()), ("d", "missing"))
        .unwrap();
    assert_eq!(got, None);
    let keys: Vec<String> = pool.apply(&granted("dict-keys", grants), ("d",)).unwrap();
    assert_eq!(keys, ["greeting", "n"]);
}

#[test]
fn a_name_not_granted_is_refused_whatever_the_pool_holds() {
    let pool = pool(1);
    let counter = pool.value("counter", 7).unwrap();
    let open = task(SHARED, "open-value");
    let err = pool.apply::<_, i64>(&open, ("counter",)).unwrap_err();
    assert!(
        matches!(&err, TaskError::Guest { message, .. } if message == "not-granted(counter)"),
        "{err}"
    );
    // Granted under another name: reachable by that name only.
    let aliased = open
        .clone()
        .with_grants(Grants::new().shared_as("c", &counter))
        .unwrap();
    assert_eq!(pool.apply::<_, i64>(&aliased, ("c",)).unwrap(), 7);
    assert!(pool.apply::<_, i64>(&aliased, ("counter",)).is_err());
    // A lock granted as a value is not a value.
    let lock = pool.lock("l").unwrap();
    let wrong = open
        .clone()
        .with_grants(Grants::new().shared(&lock))
        .unwrap();
    assert!(pool.apply::<_, i64>(&wrong, ("l",)).is_err());
    // Another pool's object is refused before anything runs.
    let other = crate::support::pool(1);
    let theirs = other.value("counter", 1).unwrap();
    let foreign = open.with_grants(Grants::new().shared(&theirs)).unwrap();
    let err = pool.apply::<_, i64>(&foreign, ("counter",)).unwrap_err();
    assert!(matches!(err, TaskError::Sandbox { .. }), "{err}");
}

#[test]
fn a_lock_held_by_a_trapping_or_timed_out_task_is_released_as_abandoned() {
    let pool = pool(1);
    let lock = pool.lock("l").unwrap();
    let grants = Grants::new().shared(&lock);
    let abandoned = granted("lock-abandoned", grants.clone());

    let err = pool
        .apply::<_, ()>(&granted("hold-lock-and-trap", grants.clone()), ("l",))
        .unwrap_err();
    assert!(matches!(err, TaskError::Trap { .. }), "{err}");
    assert!(pool.apply::<_, bool>(&abandoned, ("l", 1000u32)).unwrap());
    assert!(!pool.apply::<_, bool>(&abandoned, ("l", 1000u32)).unwrap());

    let spin = with_timeout(
        granted("hold-lock-and-spin", grants),
        Duration::from_millis(200),
    );
    let err = pool.apply::<_, ()>(&spin, ("l",)).unwrap_err();
    assert!(matches!(err, TaskError::Timeout { .. }), "{err}");
    assert!(pool.apply::<_, bool>(&abandoned, ("l", 1000u32)).unwrap());
}

#[test]
fn a_lock_held_by_a_killed_worker_is_released_as_abandoned() {
    let pool = Pool::builder()
        .workers(1)
        .retries(0)
        .on_output(|_| {})
        .build()
        .unwrap();
    let lock = pool.lock("l").unwrap();
    let never = pool.queue("never").unwrap();
    let block = granted(
        "hold-lock-and-block",
        Grants::new().shared(&lock).shared(&never),
    );
    let blocked = pool.submit::<_, ()>(&block, ("l", "never"));
    let start = Instant::now();
    while !lock.is_held() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the task never took the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = pool.worker_pids()[0];
    // SAFETY: killing the pool's own worker process.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let err = blocked.result().unwrap_err();
    assert!(matches!(err, TaskError::WorkerCrashed { .. }), "{err}");
    let guard = lock.acquire(Some(Duration::from_secs(5))).unwrap();
    assert!(
        guard.abandoned(),
        "the dead worker's lock is marked abandoned"
    );
    drop(guard);
    // The pool goes on, with the next worker.
    let abandoned = granted("lock-abandoned", Grants::new().shared(&lock));
    assert!(!pool.apply::<_, bool>(&abandoned, ("l", 1000u32)).unwrap());
}

#[test]
fn a_task_waiting_on_an_empty_queue_ends_as_timeout() {
    let pool = pool(1);
    let empty = pool.queue("empty").unwrap();
    let wait = with_timeout(
        granted("wait-for-item", Grants::new().shared(&empty)),
        Duration::from_millis(300),
    );
    let start = Instant::now();
    let err = pool
        .apply::<_, Vec<u8>>(&wait, ("empty", None::<u32>))
        .unwrap_err();
    assert!(matches!(err, TaskError::Timeout { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // A wait of its own that runs out is the contract's `timeout`, not the task's.
    let err = pool
        .apply::<_, Vec<u8>>(&wait, ("empty", Some(20u32)))
        .unwrap_err();
    assert!(
        matches!(&err, TaskError::Guest { message, .. } if message == "timeout"),
        "{err}"
    );
}

/// A consumer's worker killed in the middle of taking items (maybe holding the queue's lock)
/// leaves the queue working: the other consumer goes on, every item it takes is whole and
/// taken once, and nothing waits for the dead worker.
#[test]
fn a_consumer_killed_mid_queue_leaves_every_other_item_whole_and_single() {
    let pool = Pool::builder()
        .workers(2)
        .retries(0)
        .on_output(|_| {})
        .build()
        .unwrap();
    let jobs = pool.queue("jobs").unwrap();
    let n = 200_000i64;
    for i in 0..n {
        jobs.put_bytes(i.to_string()).unwrap();
    }
    let consume = with_timeout(
        granted("consume", Grants::new().shared(&jobs)),
        Duration::from_secs(60),
    );
    let a = pool.submit::<_, Vec<i64>>(&consume, ("jobs", n as u32));
    let b = pool.submit::<_, Vec<i64>>(&consume, ("jobs", n as u32));
    // Both are taking items; kill one of them.
    while jobs.len() > (n as usize) * 9 / 10 {
        std::thread::sleep(Duration::from_micros(200));
    }
    let victim = pool.worker_pids()[0];
    // SAFETY: killing the pool's own worker process.
    unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
    // The survivor, and the worker that replaces the dead one, drain the queue.
    let start = Instant::now();
    while !jobs.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the queue is stuck"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    jobs.close();
    let mut taken = Vec::new();
    let mut crashed = 0;
    for run in [a, b] {
        match run.result() {
            Ok(items) => {
                assert!(items.windows(2).all(|w| w[0] < w[1]), "in order");
                taken.extend(items);
            }
            Err(TaskError::WorkerCrashed { .. }) => crashed += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(crashed, 1);
    let count = taken.len();
    taken.sort_unstable();
    taken.dedup();
    assert_eq!(taken.len(), count, "no item was taken twice");
    assert!(
        taken.iter().all(|&x| (0..n).contains(&x)),
        "every item whole"
    );
    // The pool goes on.
    let fresh = pool.queue("fresh").unwrap();
    fresh.put(&7).unwrap();
    assert_eq!(fresh.get_timeout::<i64>(Duration::from_secs(1)).unwrap(), 7);
}
