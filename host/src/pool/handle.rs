//! Handles on work in flight: [`TaskFuture`] (one task, from `submit` or `apply_async`),
//! [`MapResult`] (a whole `map_async`), and the `concurrent.futures` helpers
//! [`as_completed`] and [`wait`]. Both handles use the same names for the same things
//! (`result`, `done`, `wait`, `successful`), and every blocking call comes in three forms, as
//! crossbeam's channels do: blocking, `_timeout` (a duration from now) and `_deadline` (an
//! instant).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde::de::DeserializeOwned;

use crate::error::TaskError;

use crate::values::rust::{typed, typed_number};
use crate::values::wire::{Kind, Packed};

use super::job::Sink;
use super::outcome::Outcome;
use super::shelf::Shelf;

/// The shared state of one task: its outcome once known, and who waits for it.
pub(crate) struct Slot {
    func: String,
    state: Mutex<SlotState>,
    done: Condvar,
    /// Set once the outcome is in, so a waiter can spin on it without the lock.
    finished: AtomicBool,
}

#[derive(Default)]
struct SlotState {
    outcome: Option<Outcome>,
    started: bool,
    wakers: Vec<Waker>,
    watchers: Vec<(Sender<usize>, usize)>,
}

impl Slot {
    pub(crate) fn new(func: &str) -> Arc<Slot> {
        Arc::new(Slot {
            func: func.to_string(),
            state: Mutex::new(SlotState::default()),
            done: Condvar::new(),
            finished: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Files the outcome unless one is already there (the first outcome wins).
    fn complete(&self, outcome: Outcome) -> bool {
        let mut state = self.lock();
        if state.outcome.is_some() {
            return false;
        }
        state.outcome = Some(outcome);
        self.finished.store(true, Ordering::Release);
        for waker in state.wakers.drain(..) {
            waker.wake();
        }
        for (watcher, index) in state.watchers.drain(..) {
            let _ = watcher.send(index);
        }
        drop(state);
        self.done.notify_all();
        true
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Option<MutexGuard<'_, SlotState>> {
        // A task that ends within microseconds is not worth a sleep and a cross-core wake-up;
        // a caller who gave a shorter deadline than the spin does not wait for it.
        if deadline.is_none_or(|d| d >= Instant::now() + crate::spin::SPIN) {
            crate::spin::spin_until(|| self.finished.load(Ordering::Acquire));
        }
        let mut state = self.lock();
        while state.outcome.is_none() {
            match deadline {
                None => state = self.done.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    state = self
                        .done
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        Some(state)
    }

    /// `f` of the outcome, if it is in.
    pub(crate) fn outcome_with<T>(&self, f: impl FnOnce(&Outcome) -> T) -> Option<T> {
        self.lock().outcome.as_ref().map(f)
    }

    /// Waits for the outcome, then gives `f` of it.
    pub(crate) fn wait_outcome<T>(&self, f: impl FnOnce(&Outcome) -> T) -> T {
        let state = self.wait_deadline(None).expect("no deadline");
        f(state.outcome.as_ref().expect("completed"))
    }

    /// Registers `watcher` to receive `index` when the slot completes (at once if it has).
    fn watch(&self, watcher: Sender<usize>, index: usize) {
        let mut state = self.lock();
        if state.outcome.is_some() {
            let _ = watcher.send(index);
        } else {
            state.watchers.push((watcher, index));
        }
    }
}

impl Sink for Slot {
    fn deliver(&self, _index: usize, outcome: Outcome) {
        self.complete(outcome);
    }

    fn is_cancelled(&self, _index: usize) -> bool {
        self.lock().outcome.is_some()
    }

    fn start(&self, _index: usize) {
        self.lock().started = true;
    }
}

/// One task in flight, from [`crate::Pool::submit`] or [`crate::Pool::apply_async`]: Python's
/// `concurrent.futures.Future` and `multiprocessing`'s `AsyncResult` in one.
///
/// Block on it with [`TaskFuture::result`] (Python's `result()` and `get()`), poll it with
/// [`TaskFuture::done`] (`done()`, `ready()`), bound the wait with
/// [`TaskFuture::result_timeout`] or [`TaskFuture::result_deadline`], or `.await` it: it is a
/// [`std::future::Future`] too. Cloning gives another handle on the same task.
///
/// # Examples
/// ```no_run
/// # use std::time::Duration;
/// # let pool = wasmpool::Pool::new()?;
/// # let square = wasmpool::Module::from_file("square.wasm")?.task("square")?;
/// let future = pool.submit::<_, i64>(&square, (7,));
/// match future.result_timeout(Duration::from_secs(1)) {
///     Some(Ok(value)) => assert_eq!(value, 49),
///     Some(Err(e)) => eprintln!("the task failed: {e}"),
///     None => eprintln!("still running after a second"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TaskFuture<R> {
    slot: Arc<Slot>,
    _result: PhantomData<fn() -> R>,
}

impl<R> Clone for TaskFuture<R> {
    fn clone(&self) -> Self {
        TaskFuture {
            slot: Arc::clone(&self.slot),
            _result: PhantomData,
        }
    }
}

/// Two handles are equal when they are on the same task, so futures can key a map, as in
/// Python's `future_to_item = {executor.submit(f, item): item ...}`.
impl<R> PartialEq for TaskFuture<R> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.slot, &other.slot)
    }
}

impl<R> Eq for TaskFuture<R> {}

impl<R> std::hash::Hash for TaskFuture<R> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.slot), state);
    }
}

