//! The `shared` task: shared state between tasks, through the `wasmpool:shared` contract (locks,
//! values, arrays, queues, pipes) and `wasi:keyvalue` (the dict): the tutorial's locked counter,
//! a producer and a consumer, the two ends of a pipe, the bench's loops, and tasks that fail
//! holding a lock. The contract's errors come back as text (see [`describe`]).

// `generate_all`: the imported interfaces are of other packages (`wit/deps/`), which
// wit-bindgen otherwise expects bound elsewhere (`with`).
wit_bindgen::generate!({ path: "../../wit", world: "shared", generate_all });

use std::hint::black_box;

use wasi::keyvalue::{atomics, store};
use wasmpool::shared::lock::Lock;
use wasmpool::shared::pipe::Connection;
use wasmpool::shared::queue::Queue;
use wasmpool::shared::types::Error;
use wasmpool::shared::value::{Array, FloatArray, FloatValue, Value};

/// The message `pipe-ping` sends.
const PING: &[u8; 8] = b"ping1234";

/// The number of distinct keys `dict-set-many-times` sets.
const KEYS: u32 = 100;

struct Shared;

/// The contract's error as text: `not-granted(NAME)`, `timeout`, `closed`, `out-of-range(N)`,
/// `full`.
fn describe(error: Error) -> String {
    match error {
        Error::NotGranted(name) => format!("not-granted({name})"),
        Error::Timeout => "timeout".to_owned(),
        Error::Closed => "closed".to_owned(),
        Error::OutOfRange(index) => format!("out-of-range({index})"),
        Error::Full => "full".to_owned(),
    }
}

/// A keyvalue error as text: `no-such-store`, `access-denied`, `other: MESSAGE`.
fn describe_store(error: store::Error) -> String {
    match error {
        store::Error::NoSuchStore => "no-such-store".to_owned(),
        store::Error::AccessDenied => "access-denied".to_owned(),
        store::Error::Other(message) => format!("other: {message}"),
    }
}

impl From<Error> for String {
    fn from(error: Error) -> String {
        describe(error)
    }
}

impl From<store::Error> for String {
    fn from(error: store::Error) -> String {
        describe_store(error)
    }
}

/// Parses a queue item: the decimal text of an integer.
fn parse_item(item: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(item)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            format!(
                "not the decimal text of an integer: {:?}",
                String::from_utf8_lossy(item)
            )
        })
}

/// Bytes that must be UTF-8 text.
fn text(bytes: Vec<u8>, what: &str) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| format!("{what} is not UTF-8: {e}"))
}

/// Gets from `queue` (no timeout of its own) until `count` items or `closed`.
fn consume_up_to(queue: &str, count: Option<u32>) -> Result<Vec<i64>, String> {
    let queue = Queue::open(queue)?;
    let mut items = Vec::new();
    while count.is_none_or(|count| items.len() < count as usize) {
        match queue.get(None) {
            Ok(item) => items.push(parse_item(&item)?),
            Err(Error::Closed) => break,
            Err(e) => return Err(describe(e)),
        }
    }
    Ok(items)
}

/// Opens and acquires `lock` (no timeout of its own), or panics with why not.
fn must_acquire(who: &str, lock: &str) -> wasmpool::shared::lock::Guard {
    Lock::open(lock)
        .and_then(|lock| lock.acquire(None))
        .unwrap_or_else(|e| panic!("{who}: cannot acquire lock {lock}: {}", describe(e)))
}

impl Guest for Shared {
    fn locked_increment(lock: String, value: String, times: u32) -> Result<i64, String> {
        let lock = Lock::open(&lock)?;
        let value = Value::open(&value)?;
        let mut last = value.get();
        for _ in 0..times {
            let guard = lock.acquire(None)?;
            last = value.get() + 1;
            value.set(last);
            drop(guard);
        }
        Ok(last)
    }

    fn own_lock_increment(value: String, times: u32) -> Result<i64, String> {
        let value = Value::open(&value)?;
        let mut last = value.get();
        for _ in 0..times {
            let guard = value.lock(None)?;
            last = value.get() + 1;
            value.set(last);
            drop(guard);
        }
        Ok(last)
    }

    fn atomic_add(value: String, times: u32) -> Result<i64, String> {
        let value = Value::open(&value)?;
        let mut last = if times == 0 { value.get() } else { 0 };
        for _ in 0..times {
            last = value.add(1);
        }
        Ok(last)
    }

    fn float_add(value: String, delta: f64, times: u32) -> Result<f64, String> {
        let value = FloatValue::open(&value)?;
        let mut last = if times == 0 { value.get() } else { 0.0 };
        for _ in 0..times {
            last = value.add(delta);
        }
        Ok(last)
    }

    fn histogram(array: String, xs: Vec<u32>) -> Result<u32, String> {
        let array = Array::open(&array)?;
        let len = array.len();
        for x in xs {
            // An empty array: the host refuses index x.
            array.add(x.checked_rem(len).unwrap_or(x), 1)?;
        }
        Ok(len)
    }

    fn array_read(array: String) -> Result<Vec<i64>, String> {
        let array = Array::open(&array)?;
        Ok(array.read(0, array.len())?)
    }

    fn array_write(array: String, start: u32, values: Vec<i64>) -> Result<(), String> {
        Ok(Array::open(&array)?.write(start, &values)?)
    }

