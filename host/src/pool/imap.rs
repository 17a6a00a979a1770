//! Lazy streams over an input iterator of any length, with a bounded number of chunks in
//! flight, so a million-item input never sits in memory at once: [`Imap`] (`imap` and
//! `imap_unordered`, each outcome as the caller's Rust type) and [`ImapJson`] (`imap_json`,
//! each outcome as JSON with its position, for front ends such as the command line).
//!
//! Both are a [`Feed`], which pulls checked items from the input and submits them in chunks
//! sized by [`Chunking`], and a [`Window`], which receives outcomes and yields them in the
//! order asked for. An `Imap` feeds on the caller's thread, as it pulls outcomes; an
//! `ImapJson` feeds on a thread of its own, so that an input that is slow to come (a pipe from
//! a program that writes a line now and then) never holds back outcomes that are ready.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde::de::DeserializeOwned;

use crate::error::TaskError;
use crate::module::Task;
use crate::values::Values;
use crate::values::json::{Names, results_json};
use crate::values::rust::typed;

use super::job::{Gather, Seen, Sink};
use super::outcome::Outcome;
use super::{CheckedItem, Pool, Shared};

/// In which order a stream yields its outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// In input order (`imap`): an outcome waits for every one before it.
    #[default]
    Input,
    /// As tasks finish (`imap_unordered`).
    Completion,
}

/// How a stream sizes its chunks, and how many it keeps queued or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunking {
    /// Every chunk has `size` items.
    Fixed { size: usize, in_flight: usize },
    /// Chunks as large as take about [`CHUNK_TIME`] by the item time the drivers measure (see
    /// [`Chunking::next_size`]).
    Measured { in_flight: usize },
}

/// About how long a measured chunk takes on a worker: long enough that the round trip around
/// it (tens of microseconds) is a small part, short enough that the last chunks of a stream
/// still spread over the workers.
const CHUNK_TIME: Duration = Duration::from_millis(2);
/// The most items in a measured chunk: what a stream holds in flight stays bounded.
const MAX_MEASURED_CHUNK: usize = 4096;
/// Items per worker that a stream of small fixed chunks keeps in flight: measured with 1-item
/// chunks on two workers, 2 items per worker streamed 31 k items/s, 8 gave 45 k, 32 gave 60 k,
/// 128 gave 69 k.
const ITEMS_IN_FLIGHT_PER_WORKER: usize = 64;
/// The most room a chunk's vector is given before its items are pulled: a huge chunk size
/// asked for must not be a huge allocation for a short input.
const MAX_CHUNK_RESERVE: usize = 4096;

/// How many chunks of about [`CHUNK_TIME`] cover a link's round trip `rtt`, and one more: what
/// a stream keeps in flight beyond its bound for each remote worker, so that the worker is not
/// left idle for a round trip between chunks (at most 64).
pub(crate) fn chunks_to_cover(rtt: Duration) -> usize {
    ((rtt.as_nanos() / CHUNK_TIME.as_nanos()) as usize + 1).min(64)
}

impl Chunking {
    /// The pool's chunking: `size` items per chunk if the caller chose it, else measured;
    /// `in_flight` chunks at most if the caller chose it.
    pub(crate) fn new(size: Option<usize>, in_flight: Option<usize>, workers: usize) -> Self {
        match size {
            Some(size) => Chunking::Fixed {
                size,
                in_flight: in_flight.unwrap_or_else(|| {
                    (2 * workers).max(ITEMS_IN_FLIGHT_PER_WORKER * workers / size)
                }),
            },
            // Three per worker: one running, one sent ahead of it, one queued for whichever
            // worker is free first.
            None => Chunking::Measured {
                in_flight: in_flight.unwrap_or(3 * workers),
            },
        }
    }

    /// The bound, with what the remote workers' links add (see [`chunks_to_cover`]).
    fn in_flight(self, shared: &Shared) -> usize {
        match self {
            Chunking::Fixed { in_flight, .. } | Chunking::Measured { in_flight } => in_flight,
        }
        .max(1)
            + shared.link_chunks()
    }

