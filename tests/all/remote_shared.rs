//! Shared objects (`wasmpool:shared`, `wasi:keyvalue`) for tasks on remote workers, for real:
//! workers behind ssh to an sshd on 127.0.0.1 (see `cluster.rs`), which cannot map the pool's
//! region and reach every object through the host over their link, next to a local worker
//! that maps it. Counts are exact, items go to one taker, a lock a remote worker dies holding
//! is released as abandoned.

use std::time::{Duration, Instant};

use wasmpool::{Grants, Pool, TaskError};

use crate::cluster::Sshd;
use crate::remote::ssh;
use crate::shared::{granted, with_timeout};

/// One local worker and one behind ssh.
fn mixed_pool(sshd: &Sshd) -> Pool {
    Pool::builder()
        .local(1)
        .remote(ssh(sshd), "127.0.0.1", 1)
        .chunksize(1)
        .on_output(|_| {})
        .build()
        .unwrap()
}

#[test]
fn a_queue_carries_items_between_a_local_and_a_remote_worker() {
    let Some(sshd) = Sshd::start("remote_shared::a_queue_carries_items_between") else {
        return;
    };
    let pool = mixed_pool(&sshd);
    let jobs = pool.queue("jobs").unwrap();
    let grants = Grants::new().shared(&jobs);
    let produce = with_timeout(granted("produce", grants.clone()), Duration::from_secs(60));
    let consume = with_timeout(granted("consume", grants), Duration::from_secs(60));
    // Both at once, on the two workers: a consumer alone on a worker would wait forever, so
    // one of them runs behind ssh, whichever the pool picks.
    let consumer = pool.submit::<_, Vec<i64>>(&consume, ("jobs", 2_000u32));
    let producer = pool.submit::<_, ()>(&produce, ("jobs", 0i64, 2_000u32));
    producer.result().unwrap();
    assert_eq!(consumer.result().unwrap(), (0..2_000).collect::<Vec<i64>>());
    assert!(jobs.is_empty());
    assert_eq!(sshd.remote_workers().len(), 1);

    // The host puts and closes; two tasks drain what is there between them, then see `closed`.
    for i in 0..3 {
        jobs.put(&i).unwrap();
    }
    jobs.close();
    let drain = granted("consume-all", Grants::new().shared(&jobs));
    let drained: Vec<Vec<i64>> = pool.starmap(&drain, [("jobs",), ("jobs",)]).unwrap();
    assert_eq!(drained.concat(), [0, 1, 2]);
    drop(pool);
    let left = sshd.wait_no_remote_workers(Duration::from_secs(5));
    assert!(left.is_empty(), "remote workers left behind: {left:?}");
}