impl<R> std::fmt::Debug for TaskFuture<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskFuture")
            .field("func", &self.slot.func)
            .field("done", &self.slot.lock().outcome.is_some())
            .finish()
    }
}

impl<R: DeserializeOwned> TaskFuture<R> {
    pub(crate) fn new(slot: Arc<Slot>) -> Self {
        TaskFuture {
            slot,
            _result: PhantomData,
        }
    }

    /// Blocks until the task ends; its value or its error.
    pub fn result(&self) -> Result<R, TaskError> {
        let state = self.slot.wait_deadline(None).expect("no deadline");
        typed(&self.slot.func, state.outcome.as_ref().expect("completed"))
    }

    /// Like [`TaskFuture::result`], but gives up after `timeout`: `None` if the task has not
    /// ended by then (it keeps running).
    pub fn result_timeout(&self, timeout: Duration) -> Option<Result<R, TaskError>> {
        self.result_deadline(Instant::now() + timeout)
    }

    /// Like [`TaskFuture::result`], but gives up at `deadline`: `None` if the task has not
    /// ended by then (it keeps running).
    pub fn result_deadline(&self, deadline: Instant) -> Option<Result<R, TaskError>> {
        let state = self.slot.wait_deadline(Some(deadline))?;
        Some(typed(
            &self.slot.func,
            state.outcome.as_ref().expect("completed"),
        ))
    }

    /// Blocks until the task ends, without taking its value.
    pub fn wait(&self) {
        let _ = self.slot.wait_deadline(None);
    }

    /// Blocks until the task ends or `timeout` passes; whether it ended.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(Instant::now() + timeout)
    }

    /// Blocks until the task ends or `deadline` comes; whether it ended.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.slot.wait_deadline(Some(deadline)).is_some()
    }

    /// Whether the task has ended (with a value or an error).
    pub fn done(&self) -> bool {
        self.slot.lock().outcome.is_some()
    }

    /// Whether the task ended with a value; `None` while it runs.
    pub fn successful(&self) -> Option<bool> {
        self.slot.lock().outcome.as_ref().map(|o| o.is_ok())
    }

    /// Whether the task is running on a worker now.
    pub fn running(&self) -> bool {
        let state = self.slot.lock();
        state.started && state.outcome.is_none()
    }

    /// Cancels the task if it has not started: it will not run, and its outcome is
    /// [`TaskError::Cancelled`]. Returns whether it was cancelled (false once it has started
    /// or ended).
    pub fn cancel(&self) -> bool {
        let state = self.slot.lock();
        if state.started || state.outcome.is_some() {
            return false;
        }
        drop(state);
        self.slot.complete(Err(TaskError::Cancelled {
            func: self.slot.func.clone(),
        }))
    }

    /// Whether [`TaskFuture::cancel`] cancelled the task.
    pub fn cancelled(&self) -> bool {
        matches!(
            self.slot.lock().outcome,
            Some(Err(TaskError::Cancelled { .. }))
        )
    }
}