    /// The size of the next chunk, after one of `last` items. Measured: as many items as take
    /// about [`CHUNK_TIME`] by the drivers' latest measure, at most twice the last chunk (so
    /// that one quick item cannot send thousands of slow ones in one chunk), and one while
    /// nothing is measured yet (so that a few slow items spread over all the workers at once).
    fn next_size(self, shared: &Shared, last: usize) -> usize {
        match self {
            Chunking::Fixed { size, .. } => size.max(1),
            Chunking::Measured { .. } => {
                let fits = match shared.item_time() {
                    Some(item) => (CHUNK_TIME.as_nanos() / item.as_nanos().max(1)) as usize,
                    None => 1,
                };
                fits.clamp(1, MAX_MEASURED_CHUNK)
                    .min(last.saturating_mul(2).max(1))
            }
        }
    }
}

/// A stream's input: each item's arguments, already checked against the signature (or why
/// not), borrowed from the caller for `'a`.
type Input<'a> = Box<dyn Iterator<Item = Result<Values, TaskError>> + 'a>;

/// What travels on a stream's channel.
enum Delivery {
    /// Outcomes, a frame's worth at a time: one message for all the outcomes a worker reported
    /// together.
    Outcomes(Vec<(usize, Outcome)>),
    /// The same, each with what its item printed and its time, for a stream that captures them.
    Seen(Vec<(usize, Outcome, Seen)>),
    /// The input ended, after this many items (sent by a feed on its own thread).
    Ended(usize),
}

/// Where a stream's outcomes arrive, tagged by input position; with what each item printed
/// and its time when the stream captures them.
struct Channel {
    tx: Sender<Delivery>,
    captures: bool,
}

impl Sink for Channel {
    fn deliver(&self, index: usize, outcome: Outcome) {
        let _ = self.tx.send(Delivery::Outcomes(vec![(index, outcome)]));
    }

    fn deliver_all(&self, outcomes: &mut dyn Iterator<Item = (usize, Outcome)>) {
        let _ = self.tx.send(Delivery::Outcomes(outcomes.collect()));
    }

    fn observes(&self) -> bool {
        self.captures
    }

    fn deliver_seen(&self, outcomes: &mut dyn Iterator<Item = (usize, Outcome, Seen)>) {
        let _ = self.tx.send(Delivery::Seen(outcomes.collect()));
    }
}

/// Pulls checked items from the input and submits them as chunks, while what is in flight
/// (submitted and not yet yielded) stays within the chunking's bound.
struct Feed<I> {
    shared: Arc<Shared>,
    task: Task,
    /// Each item's arguments, already checked against the signature (or why not).
    input: I,
    chunking: Chunking,
    sink: Arc<Channel>,
    /// The size of the last chunk submitted.
    last_size: usize,
    submitted: usize,
    done: bool,
}

impl<I: Iterator<Item = Result<Values, TaskError>>> Feed<I> {
    /// A feed of `input` into `pool` for `task`, its outcomes to `sink`.
    fn new(pool: &Pool, task: &Task, input: I, sink: Arc<Channel>) -> Self {
        Feed {
            shared: Arc::clone(&pool.shared),
            task: task.clone(),
            input,
            chunking: pool.imap_chunking,
            sink,
            last_size: 0,
            submitted: 0,
            done: false,
        }
    }

    /// Submits the next chunk if the bound allows it, `yielded` items having been consumed;
    /// whether it did (`false`: no room, or the input is over).
    fn submit_next(&mut self, yielded: usize) -> bool {
        if self.done {
            return false;
        }
        let size = self.chunking.next_size(&self.shared, self.last_size);
        let in_flight = self.submitted - yielded;
        if in_flight > 0
            && in_flight + size > size.saturating_mul(self.chunking.in_flight(&self.shared))
        {
            return false;
        }
        let mut chunk = Vec::with_capacity(size.min(MAX_CHUNK_RESERVE));
        while chunk.len() < size {
            match self.input.next() {
                Some(args) => chunk.push(CheckedItem {
                    index: self.submitted + chunk.len(),
                    args,
                }),
                None => {
                    self.done = true;
                    break;
                }
            }
        }
        if chunk.is_empty() {
            return false;
        }
        self.last_size = chunk.len();
        self.submitted += chunk.len();
        let sink: Arc<dyn Sink> = self.sink.clone();
        self.shared
            .enqueue(&self.task, chunk.into_iter(), sink, Gather::No);
        true
    }