#[test]
fn locked_increments_from_local_and_remote_workers_add_up_exactly() {
    let Some(sshd) = Sshd::start("remote_shared::locked_increments_add_up") else {
        return;
    };
    let pool = mixed_pool(&sshd);
    let counter = pool.value("counter", 0).unwrap();
    let lock = pool.lock("lock").unwrap();
    let gate = pool.queue("gate").unwrap();
    let increment = granted(
        "locked-increment",
        Grants::new().shared(&counter).shared(&lock),
    );
    // A task that blocks until the host opens the gate holds one worker, so that the next
    // task runs on the other: the first increments run on whichever worker is left, then the
    // gate opens and both workers increment at once.
    let wait = with_timeout(
        granted("wait-for-item", Grants::new().shared(&gate)),
        Duration::from_secs(60),
    );
    let held = pool.submit::<_, Vec<u8>>(&wait, ("gate", None::<u32>));
    let first = pool.submit::<_, i64>(&increment, ("lock", "counter", 2_000u32));
    first.result().unwrap();
    gate.put_bytes(b"go").unwrap();
    held.result().unwrap();
    let runs: Vec<_> = (0..4)
        .map(|_| pool.submit::<_, i64>(&increment, ("lock", "counter", 1_500u32)))
        .collect();
    for run in runs {
        run.result().unwrap();
    }
    assert_eq!(counter.get(), 2_000 + 4 * 1_500);
    assert!(
        !lock.is_held(),
        "every lock taken over the link was given back"
    );

    // Atomic adds, float adds, arrays and dicts the same way.
    let add = granted("atomic-add", Grants::new().shared(&counter));
    let adds: Vec<i64> = pool.starmap(&add, [("counter", 500u32); 4]).unwrap();
    assert_eq!(adds.len(), 4);
    assert_eq!(counter.get(), 8_000 + 2_000);
    let total = pool.float_value("total", 0.5).unwrap();
    let float_add = granted("float-add", Grants::new().shared(&total));
    let _: Vec<f64> = pool
        .starmap(&float_add, [("total", 0.25, 200u32); 2])
        .unwrap();
    assert_eq!(total.get(), 100.5);
    let hist = pool.array("hist", 10).unwrap();
    let histogram = granted("histogram", Grants::new().shared(&hist));
    let xs: Vec<u32> = (0..1000).collect();
    let counted: Vec<u32> = pool
        .starmap(
            &histogram,
            xs.chunks(250)
                .map(|part| ("hist", part.to_vec()))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    assert_eq!(counted, [10; 4]);
    assert_eq!(hist.to_vec(), vec![100; 10]);
    let read = granted("array-read", Grants::new().shared_as("a", &hist));
    let write = granted("array-write", Grants::new().shared_as("a", &hist));
    let err = pool
        .apply::<_, ()>(&write, ("a", 9u32, vec![1i64, 2]))
        .unwrap_err();
    assert!(err.to_string().contains("out-of-range(10)"), "{err}");
    assert_eq!(
        pool.apply::<_, Vec<i64>>(&read, ("a",)).unwrap(),
        vec![100; 10]
    );
    let words = pool.dict("words").unwrap();
    let count = granted("dict-count", Grants::new().shared(&words));
    let _: Vec<u64> = pool.starmap(&count, [("words", "n", 300u32); 4]).unwrap();
    assert_eq!(words.get_bytes("n").as_deref(), Some(&b"1200"[..]));
}

#[test]
fn a_wait_over_the_link_ends_at_the_tasks_timeout() {
    let Some(sshd) = Sshd::start("remote_shared::a_wait_over_the_link_ends") else {
        return;
    };
    let pool = Pool::builder()
        .remote(ssh(&sshd), "127.0.0.1", 1)
        .on_output(|_| {})
        .build()
        .unwrap();
    let empty = pool.queue("empty").unwrap();
    let wait = with_timeout(
        granted("wait-for-item", Grants::new().shared(&empty)),
        Duration::from_millis(500),
    );
    let started = Instant::now();
    let err = pool
        .apply::<_, Vec<u8>>(&wait, ("empty", None::<u32>))
        .unwrap_err();
    assert!(matches!(err, TaskError::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the wait outlived its timeout: {:?}",
        started.elapsed()
    );
    // A wait of its own that runs out is the task's to handle: `timeout`.
    let short = granted("wait-for-item", Grants::new().shared(&empty));
    let err = pool
        .apply::<_, Vec<u8>>(&short, ("empty", Some(50u32)))
        .unwrap_err();
    assert!(err.to_string().contains("timeout"), "{err}");
    // A pipe between the host (end `p.a`) and a task behind ssh (end `p.b`), both ways.
    let (a, b) = pool.pipe("p").unwrap();
    let echo = with_timeout(
        granted("pipe-echo", Grants::new().shared(&b)),
        Duration::from_secs(30),
    );
    let echoing = pool.submit::<_, ()>(&echo, ("p.b", 3u32));
    for message in ["one", "two", "three"] {
        a.send(message).unwrap();
    }
    for message in ["one", "two", "three"] {
        assert_eq!(
            a.recv_timeout::<String>(Duration::from_secs(10)).unwrap(),
            message
        );
    }
    echoing.result().unwrap();
    // A name not granted is refused on the far side too.
    let open = granted("open-value", Grants::new());
    let err = pool.apply::<_, i64>(&open, ("counter",)).unwrap_err();
    assert!(err.to_string().contains("not-granted(counter)"), "{err}");
}

#[test]
fn a_lock_held_by_a_killed_remote_worker_is_released_as_abandoned() {
    let Some(sshd) = Sshd::start("remote_shared::a_lock_held_by_a_killed_remote_worker") else {
        return;
    };
    let pool = Pool::builder()
        .remote(ssh(&sshd), "127.0.0.1", 1)
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
            start.elapsed() < Duration::from_secs(20),
            "the remote task never took the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let remote = sshd.remote_workers();
    assert_eq!(remote.len(), 1, "{remote:?}");
    // SAFETY: SIGKILL to the remote worker our sshd started.
    unsafe { libc::kill(remote[0] as libc::pid_t, libc::SIGKILL) };
    let err = blocked.result().unwrap_err();
    assert!(matches!(err, TaskError::WorkerCrashed { .. }), "{err}");
    let guard = lock.acquire(Some(Duration::from_secs(10))).unwrap();
    assert!(
        guard.abandoned(),
        "the dead remote worker's lock is marked abandoned"
    );
    drop(guard);
    // The relaunched remote worker takes it as any other: not abandoned now.
    let abandoned = granted("lock-abandoned", Grants::new().shared(&lock));
    assert!(!pool.apply::<_, bool>(&abandoned, ("l", 1000u32)).unwrap());

    // A task that traps holding the lock: its worker gives it back, as abandoned, over the
    // link.
    let trap = granted("hold-lock-and-trap", Grants::new().shared(&lock));
    let err = pool.apply::<_, ()>(&trap, ("l",)).unwrap_err();
    assert!(matches!(err, TaskError::Trap { .. }), "{err}");
    assert!(pool.apply::<_, bool>(&abandoned, ("l", 1000u32)).unwrap());
    // One timed out holding it: the same.
    let spin = with_timeout(
        granted("hold-lock-and-spin", Grants::new().shared(&lock)),
        Duration::from_millis(300),
    );
    let err = pool.apply::<_, ()>(&spin, ("l",)).unwrap_err();
    assert!(matches!(err, TaskError::Timeout { .. }), "{err}");
    assert!(pool.apply::<_, bool>(&abandoned, ("l", 1000u32)).unwrap());
    drop(pool);
    let left = sshd.wait_no_remote_workers(Duration::from_secs(5));
    assert!(left.is_empty(), "remote workers left behind: {left:?}");
}
