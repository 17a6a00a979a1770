//! The objects the host serves: queues, pipes and dicts. Their state is the host's; a task
//! reaches it with a [`SharedRequest`] on its worker's shared-state socket, answered by one
//! [`SharedReply`] from the thread [`serve`] runs for that worker. The host's own handles
//! (`SharedQueue`, `PipeEnd`, `SharedDict`) call the same methods directly.
//!
//! Waits: every wait has a deadline (the caller's, or the task's own), and one without (a
//! task with no timeout, waiting with `none`) still looks every [`SLICE`] whether its worker
//! is still there and the pool still open, so that no thread waits for a task that is gone.
//! An item taken for a worker that vanished before it got the answer goes back to the front
//! of its queue: an item is delivered to one `get` at the most, and never lost by a kill.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::SharedObjects;
use crate::wire::{self, SharedFailure, SharedReply, SharedRequest};

/// How often a wait without a deadline looks whether it should still wait.
const SLICE: Duration = Duration::from_millis(50);

/// How long a wait may go on, and what ends it early.
pub(crate) struct Wait<'a> {
    pub(crate) deadline: Option<Instant>,
    /// Whether whoever waits is still there (its worker connected, the pool open).
    pub(crate) still_wanted: &'a dyn Fn() -> bool,
}

impl Wait<'_> {
    /// A wait of `timeout` at the most (`None`: until nobody wants it any more).
    pub(crate) fn within(timeout: Option<Duration>, still_wanted: &dyn Fn() -> bool) -> Wait<'_> {
        Wait {
            deadline: timeout.map(|t| Instant::now() + t),
            still_wanted,
        }
    }

    /// Waits on `changed` until it is notified or the next slice ends; `Err` when the wait is
    /// over (its deadline passed, or nobody wants it).
    fn on<'g, T>(
        &self,
        changed: &Condvar,
        guard: MutexGuard<'g, T>,
    ) -> Result<MutexGuard<'g, T>, SharedFailure> {
        let slice = match self.deadline {
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(SharedFailure::Timeout);
                }
                (deadline - now).min(SLICE)
            }
            None => SLICE,
        };
        if !(self.still_wanted)() {
            return Err(SharedFailure::Gone);
        }
        let (guard, _) = changed
            .wait_timeout(guard, slice)
            .unwrap_or_else(|e| e.into_inner());
        Ok(guard)
    }
}

/// A first-in first-out queue of byte strings, bounded or not.
#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
    /// Bumped under the lock at every change, so that a waiter can spin on it before it
    /// sleeps: waking a thread that sleeps on the other core costs tens of microseconds (see
    /// `crate::spin`), more than a whole round trip of a task's `put` or `get`.
    changes: AtomicU64,
    capacity: Option<usize>,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Vec<u8>>,
    closed: bool,
}

impl Queue {
    pub(crate) fn new(capacity: Option<usize>) -> Queue {
        Queue {
            state: Mutex::default(),
            changed: Condvar::new(),
            changes: AtomicU64::new(0),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Says that the queue changed (call with the lock held), and wakes its sleepers.
    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Release);
        self.changed.notify_all();
    }

    /// Waits for the next change: spinning briefly, then sleeping on the condition.
    fn next_change<'g>(
        &'g self,
        state: MutexGuard<'g, QueueState>,
        wait: &Wait<'_>,
    ) -> Result<MutexGuard<'g, QueueState>, SharedFailure> {
        let seen = self.changes.load(Ordering::Acquire);
        drop(state);
        let changed = || self.changes.load(Ordering::Acquire) != seen;
        if crate::spin::spin_until(changed) {
            return Ok(self.lock());
        }
        let state = self.lock();
        if changed() {
            return Ok(state);
        }
        wait.on(&self.changed, state)
    }

    /// Appends `item`, waiting for room in a bounded queue.
    pub(crate) fn put(&self, item: Vec<u8>, wait: &Wait<'_>) -> Result<(), SharedFailure> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return Err(SharedFailure::Closed);
            }
            if self.capacity.is_none_or(|cap| state.items.len() < cap) {
                state.items.push_back(item);
                self.changed();
                return Ok(());
            }
            // A put that may not wait finds the queue full; one that waited ran out of time.
            if wait
                .deadline
                .is_some_and(|deadline| deadline <= Instant::now())
            {
                return Err(SharedFailure::Full);
            }
            state = self.next_change(state, wait)?;
        }
    }

    /// Takes the first item, waiting for one; `Closed` once the queue is closed and empty.
    pub(crate) fn get(&self, wait: &Wait<'_>) -> Result<Vec<u8>, SharedFailure> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                self.changed();
                return Ok(item);
            }
            if state.closed {
                return Err(SharedFailure::Closed);
            }
            state = self.next_change(state, wait)?;
        }
    }

    /// Puts back an item a `get` took for a task that is gone: first in line again.
    fn unget(&self, item: Vec<u8>) {
        let mut state = self.lock();
        state.items.push_front(item);
        self.changed();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// No more puts; gets drain what is left.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        self.changed();
    }

    /// A copy of what is waiting, in order (for `--state`).
    pub(crate) fn snapshot(&self) -> Vec<Vec<u8>> {
        self.lock().items.iter().cloned().collect()
    }
}

