//! `imap` and `imap_unordered`: lazy streams over an input iterator of any length, with a
//! bounded number of chunks in flight, so a million-item input never sits in memory at once.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use serde::de::DeserializeOwned;

use crate::error::TaskError;
use crate::module::Task;
use crate::values::Values;

use super::scheduler::{Gather, Outcome, Sink, typed};
use super::{Pool, PreparedItem};

/// Outcomes of a streamed map arrive here, tagged by input position.
struct Stream(Sender<(usize, Outcome)>);

impl Sink for Stream {
    fn deliver(&self, index: usize, outcome: Outcome) {
        let _ = self.0.send((index, outcome));
    }
}

/// The iterator [`Pool::imap`] and [`Pool::imap_unordered`] return: one `Result` per input
/// item, in input order (`imap`) or completion order (`imap_unordered`).
pub struct Imap<'a, R> {
    pool: &'a Pool,
    task: Task,
    /// Each item's arguments, already checked against the signature (or why not).
    input: Box<dyn Iterator<Item = Result<Values, String>> + 'a>,
    chunksize: usize,
    max_chunks_in_flight: usize,
    ordered: bool,
    sink: Arc<Stream>,
    results: Receiver<(usize, Outcome)>,
    submitted: usize,
    yielded: usize,
    input_done: bool,
    waiting: BTreeMap<usize, Outcome>,
    _result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("func", &self.task.name())
            .field("submitted", &self.submitted)
            .field("yielded", &self.yielded)
            .finish()
    }
}

impl<'a, R: DeserializeOwned> Imap<'a, R> {
    pub(crate) fn new(
        pool: &'a Pool,
        task: &Task,
        input: Box<dyn Iterator<Item = Result<Values, String>> + 'a>,
        chunksize: usize,
        max_chunks_in_flight: usize,
        ordered: bool,
    ) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Imap {
            pool,
            task: task.clone(),
            input,
            chunksize: chunksize.max(1),
            max_chunks_in_flight: max_chunks_in_flight.max(1),
            ordered,
            sink: Arc::new(Stream(tx)),
            results: rx,
            submitted: 0,
            yielded: 0,
            input_done: false,
            waiting: BTreeMap::new(),
            _result: PhantomData,
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
                    Some(args) => chunk.push(PreparedItem {
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
}

impl<R: DeserializeOwned> Imap<'_, R> {
    /// The next outcome with its input position, before conversion to `R`.
    pub(crate) fn next_raw(&mut self) -> Option<(usize, Outcome)> {
        self.refill();
        let next = self.yielded;
        if self.ordered
            && let Some(outcome) = self.waiting.remove(&next)
        {
            self.yielded += 1;
            return Some((next, outcome));
        }
        if self.yielded == self.submitted {
            return None;
        }
        loop {
            let (index, outcome) = self.results.recv().ok()?;
            if !self.ordered || index == next {
                self.yielded += 1;
                return Some((index, outcome));
            }
            self.waiting.insert(index, outcome);
        }
    }
}

impl<R: DeserializeOwned> Iterator for Imap<'_, R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (_, outcome) = self.next_raw()?;
        Some(typed(self.task.name(), &outcome))
    }
}