impl<R: DeserializeOwned> Future for TaskFuture<R> {
    type Output = Result<R, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.lock();
        match &state.outcome {
            Some(outcome) => Poll::Ready(typed(&self.slot.func, outcome)),
            None => {
                if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    state.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// The futures in the order they end, as `concurrent.futures.as_completed`: each is yielded as
/// soon as it is done, whether it succeeded or failed.
pub fn as_completed<R: DeserializeOwned>(
    futures: &[TaskFuture<R>],
) -> impl Iterator<Item = TaskFuture<R>> + '_ {
    let (tx, rx) = crossbeam_channel::unbounded();
    for (i, f) in futures.iter().enumerate() {
        f.slot.watch(tx.clone(), i);
    }
    drop(tx);
    rx.into_iter()
        .take(futures.len())
        .map(move |i| futures[i].clone())
}

/// When [`wait`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any future is done.
    FirstCompleted,
    /// As soon as any future fails, or all are done.
    FirstException,
    /// When all futures are done.
    AllCompleted,
}

/// The two sets [`wait`] returns.
#[derive(Debug)]
pub struct WaitOutcome<R> {
    /// The futures that are done.
    pub done: Vec<TaskFuture<R>>,
    /// The futures still pending.
    pub not_done: Vec<TaskFuture<R>>,
}

/// Waits on several futures, as `concurrent.futures.wait`: until `when` is met or `timeout`
/// (if given) passes; then splits them into done and not done.
pub fn wait<R: DeserializeOwned>(
    futures: &[TaskFuture<R>],
    when: ReturnWhen,
    timeout: Option<Duration>,
) -> WaitOutcome<R> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let (tx, rx) = crossbeam_channel::unbounded();
    for (i, f) in futures.iter().enumerate() {
        f.slot.watch(tx.clone(), i);
    }
    drop(tx);
    let mut finished = 0;
    while finished < futures.len() {
        let next = match deadline {
            None => rx.recv().ok(),
            Some(d) => rx.recv_deadline(d).ok(),
        };
        let Some(i) = next else { break };
        finished += 1;
        let failed = futures[i].successful() == Some(false);
        if when == ReturnWhen::FirstCompleted || (when == ReturnWhen::FirstException && failed) {
            break;
        }
    }
    let (done, not_done) = futures.iter().cloned().partition(|f| f.done());
    WaitOutcome { done, not_done }
}

/// The outcomes of a whole `map_async`, filed by input position.
pub(crate) struct Batch {
    func: String,
    state: Mutex<BatchState>,
    done: Condvar,
    /// Where the outcome slots go back when the batch is dropped, for the pool's next map.
    shelves: Arc<BatchShelves>,
}

/// A pool's spare vectors for its maps' outcomes (see [`Shelf`]).
#[derive(Default)]
pub(crate) struct BatchShelves {
    outcomes: Shelf<Option<Outcome>>,
    words: Shelf<u64>,
}

impl BatchShelves {
    /// Drops every kept vector.
    pub(crate) fn clear(&self) {
        self.outcomes.clear();
        self.words.clear();
    }
}

/// Each item's outcome, filed once. An item that succeeded with one number (from a frame of
/// packed results) is kept as that number's word, 8 bytes instead of the 96 of an
/// `Option<Outcome>`: a map of tiny items of numbers allocates, writes and reads no outcome
/// per item. Each vector is made only when its first outcome comes.
struct BatchState {
    /// How many items (their outcomes are `0..len`).
    len: usize,
    /// Which items have their outcome: the first one filed wins.
    filed: Vec<u64>,
    /// The outcome of each item filed as an [`Outcome`] (empty until one is).
    outcomes: Vec<Option<Outcome>>,
    /// The word of each item filed as a number (empty until one is), all of `kind`.
    words: Vec<u64>,
    kind: Option<Kind>,
    remaining: usize,
}