    /// How many items must have been yielded before the next chunk fits in the bound.
    fn room_at(&self) -> usize {
        let size = self.chunking.next_size(&self.shared, self.last_size);
        let slack = size.saturating_mul(self.chunking.in_flight(&self.shared)) - size;
        self.submitted.saturating_sub(slack)
    }

    /// Submits chunks until the bound is reached or the input ends.
    fn refill(&mut self, yielded: usize) {
        while self.submit_next(yielded) {}
    }
}

/// An outcome in the window: its input position, and what its item printed and its time when
/// the stream captures them.
type Arrived = (usize, Outcome, Option<Seen>);

/// Outcomes on their way to the consumer, in the order asked for.
struct Window {
    order: Order,
    results: Receiver<Delivery>,
    /// Outcomes received and not yet yielded. In input order: the outcome of item
    /// `yielded + i` at `i`, `None` while it has not arrived (the window is as wide as what
    /// is in flight). In completion order: as they arrived, all `Some`.
    arrived: VecDeque<Option<Arrived>>,
    yielded: usize,
    /// How many items the input had, once it is known to have ended.
    ended: Option<usize>,
}

impl Window {
    fn new(order: Order, captures: bool) -> (Window, Arc<Channel>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let window = Window {
            order,
            results: rx,
            arrived: VecDeque::new(),
            yielded: 0,
            ended: None,
        };
        (window, Arc::new(Channel { tx, captures }))
    }

    /// Whether [`Window::next`] would return at once: the next outcome is in, or the stream
    /// is over. `false` may be wrong the other way (an outcome on its way in), never this way.
    fn ready(&self) -> bool {
        matches!(self.arrived.front(), Some(Some(_))) || self.ended == Some(self.yielded)
    }

    /// The next outcome, waiting for it if need be; `None` once every item of the input has
    /// been yielded. `ended` is the input's length if the caller knows it has ended;
    /// `give_up` is asked while waiting whether to stop waiting for an end that may never be
    /// announced.
    fn next(&mut self, ended: Option<usize>, give_up: impl Fn(usize) -> bool) -> Option<Arrived> {
        loop {
            if let Some(Some(_)) = self.arrived.front() {
                self.yielded += 1;
                return self.arrived.pop_front().flatten();
            }
            if ended.or(self.ended) == Some(self.yielded) {
                return None;
            }
            let delivery = match self.results.recv_timeout(Duration::from_millis(50)) {
                Ok(delivery) => delivery,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) if give_up(self.yielded) => {
                    return None;
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
            };
            match delivery {
                Delivery::Ended(total) => self.ended = Some(total),
                Delivery::Outcomes(frame) => {
                    self.file(
                        frame
                            .into_iter()
                            .map(|(index, outcome)| (index, outcome, None)),
                    );
                }
                Delivery::Seen(frame) => {
                    self.file(
                        frame
                            .into_iter()
                            .map(|(index, outcome, seen)| (index, outcome, Some(seen))),
                    );
                }
            }
        }
    }
}

impl Window {
    /// Files a frame's outcomes in the order the window yields them.
    fn file(&mut self, frame: impl Iterator<Item = Arrived>) {
        match self.order {
            Order::Completion => self.arrived.extend(frame.map(Some)),
            Order::Input => {
                for arrived in frame {
                    let at = arrived.0 - self.yielded;
                    if self.arrived.len() <= at {
                        self.arrived.resize_with(at + 1, || None);
                    }
                    self.arrived[at] = Some(arrived);
                }
            }
        }
    }
}

/// The iterator [`Pool::imap`] and [`Pool::imap_unordered`] return: one `Result` per input
/// item, in input order (`imap`) or completion order (`imap_unordered`). It pulls the input
/// on the caller's thread, as the caller pulls outcomes.
pub struct Imap<'a, R> {
    feed: Feed<Input<'a>>,
    window: Window,
    _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("func", &self.feed.task.name())
            .field("submitted", &self.feed.submitted)
            .field("yielded", &self.window.yielded)
            .finish()
    }
}