/// A two-ended channel: what end 0 sends, end 1 receives, and the other way round.
#[derive(Debug)]
pub(crate) struct Pipe {
    /// `inbox[end]`: the messages waiting for `end`, and whether the other end closed.
    inbox: [Queue; 2],
}

impl Pipe {
    pub(crate) fn new() -> Pipe {
        Pipe {
            inbox: [Queue::new(None), Queue::new(None)],
        }
    }

    fn end(end: u8) -> Result<usize, SharedFailure> {
        match end {
            0 | 1 => Ok(usize::from(end)),
            _ => Err(SharedFailure::Other(format!(
                "a pipe has ends 0 and 1, not {end}"
            ))),
        }
    }

    pub(crate) fn send(&self, end: u8, message: Vec<u8>) -> Result<(), SharedFailure> {
        let other = 1 - Pipe::end(end)?;
        // After this end's `close`, the other's inbox is closed: a send is then `closed`.
        self.inbox[other].put(message, &Wait::within(None, &|| true))
    }

    pub(crate) fn recv(&self, end: u8, wait: &Wait<'_>) -> Result<Vec<u8>, SharedFailure> {
        self.inbox[Pipe::end(end)?].get(wait)
    }

    /// Whether a message waits for `end` (or the pipe is closed), after waiting at most `wait`.
    pub(crate) fn poll(&self, end: u8, wait: &Wait<'_>) -> Result<bool, SharedFailure> {
        let inbox = &self.inbox[Pipe::end(end)?];
        let mut state = inbox.lock();
        loop {
            if !state.items.is_empty() || state.closed {
                return Ok(!state.items.is_empty());
            }
            state = match inbox.next_change(state, wait) {
                Ok(state) => state,
                Err(SharedFailure::Timeout) => return Ok(false),
                Err(other) => return Err(other),
            };
        }
    }

    /// `end` is done sending: the other end drains what it sent, then sees `closed`.
    pub(crate) fn close(&self, end: u8) -> Result<(), SharedFailure> {
        let other = 1 - Pipe::end(end)?;
        self.inbox[other].close();
        Ok(())
    }

    /// Unreceived messages sent to `end`, back first in line (for a receiver that vanished).
    fn unrecv(&self, end: u8, message: Vec<u8>) {
        if let Ok(end) = Pipe::end(end) {
            self.inbox[end].unget(message);
        }
    }
}

/// A dictionary of byte strings under string keys (`wasi:keyvalue`'s bucket).
#[derive(Debug, Default)]
pub(crate) struct Dict {
    entries: Mutex<BTreeMap<String, Vec<u8>>>,
}

/// How many keys one `list-keys` answers at the most; its cursor goes on from there.
const KEYS_PER_PAGE: usize = 1000;

impl Dict {
    pub(crate) fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A page of keys from `cursor` on, and the cursor of the next page.
    pub(crate) fn keys(&self, cursor: Option<u64>) -> (Vec<String>, Option<u64>) {
        let entries = self.lock();
        let start = cursor.unwrap_or(0) as usize;
        let keys: Vec<String> = entries
            .keys()
            .skip(start)
            .take(KEYS_PER_PAGE)
            .cloned()
            .collect();
        let next = (start + keys.len() < entries.len()).then(|| (start + keys.len()) as u64);
        (keys, next)
    }

