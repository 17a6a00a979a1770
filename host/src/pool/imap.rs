//! Lazy streams over an input iterator of any length, with a bounded number of chunks in
//! flight, so a million-item input never sits in memory at once: [`Imap`] (`imap` and
//! `imap_unordered`, each outcome as the caller's Rust type) and [`ImapJson`] (`imap_json`,
//! each outcome as JSON with its position, for front ends such as the command line). Both are
//! the same [`Flow`] underneath.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde::de::DeserializeOwned;

use crate::error::TaskError;
use crate::module::Task;
use crate::values::Values;
use crate::values::json::{Names, results_json};
use crate::values::rust::typed;

use super::job::{Gather, Sink};
use super::outcome::Outcome;
use super::{CheckedItem, Pool};

/// In which order a stream yields its outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// In input order (`imap`): an outcome waits for every one before it.
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
    /// [`Flow::next_size`]).
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

    fn in_flight(self) -> usize {
        match self {
            Chunking::Fixed { in_flight, .. } | Chunking::Measured { in_flight } => in_flight,
        }
        .max(1)
    }
}

/// Where a stream's outcomes arrive, tagged by input position: a frame's worth at a time,
/// one message for all the outcomes a worker reported together.
struct Channel(Sender<Vec<(usize, Outcome)>>);

impl Sink for Channel {
    fn deliver(&self, index: usize, outcome: Outcome) {
        let _ = self.0.send(vec![(index, outcome)]);
    }

    fn deliver_all(&self, outcomes: &mut dyn Iterator<Item = (usize, Outcome)>) {
        let _ = self.0.send(outcomes.collect());
    }
}

/// The machinery under both streams: pulls checked items from the input as outcomes are
/// consumed, keeps at most `max_chunks_in_flight` chunks queued or running, and puts outcomes
/// back in input order when asked to.
struct Flow<'a> {
    pool: &'a Pool,
    task: Task,
    /// Each item's arguments, already checked against the signature (or why not).
    input: Box<dyn Iterator<Item = Result<Values, TaskError>> + 'a>,
    chunking: Chunking,
    /// The size of the last chunk submitted.
    last_size: usize,
    order: Order,
    sink: Arc<Channel>,
    results: Receiver<Vec<(usize, Outcome)>>,
    submitted: usize,
    yielded: usize,
    input_done: bool,
    /// Outcomes received and not yet yielded. In input order: the outcome of item
    /// `yielded + i` at `i`, `None` while it has not arrived (the window is as wide as what
    /// is in flight). In completion order: as they arrived, all `Some`.
    arrived: VecDeque<Option<(usize, Outcome)>>,
}

impl<'a> Flow<'a> {
    fn new(
        pool: &'a Pool,
        task: &Task,
        input: Box<dyn Iterator<Item = Result<Values, TaskError>> + 'a>,
        order: Order,
    ) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Flow {
            pool,
            task: task.clone(),
            input,
            chunking: pool.imap_chunking,
            last_size: 0,
            order,
            sink: Arc::new(Channel(tx)),
            results: rx,
            submitted: 0,
            yielded: 0,
            input_done: false,
            arrived: VecDeque::new(),
        }
    }

    /// The size of the next chunk. Measured: as many items as take about [`CHUNK_TIME`] by the
    /// drivers' latest measure, at most twice the last chunk (so that one quick item cannot
    /// send thousands of slow ones in one chunk), and one while nothing is measured yet (so
    /// that a few slow items spread over all the workers at once).
    fn next_size(&self) -> usize {
        match self.chunking {
            Chunking::Fixed { size, .. } => size.max(1),
            Chunking::Measured { .. } => {
                let fits = match self.pool.shared.item_time() {
                    Some(item) => (CHUNK_TIME.as_nanos() / item.as_nanos().max(1)) as usize,
                    None => 1,
                };
                fits.clamp(1, MAX_MEASURED_CHUNK)
                    .min(self.last_size.saturating_mul(2).max(1))
            }
        }
    }

    /// Submits chunks until the in-flight bound is reached or the input ends.
    fn refill(&mut self) {
        while !self.input_done {
            let size = self.next_size();
            let in_flight = self.submitted - self.yielded;
            if in_flight > 0 && in_flight + size > size * self.chunking.in_flight() {
                break;
            }
            let mut chunk = Vec::with_capacity(size);
            while chunk.len() < size {
                match self.input.next() {
                    Some(args) => chunk.push(CheckedItem {
                        index: self.submitted + chunk.len(),
                        args,
                    }),
                    None => {
                        self.input_done = true;
                        break;
                    }
                }
            }
            if chunk.is_empty() {
                break;
            }
            self.last_size = chunk.len();
            self.submitted += chunk.len();
            let sink: Arc<dyn Sink> = self.sink.clone();
            self.pool
                .enqueue(&self.task, chunk.into_iter(), sink, Gather::No);
        }
    }

    /// The stream `name`, for `Debug`: its task and how far it has come.
    fn debug(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(name)
            .field("func", &self.task.name())
            .field("submitted", &self.submitted)
            .field("yielded", &self.yielded)
            .finish()
    }

    /// The next outcome with its input position.
    fn next(&mut self) -> Option<(usize, Outcome)> {
        self.refill();
        loop {
            if let Some(Some(_)) = self.arrived.front() {
                self.yielded += 1;
                return self.arrived.pop_front().flatten();
            }
            if self.yielded == self.submitted {
                return None;
            }
            let frame = self.results.recv().ok()?;
            match self.order {
                Order::Completion => self.arrived.extend(frame.into_iter().map(Some)),
                Order::Input => {
                    for (index, outcome) in frame {
                        let at = index - self.yielded;
                        if self.arrived.len() <= at {
                            self.arrived.resize_with(at + 1, || None);
                        }
                        self.arrived[at] = Some((index, outcome));
                    }
                }
            }
        }
    }
}

/// The iterator [`Pool::imap`] and [`Pool::imap_unordered`] return: one `Result` per input
/// item, in input order (`imap`) or completion order (`imap_unordered`).
pub struct Imap<'a, R> {
    flow: Flow<'a>,
    _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.flow.debug("Imap", f)
    }
}

impl<'a, R: DeserializeOwned> Imap<'a, R> {
    pub(crate) fn new(
        pool: &'a Pool,
        task: &Task,
        input: Box<dyn Iterator<Item = Result<Values, TaskError>> + 'a>,
        order: Order,
    ) -> Self {
        Imap {
            flow: Flow::new(pool, task, input, order),
            _result: PhantomData,
        }
    }
}

impl<R: DeserializeOwned> Iterator for Imap<'_, R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (_, outcome) = self.flow.next()?;
        Some(typed(self.flow.task.name(), &outcome))
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
}

/// The iterator [`Pool::imap_json`] returns: one [`JsonOutcome`] per input item.
pub struct ImapJson<'a> {
    flow: Flow<'a>,
}

impl std::fmt::Debug for ImapJson<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.flow.debug("ImapJson", f)
    }
}

impl<'a> ImapJson<'a> {
    pub(crate) fn new(
        pool: &'a Pool,
        task: &Task,
        input: Box<dyn Iterator<Item = Result<Values, TaskError>> + 'a>,
        order: Order,
    ) -> Self {
        ImapJson {
            flow: Flow::new(pool, task, input, order),
        }
    }
}

impl Iterator for ImapJson<'_> {
    type Item = JsonOutcome;

    fn next(&mut self) -> Option<JsonOutcome> {
        let (index, outcome) = self.flow.next()?;
        Some(JsonOutcome {
            index,
            result: outcome.map(|values| results_json(&values, Names::Wit)),
        })
    }
}