impl<'a, R: DeserializeOwned> Imap<'a, R> {
    pub(crate) fn new(pool: &'a Pool, task: &Task, input: Input<'a>, order: Order) -> Self {
        let (window, sink) = Window::new(order, false);
        let feed = Feed::new(pool, task, input, sink);
        Imap {
            feed,
            window,
            _result: PhantomData,
        }
    }
}

impl<R: DeserializeOwned> Iterator for Imap<'_, R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.feed.refill(self.window.yielded);
        // After a refill, nothing in flight means the input is over.
        let ended = (self.feed.done || self.feed.submitted == self.window.yielded)
            .then_some(self.feed.submitted);
        let (_, outcome, _) = self.window.next(ended, |_| false)?;
        Some(typed(self.feed.task.name(), &outcome))
    }
}

/// One finished call of [`Pool::imap_json`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JsonOutcome {
    /// The call's position in the input, counting from 0.
    pub index: usize,
    /// What it returned, as JSON with WIT's names (`null` for no result, the value for one, an
    /// array for several; a `result`'s `err` is [`TaskError::Guest`]), or why it failed.
    pub result: Result<serde_json::Value, TaskError>,
    /// What the call printed and about how long it took, for a stream that captures them
    /// ([`StreamOptions::capture_output`]); `None` otherwise, and for an item that never ran
    /// on a worker (bad input, cancelled) or whose worker died under it.
    pub captured: Option<Captured>,
}

/// What one call of a capturing stream printed, and its time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Captured {
    /// About how long the call took: the time its worker took over the frame of outcomes it
    /// came in, divided by the items in that frame (the call's own time for a chunk of one,
    /// as the first chunks of a stream and any slow items are).
    pub elapsed: Duration,
    /// What it wrote to its stdout (at most the output limit).
    pub stdout: Vec<u8>,
    /// What it wrote to its stderr (at most the output limit).
    pub stderr: Vec<u8>,
}

/// How [`Pool::imap_json_with`] streams: in which order, and whether each outcome carries what
/// its call printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StreamOptions {
    /// The order outcomes are yielded in (default: input order).
    pub order: Order,
    /// Whether each outcome carries what its call printed and its time
    /// ([`JsonOutcome::captured`]) instead of the output going to the pool's handler (default:
    /// no). A grader keeps each submission's output with its verdict this way; a front end
    /// shows a failed item's stderr beside its error.
    pub capture_output: bool,
}

impl StreamOptions {
    /// Input order, output to the pool's handler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Yields outcomes in `order`.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Keeps each call's output with its outcome (see [`StreamOptions::capture_output`]).
    pub fn capture_output(mut self, capture: bool) -> Self {
        self.capture_output = capture;
        self
    }
}

/// How far a stream fed on its own thread has come, shared by the feeding thread and the
/// consumer.
#[derive(Default)]
struct Progress {
    yielded: AtomicUsize,
    submitted: AtomicUsize,
    /// Set when the consumer is gone: the feeding thread stops.
    stop: AtomicBool,
    /// The feeding thread waits here for room, or for the stop...
    waiting: AtomicBool,
    /// ...until this many items have been yielded: woken for less, it would find no room
    /// and wait again (a wake-up per item, measured: 165 k futex calls in a map of 1 M).
    room_at: AtomicUsize,
    lock: Mutex<()>,
    room: Condvar,
}

impl Progress {
    /// Tells the feeding thread that room has been made, if it waits for it.
    fn wake(&self) {
        // Sequentially consistent with `wait_for_room`'s store and load: of a yield and a wait
        // that cross, one of the two sees the other (a miss costs a timeout, not a hang).
        if self.waiting.load(Ordering::SeqCst)
            && (self.yielded.load(Ordering::SeqCst) >= self.room_at.load(Ordering::SeqCst)
                || self.stop.load(Ordering::SeqCst))
        {
            let _lock = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.room.notify_one();
        }
    }