    /// Adds `delta` to the number stored as decimal text under `key` (0 if absent).
    pub(crate) fn increment(&self, key: &str, delta: u64) -> Result<u64, SharedFailure> {
        let mut entries = self.lock();
        let current = match entries.get(key) {
            None => 0,
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    SharedFailure::Other(format!("the value of `{key}` is not a decimal number"))
                })?,
        };
        let new = current
            .checked_add(delta)
            .ok_or_else(|| SharedFailure::Other(format!("`{key}` would overflow u64")))?;
        entries.insert(key.to_string(), new.to_string().into_bytes());
        Ok(new)
    }
}

/// Answers one worker's requests until its socket closes (the worker ended or was killed).
pub(crate) fn serve(objects: Arc<SharedObjects>, socket: UnixStream) {
    let Ok(write_half) = socket.try_clone() else {
        return;
    };
    let watch = socket.try_clone().ok();
    let mut input = BufReader::new(crate::spin::SpinRead(socket));
    let mut output = write_half;
    let mut buf = Vec::new();
    let mut frame = Vec::new();
    let still_wanted =
        || !objects.closing() && watch.as_ref().is_some_and(|socket| !hung_up(socket));
    while let Ok(Some(request)) = wire::read_frame::<SharedRequest>(&mut input, &mut buf) {
        let reply = answer(&objects, &request, &still_wanted);
        let sent =
            wire::encode_frame(&reply, &mut frame).is_ok() && output.write_all(&frame).is_ok();
        if !sent {
            // The task is gone: what it took goes back.
            give_back(&objects, &request, reply);
            return;
        }
    }
}

/// Puts an item or message taken for a task that never got it back where it was.
fn give_back(objects: &SharedObjects, request: &SharedRequest, reply: SharedReply) {
    let SharedReply::Bytes(item) = reply else {
        return;
    };
    match request {
        SharedRequest::Get { queue, .. } => {
            if let Ok(queue) = objects.queue(*queue) {
                queue.unget(item);
            }
        }
        SharedRequest::Recv { pipe, end, .. } => {
            if let Ok(pipe) = objects.pipe(*pipe) {
                pipe.unrecv(*end, item);
            }
        }
        _ => {}
    }
}

