//! Lazy streams over an input iterator of any length, with a bounded number of chunks in
//! flight, so a million-item input never sits in memory at once: [`Imap`] (`imap` and
//! `imap_unordered`, each outcome as the caller's Rust type) and [`ImapJson`] (`imap_json`,
//! each outcome as JSON with its position, for front ends such as the command line). Both are
//! the same [`Flow`] underneath.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

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

/// Where a stream's outcomes arrive, tagged by input position.
struct Channel(Sender<(usize, Outcome)>);

impl Sink for Channel {
    fn deliver(&self, index: usize, outcome: Outcome) {
        let _ = self.0.send((index, outcome));
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
    chunksize: usize,
    max_chunks_in_flight: usize,
    order: Order,
    sink: Arc<Channel>,
    results: Receiver<(usize, Outcome)>,
    submitted: usize,
    yielded: usize,
    input_done: bool,
    waiting: BTreeMap<usize, Outcome>,
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
            chunksize: pool.imap_chunksize.max(1),
            max_chunks_in_flight: pool.max_chunks_in_flight.max(1),
            order,
            sink: Arc::new(Channel(tx)),
            results: rx,
            submitted: 0,
            yielded: 0,
            input_done: false,
            waiting: BTreeMap::new(),
        }
    }

    /// Submits chunks until the in-flight bound is reached or the input ends.
    fn refill(&mut self) {
        let limit = self.chunksize * self.max_chunks_in_flight;
        while !self.input_done
            && (self.submitted == self.yielded
                || self.submitted + self.chunksize <= self.yielded + limit)
        {
            let mut chunk = Vec::with_capacity(self.chunksize);
            while chunk.len() < self.chunksize {
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
            self.submitted += chunk.len();
            let sink: Arc<dyn Sink> = self.sink.clone();
            self.pool
                .enqueue(&self.task, chunk.into_iter(), sink, Gather::No);
        }
    }

    /// The next outcome with its input position.
    fn next(&mut self) -> Option<(usize, Outcome)> {
        self.refill();
        let next = self.yielded;
        let ordered = self.order == Order::Input;
        if ordered && let Some(outcome) = self.waiting.remove(&next) {
            self.yielded += 1;
            return Some((next, outcome));
        }
        if self.yielded == self.submitted {
            return None;
        }
        loop {
            let (index, outcome) = self.results.recv().ok()?;
            if !ordered || index == next {
                self.yielded += 1;
                return Some((index, outcome));
            }
            self.waiting.insert(index, outcome);
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
        f.debug_struct("Imap")
            .field("func", &self.flow.task.name())
            .field("submitted", &self.flow.submitted)
            .field("yielded", &self.flow.yielded)
            .finish()
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
        f.debug_struct("ImapJson")
            .field("func", &self.flow.task.name())
            .field("submitted", &self.flow.submitted)
            .field("yielded", &self.flow.yielded)
            .finish()
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