impl Batch {
    /// A batch expecting about `len` items (the input's size hint), open for more or fewer
    /// until [`Batch::seal`]: it cannot complete before then.
    pub(crate) fn open(func: &str, len: usize, shelves: &Arc<BatchShelves>) -> Arc<Batch> {
        Arc::new(Batch {
            func: func.to_string(),
            shelves: Arc::clone(shelves),
            state: Mutex::new(BatchState {
                len,
                filed: vec![0; len.div_ceil(64)],
                outcomes: Vec::new(),
                words: Vec::new(),
                kind: None,
                // One more than the items: the submission itself, released by `seal`.
                remaining: len + 1,
            }),
            done: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes room for items up to `len` (an input longer than its size hint said).
    pub(crate) fn reserve_to(&self, len: usize) {
        let mut state = self.lock();
        let more = len.saturating_sub(state.len);
        let len = len.max(state.len);
        state.resize(len);
        state.remaining += more;
    }

    /// Ends the submission with `len` items in all (fewer than expected if the input ended
    /// early): from now on the batch completes when they have all been delivered.
    pub(crate) fn seal(&self, len: usize) {
        let mut state = self.lock();
        let missing = state.len.saturating_sub(len);
        let len = len.min(state.len);
        state.resize(len);
        state.remaining -= missing + 1;
        if state.remaining == 0 {
            self.done.notify_all();
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        self.shelves
            .outcomes
            .put(std::mem::take(&mut state.outcomes));
        self.shelves.words.put(std::mem::take(&mut state.words));
    }
}

impl BatchState {
    /// Makes the items `0..len` (no more, no fewer), the ones added without an outcome.
    fn resize(&mut self, len: usize) {
        self.len = len;
        self.filed.resize(len.div_ceil(64), 0);
        if let Some(last) = self.filed.last_mut()
            && !len.is_multiple_of(64)
        {
            *last &= (1 << (len % 64)) - 1;
        }
        if !self.outcomes.is_empty() {
            self.outcomes.resize_with(len, || None);
        }
        if !self.words.is_empty() {
            self.words.resize(len, 0);
        }
    }

    /// Marks `index` filed; `false` if it already was.
    fn claim(&mut self, index: usize) -> bool {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        let fresh = self.filed[word] & bit == 0;
        self.filed[word] |= bit;
        fresh
    }

    fn is_filed(&self, index: usize) -> bool {
        self.filed[index / 64] & (1 << (index % 64)) != 0
    }

    fn file(&mut self, index: usize, outcome: Outcome, shelves: &BatchShelves) {
        if self.claim(index) {
            if self.outcomes.is_empty() {
                self.outcomes = shelves.outcomes.take(self.len);
                self.outcomes.resize_with(self.len, || None);
            }
            self.outcomes[index] = Some(outcome);
            self.remaining -= 1;
        }
    }

    /// Files the numbers of `bytes` (8 little-endian bytes each) as the outcomes of the items
    /// from `index` on; `false` (nothing filed) if they are not of the kind filed before.
    fn file_words(
        &mut self,
        index: usize,
        kind: Kind,
        bytes: &[u8],
        shelves: &BatchShelves,
    ) -> bool {
        if self.kind.is_some_and(|k| k != kind) || index + bytes.len() / 8 > self.len {
            return false;
        }
        self.kind = Some(kind);
        if self.words.is_empty() {
            self.words = shelves.words.take(self.len);
            self.words.resize(self.len, 0);
        }
        for (i, word) in bytes.chunks_exact(8).enumerate() {
            if self.claim(index + i) {
                self.words[index + i] = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                self.remaining -= 1;
            }
        }
        true
    }

    /// The outcome of item `index`, once all are filed, in the caller's type.
    fn typed<R: DeserializeOwned>(&self, func: &str, index: usize) -> Result<R, TaskError> {
        debug_assert!(self.is_filed(index));
        match self.outcomes.get(index) {
            Some(Some(outcome)) => typed(func, outcome),
            _ => typed_number(
                func,
                self.kind.expect("a number was filed"),
                self.words[index],
            ),
        }
    }

    /// Whether item `index`, once all are filed, succeeded.
    fn is_ok(&self, index: usize) -> bool {
        match self.outcomes.get(index) {
            Some(Some(outcome)) => outcome.is_ok(),
            _ => true,
        }
    }
}

impl Sink for Batch {
    fn deliver(&self, index: usize, outcome: Outcome) {
        self.deliver_all(&mut std::iter::once((index, outcome)));
    }

    fn deliver_all(&self, outcomes: &mut dyn Iterator<Item = (usize, Outcome)>) {
        let mut state = self.lock();
        for (index, outcome) in outcomes {
            state.file(index, outcome, &self.shelves);
        }
        if state.remaining == 0 {
            self.done.notify_all();
        }
    }

    fn deliver_packed(&self, index: usize, results: &Packed) -> bool {
        let Some((kind, bytes)) = results.number_bytes() else {
            return false;
        };
        let mut state = self.lock();
        if !state.file_words(index, kind, bytes, &self.shelves) {
            return false;
        }
        if state.remaining == 0 {
            self.done.notify_all();
        }
        true
    }
}

/// A whole `map` in flight, from [`crate::Pool::map_async`] or [`crate::Pool::starmap_async`]:
/// Python's `MapResult`, with the names of [`TaskFuture`] (`result` is Python's `get`, `done`
/// its `ready`).
pub struct MapResult<R> {
    batch: Arc<Batch>,
    _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for MapResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.batch.lock();
        f.debug_struct("MapResult")
            .field("func", &self.batch.func)
            .field("remaining", &state.remaining)
            .finish()
    }
}

impl<R: DeserializeOwned> MapResult<R> {
    pub(crate) fn new(batch: Arc<Batch>) -> Self {
        MapResult {
            batch,
            _result: PhantomData,
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Option<MutexGuard<'_, BatchState>> {
        let mut state = self.batch.lock();
        while state.remaining > 0 {
            match deadline {
                None => {
                    state = self
                        .batch
                        .done
                        .wait(state)
                        .unwrap_or_else(|e| e.into_inner())
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    state = self
                        .batch
                        .done
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        Some(state)
    }

    fn collect(&self, state: &BatchState) -> Result<Vec<R>, TaskError> {
        (0..state.len)
            .map(|i| state.typed(&self.batch.func, i))
            .collect()
    }

    /// Blocks until every item is done; all values in input order, or the first error in
    /// input order (as Python's `map_async(...).get()` raises the first exception).
    pub fn result(&self) -> Result<Vec<R>, TaskError> {
        let state = self.wait_until(None).expect("no deadline");
        self.collect(&state)
    }

    /// Like [`MapResult::result`], but `None` if not all items are done within `timeout`.
    pub fn result_timeout(&self, timeout: Duration) -> Option<Result<Vec<R>, TaskError>> {
        self.result_deadline(Instant::now() + timeout)
    }

    /// Like [`MapResult::result`], but `None` if not all items are done by `deadline`.
    pub fn result_deadline(&self, deadline: Instant) -> Option<Result<Vec<R>, TaskError>> {
        let state = self.wait_until(Some(deadline))?;
        Some(self.collect(&state))
    }

    /// Blocks until every item is done; each item's own outcome, in input order.
    pub fn outcomes(&self) -> Vec<Result<R, TaskError>> {
        let state = self.wait_until(None).expect("no deadline");
        (0..state.len)
            .map(|i| state.typed(&self.batch.func, i))
            .collect()
    }

    /// Blocks until every item is done.
    pub fn wait(&self) {
        let _ = self.wait_until(None);
    }

    /// Blocks until every item is done or `timeout` passes; whether all are done.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(Instant::now() + timeout)
    }

    /// Blocks until every item is done or `deadline` comes; whether all are done.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.wait_until(Some(deadline)).is_some()
    }

    /// Whether every item is done.
    pub fn done(&self) -> bool {
        self.batch.lock().remaining == 0
    }

    /// Whether every item is done and none failed; `None` while items remain.
    pub fn successful(&self) -> Option<bool> {
        let state = self.batch.lock();
        (state.remaining == 0).then(|| (0..state.len).all(|i| state.is_ok(i)))
    }
}