/// Whether the other end of `socket` has gone.
fn hung_up(socket: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack, a zero timeout.
    let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
    ready > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

fn answer(
    objects: &SharedObjects,
    request: &SharedRequest,
    still_wanted: &dyn Fn() -> bool,
) -> SharedReply {
    let wait = |ms: &Option<u32>| {
        Wait::within(ms.map(|ms| Duration::from_millis(ms.into())), still_wanted)
    };
    let result = match request {
        SharedRequest::Put {
            queue,
            item,
            wait_ms,
        } => objects
            .queue(*queue)
            .and_then(|q| q.put(item.clone(), &wait(wait_ms)))
            .map(|()| SharedReply::Done),
        SharedRequest::Get { queue, wait_ms } => objects
            .queue(*queue)
            .and_then(|q| q.get(&wait(wait_ms)))
            .map(SharedReply::Bytes),
        SharedRequest::Len { queue } => objects
            .queue(*queue)
            .map(|q| SharedReply::Number(q.len() as u64)),
        SharedRequest::Close { queue } => objects.queue(*queue).map(|q| {
            q.close();
            SharedReply::Done
        }),
        SharedRequest::Send { pipe, end, message } => objects
            .pipe(*pipe)
            .and_then(|p| p.send(*end, message.clone()))
            .map(|()| SharedReply::Done),
        SharedRequest::Recv { pipe, end, wait_ms } => objects
            .pipe(*pipe)
            .and_then(|p| p.recv(*end, &wait(wait_ms)))
            .map(SharedReply::Bytes),
        SharedRequest::Poll { pipe, end, wait_ms } => objects
            .pipe(*pipe)
            .and_then(|p| p.poll(*end, &wait(wait_ms)))
            .map(SharedReply::Flag),
        SharedRequest::ClosePipe { pipe, end } => objects
            .pipe(*pipe)
            .and_then(|p| p.close(*end))
            .map(|()| SharedReply::Done),
        SharedRequest::DictGet { dict, key } => objects
            .dict(*dict)
            .map(|d| SharedReply::Maybe(d.lock().get(key).cloned())),
        SharedRequest::DictSet { dict, key, value } => objects.dict(*dict).map(|d| {
            d.lock().insert(key.clone(), value.clone());
            SharedReply::Done
        }),
        SharedRequest::DictDelete { dict, key } => objects.dict(*dict).map(|d| {
            d.lock().remove(key);
            SharedReply::Done
        }),
        SharedRequest::DictExists { dict, key } => objects
            .dict(*dict)
            .map(|d| SharedReply::Flag(d.lock().contains_key(key))),
        SharedRequest::DictKeys { dict, cursor } => objects.dict(*dict).map(|d| {
            let (keys, cursor) = d.keys(*cursor);
            SharedReply::Keys { keys, cursor }
        }),
        SharedRequest::DictIncrement { dict, key, delta } => objects
            .dict(*dict)
            .and_then(|d| d.increment(key, *delta))
            .map(SharedReply::Number),
        SharedRequest::DictGetMany { dict, keys } => objects.dict(*dict).map(|d| {
            let entries = d.lock();
            SharedReply::Many(
                keys.iter()
                    .map(|key| entries.get(key).map(|v| (key.clone(), v.clone())))
                    .collect(),
            )
        }),
        SharedRequest::DictSetMany { dict, entries } => objects.dict(*dict).map(|d| {
            let mut map = d.lock();
            for (key, value) in entries {
                map.insert(key.clone(), value.clone());
            }
            SharedReply::Done
        }),
        SharedRequest::DictDeleteMany { dict, keys } => objects.dict(*dict).map(|d| {
            let mut map = d.lock();
            for key in keys {
                map.remove(key);
            }
            SharedReply::Done
        }),
    };
    result.unwrap_or_else(SharedReply::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forever() -> bool {
        true
    }

    #[test]
    fn a_queue_is_fifo_drains_after_close_and_bounds_its_puts() {
        let queue = Queue::new(Some(2));
        let now = Wait::within(Some(Duration::ZERO), &forever);
        queue.put(b"1".to_vec(), &now).unwrap();
        queue.put(b"2".to_vec(), &now).unwrap();
        assert_eq!(queue.put(b"3".to_vec(), &now), Err(SharedFailure::Full));
        assert_eq!(queue.get(&now).unwrap(), b"1");
        queue.close();
        assert_eq!(queue.put(b"4".to_vec(), &now), Err(SharedFailure::Closed));
        assert_eq!(queue.get(&now).unwrap(), b"2");
        assert_eq!(queue.get(&now), Err(SharedFailure::Closed));
    }

    #[test]
    fn an_empty_get_times_out_and_a_wait_nobody_wants_ends() {
        let queue = Queue::new(None);
        let short = Wait::within(Some(Duration::from_millis(20)), &forever);
        assert_eq!(queue.get(&short), Err(SharedFailure::Timeout));
        let gone = Wait::within(None, &|| false);
        assert_eq!(queue.get(&gone), Err(SharedFailure::Gone));
    }

    #[test]
    fn a_pipe_delivers_in_order_then_closed() {
        let pipe = Pipe::new();
        let now = Wait::within(Some(Duration::ZERO), &forever);
        pipe.send(0, b"a".to_vec()).unwrap();
        pipe.send(0, b"b".to_vec()).unwrap();
        pipe.close(0).unwrap();
        assert!(pipe.poll(1, &now).unwrap());
        assert_eq!(pipe.recv(1, &now).unwrap(), b"a");
        assert_eq!(pipe.recv(1, &now).unwrap(), b"b");
        assert_eq!(pipe.recv(1, &now), Err(SharedFailure::Closed));
        assert!(!pipe.poll(0, &now).unwrap(), "nothing came the other way");
    }

    #[test]
    fn increment_keeps_decimal_text() {
        let dict = Dict::default();
        assert_eq!(dict.increment("n", 2).unwrap(), 2);
        assert_eq!(dict.increment("n", 3).unwrap(), 5);
        assert_eq!(dict.lock().get("n").unwrap(), b"5");
        dict.lock().insert("s".into(), b"text".to_vec());
        assert!(dict.increment("s", 1).is_err());
    }
}