    fn float_array_scale(array: String, factor: f64) -> Result<Vec<f64>, String> {
        let array = FloatArray::open(&array)?;
        let scaled: Vec<f64> = array
            .read(0, array.len())?
            .into_iter()
            .map(|x| x * factor)
            .collect();
        array.write(0, &scaled)?;
        Ok(scaled)
    }

    fn produce(queue: String, first: i64, count: u32) -> Result<(), String> {
        let queue = Queue::open(&queue)?;
        for i in 0..count {
            let item = first
                .checked_add(i64::from(i))
                .ok_or_else(|| format!("item {first} + {i} overflows s64"))?;
            queue.put(item.to_string().as_bytes(), None)?;
        }
        Ok(())
    }

    fn consume(queue: String, count: u32) -> Result<Vec<i64>, String> {
        consume_up_to(&queue, Some(count))
    }

    fn consume_all(queue: String) -> Result<Vec<i64>, String> {
        consume_up_to(&queue, None)
    }

    fn close_queue(queue: String) -> Result<(), String> {
        Queue::open(&queue)?.close();
        Ok(())
    }

    fn queue_len(queue: String) -> Result<u32, String> {
        Ok(Queue::open(&queue)?.len())
    }

    fn wait_for_item(queue: String, timeout_ms: Option<u32>) -> Result<Vec<u8>, String> {
        Ok(Queue::open(&queue)?.get(timeout_ms)?)
    }

    fn pipe_send(end: String, messages: Vec<String>) -> Result<(), String> {
        let end = Connection::open(&end)?;
        for message in messages {
            end.send(message.as_bytes())?;
        }
        end.close();
        Ok(())
    }

    fn pipe_receive(end: String) -> Result<Vec<String>, String> {
        let end = Connection::open(&end)?;
        let mut messages = Vec::new();
        loop {
            match end.recv(None) {
                Ok(message) => messages.push(text(message, "a message")?),
                Err(Error::Closed) => return Ok(messages),
                Err(e) => return Err(describe(e)),
            }
        }
    }

    fn pipe_echo(end: String, count: u32) -> Result<(), String> {
        let end = Connection::open(&end)?;
        for _ in 0..count {
            let message = end.recv(None)?;
            end.send(&message)?;
        }
        Ok(())
    }

    fn pipe_ping(end: String, count: u32) -> Result<u32, String> {
        let end = Connection::open(&end)?;
        for _ in 0..count {
            end.send(PING)?;
            end.recv(None)?;
        }
        Ok(count)
    }

    fn dict_set(bucket: String, key: String, value: String) -> Result<(), String> {
        Ok(store::open(&bucket)?.set(&key, value.as_bytes())?)
    }

    fn dict_get(bucket: String, key: String) -> Result<Option<String>, String> {
        store::open(&bucket)?
            .get(&key)?
            .map(|value| text(value, "the value"))
            .transpose()
    }

    fn dict_set_many_times(bucket: String, times: u32) -> Result<(), String> {
        let bucket = store::open(&bucket)?;
        for i in 0..times {
            bucket.set(&format!("k{}", i % KEYS), i.to_string().as_bytes())?;
        }
        Ok(())
    }

    fn dict_count(bucket: String, key: String, times: u32) -> Result<u64, String> {
        let bucket = store::open(&bucket)?;
        if times == 0 {
            return match bucket.get(&key)? {
                None => Ok(0),
                Some(value) => text(value, "the count")?
                    .parse()
                    .map_err(|_| format!("the count of {key} is not a decimal integer")),
            };
        }
        let mut last = 0;
        for _ in 0..times {
            last = atomics::increment(&bucket, &key, 1)?;
        }
        Ok(last)
    }

    fn dict_keys(bucket: String) -> Result<Vec<String>, String> {
        let bucket = store::open(&bucket)?;
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = bucket.list_keys(cursor)?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn hold_lock_and_trap(lock: String) {
        let guard = must_acquire("hold-lock-and-trap", &lock);
        // Never dropped, even if a panic unwound (on wasm32-wasip2 it aborts): the task dies
        // holding the lock.
        std::mem::forget(guard);
        panic!("hold-lock-and-trap: trapping while holding lock {lock}");
    }

    fn hold_lock_and_spin(lock: String) {
        let guard = must_acquire("hold-lock-and-spin", &lock);
        black_box(&guard);
        let mut x: u64 = 1;
        loop {
            // A linear congruential step: work the optimizer cannot drop.
            x = black_box(
                x.wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407),
            );
        }
    }

    fn hold_lock_and_block(lock: String, queue: String) {
        let guard = must_acquire("hold-lock-and-block", &lock);
        let queue = Queue::open(&queue).unwrap_or_else(|e| {
            panic!(
                "hold-lock-and-block: cannot open queue {queue}: {}",
                describe(e)
            )
        });
        if let Err(e) = queue.get(None) {
            panic!(
                "hold-lock-and-block: waiting on the queue while holding lock {lock}: {}",
                describe(e)
            );
        }
        drop(guard);
    }

    fn lock_abandoned(lock: String, timeout_ms: u32) -> Result<bool, String> {
        let guard = Lock::open(&lock)?.acquire(Some(timeout_ms))?;
        Ok(guard.abandoned())
    }

    fn open_value(name: String) -> Result<i64, String> {
        Ok(Value::open(&name)?.get())
    }
}

export!(Shared);