    /// Waits until the consumer has yielded `room_at` items, or stopped (or a while passed).
    fn wait_for_room(&self, room_at: usize) {
        let lock = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.room_at.store(room_at, Ordering::SeqCst);
        self.waiting.store(true, Ordering::SeqCst);
        if self.yielded.load(Ordering::SeqCst) < room_at && !self.stop.load(Ordering::SeqCst) {
            let _ = self
                .room
                .wait_timeout(lock, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner());
        }
        self.waiting.store(false, Ordering::SeqCst);
    }
}

/// The iterator [`Pool::imap_json`] returns: one [`JsonOutcome`] per input item. Its input is
/// pulled on a thread of its own, so an outcome is ready as soon as its task ends (and, in
/// input order, every one before it), however slowly the input comes.
pub struct ImapJson<'a> {
    task: Task,
    shared: Arc<Shared>,
    window: Window,
    progress: Arc<Progress>,
    _pool: PhantomData<&'a Pool>,
}

impl std::fmt::Debug for ImapJson<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapJson")
            .field("func", &self.task.name())
            .field(
                "submitted",
                &self.progress.submitted.load(Ordering::Relaxed),
            )
            .field("yielded", &self.window.yielded)
            .finish()
    }
}

impl<'a> ImapJson<'a> {
    pub(crate) fn new(
        pool: &'a Pool,
        task: &Task,
        input: Box<dyn Iterator<Item = Result<Values, TaskError>> + Send>,
        options: StreamOptions,
    ) -> Self {
        let (window, sink) = Window::new(options.order, options.capture_output);
        let progress = Arc::new(Progress::default());
        let mut feed = Feed::new(pool, task, input, sink);
        let shared = Arc::clone(&pool.shared);
        let feeding = Arc::clone(&progress);
        std::thread::Builder::new()
            .name("wasmpool-feed".into())
            .spawn(move || {
                while !feeding.stop.load(Ordering::Acquire) && !feed.shared.is_terminating() {
                    let yielded = feeding.yielded.load(Ordering::Acquire);
                    if feed.submit_next(yielded) {
                        feeding.submitted.store(feed.submitted, Ordering::Release);
                    } else if feed.done {
                        break;
                    } else {
                        feeding.wait_for_room(feed.room_at());
                    }
                }
                let _ = feed.sink.tx.send(Delivery::Ended(feed.submitted));
            })
            // As `std::thread::spawn` does: a thread that cannot start is a system out of
            // resources, and no outcome could be promised for the input.
            .expect("a stream's feeding thread starts");
        ImapJson {
            task: task.clone(),
            shared,
            window,
            progress,
            _pool: PhantomData,
        }
    }

    /// Whether the next call of `next` returns at once, without waiting for a task: a front
    /// end that writes outcomes as they come flushes its output before it waits, and need not
    /// flush while more are ready.
    pub fn ready(&self) -> bool {
        self.window.ready()
    }
}

impl Iterator for ImapJson<'_> {
    type Item = JsonOutcome;

    fn next(&mut self) -> Option<JsonOutcome> {
        // A terminated pool cancels what was submitted; the feeding thread may be stuck in
        // the input, and is not waited for once that is all yielded.
        let progress = &self.progress;
        let shared = &self.shared;
        let give_up = |yielded: usize| {
            shared.is_terminating() && progress.submitted.load(Ordering::Acquire) == yielded
        };
        let (index, outcome, seen) = self.window.next(None, give_up)?;
        self.progress
            .yielded
            .store(self.window.yielded, Ordering::SeqCst);
        self.progress.wake();
        let seen = seen.map(|seen| Captured {
            elapsed: seen.elapsed,
            stdout: seen.stdout,
            stderr: seen.stderr,
        });
        Some(JsonOutcome {
            index,
            result: outcome.map(|values| results_json(&values, Names::Wit)),
            captured: seen,
        })
    }
}

impl Drop for ImapJson<'_> {
    fn drop(&mut self) {
        self.progress.stop.store(true, Ordering::SeqCst);
        self.progress.wake();
    }
}
