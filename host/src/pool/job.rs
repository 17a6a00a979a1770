//! The unit of work: a [`Job`] is a chunk of calls to one task, queued, taken by a driver and
//! sent to its worker in one frame, and each of its items delivers its outcome to a [`Sink`]
//! (a future's slot, a `map`'s vector, an `imap`'s channel). With the chunking heuristic.
//! Pure logic: no processes here.
//!
//! A `map` chunk whose arguments are all numbers is kept packed ([`PackedCalls`]): eight bytes
//! a number, as the wire carries them, instead of a [`JobItem`] of about a hundred bytes
//! each; its results may be filed the same way ([`Sink::deliver_packed`]). Whatever needs its
//! items one by one (a worker that died in the middle, a frame too large to send) unpacks
//! them first ([`Job::items_mut`]).

use std::sync::Arc;

use crate::error::TaskError;
use crate::limits::{Grants, Resolved};
use crate::module::Task;
use crate::values::Values;
use crate::values::wire::Packed;

use super::outcome::Outcome;

/// One call waiting to run: its arguments, its number in the pool, its place in the sink.
#[derive(Debug)]
pub(crate) struct JobItem {
    /// Where the sink files the outcome (the position in a `map`'s input, 0 for one task).
    pub(crate) index: usize,
    /// The pool-wide task number, in submission order; it labels the guest's output.
    pub(crate) task_no: u64,
    pub(crate) args: Values,
    /// How many times the item was started on a worker that then died.
    pub(crate) crashes: u32,
    /// Where its outcome goes, when not to its job's sink: the items of a chunk gathered
    /// from single submissions each have their own.
    pub(crate) sink: Option<Arc<dyn Sink>>,
}

impl std::fmt::Debug for dyn Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

/// Whether the queue may fold a job together with others into one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gather {
    /// A single `submit`: worth sending with its neighbours when they queue up.
    Yes,
    /// A chunk whose size the caller (or the chunking heuristic) chose: kept as it is. Its
    /// items cannot be cancelled one by one (`map` and `imap` handles have no such call).
    No,
}

/// A job's calls: an entry each, or a run of calls whose arguments are numbers, packed.
enum Calls {
    Each(Vec<JobItem>),
    Packed(PackedCalls),
}

/// Consecutive items of one chunk (indices and task numbers follow on from the first's),
/// none of them started on a worker that died, whose arguments are all numbers of the same
/// kinds: their arguments as the wire carries them.
#[derive(Debug)]
pub(crate) struct PackedCalls {
    /// The first item's place in the sink, and its task number.
    pub(crate) index: usize,
    pub(crate) task_no: u64,
    pub(crate) args: Packed,
}

/// A finished job's vector, to keep for a later job (see [`super::shelf`]).
pub(crate) enum Spare {
    Items(Vec<JobItem>),
    /// The bytes of packed arguments.
    Bytes(Vec<u8>),
}

/// A chunk of calls to one task, sent to one worker in one frame.
pub(crate) struct Job {
    pub(crate) task: Task,
    calls: Calls,
    pub(crate) gather: Gather,
    /// The task's limits over the pool's, decided at submission.
    pub(crate) limits: Resolved,
    /// What the task may reach.
    pub(crate) grants: Arc<Grants>,
    /// Where the outcomes of items without a sink of their own go: one sink for a whole
    /// `map` chunk costs no reference count per item.
    pub(crate) sink: Option<Arc<dyn Sink>>,
}

/// What an item printed and about how long it took, for a sink that takes them with its
/// outcome (see [`Sink::observes`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Seen {
    /// Its frame's time on the host (from the frame's start, or the end of the frame before it,
    /// to its arrival) over the items it reported: the item's own time for a chunk of one.
    pub(crate) elapsed: std::time::Duration,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

/// Where outcomes go: a future's slot, a `map`'s result vector, an `imap`'s channel.
pub(crate) trait Sink: Send + Sync {
    /// Files the outcome of the item at `index`. Called exactly once per item.
    fn deliver(&self, index: usize, outcome: Outcome);

    /// Files several outcomes at once (a sink with a lock takes it once for all).
    fn deliver_all(&self, outcomes: &mut dyn Iterator<Item = (usize, Outcome)>) {
        for (index, outcome) in outcomes {
            self.deliver(index, outcome);
        }
    }

    /// Whether the item was cancelled before it started; a cancelled item is not run
    /// (its outcome was already delivered by the canceller).
    fn is_cancelled(&self, _index: usize) -> bool {
        false
    }

    /// Marks the item as started: from now on it can no longer be cancelled.
    fn start(&self, _index: usize) {}

    /// Whether the sink takes what each item printed and how long it took with its outcome
    /// ([`Sink::deliver_seen`]), instead of the output going to the pool's handler.
    fn observes(&self) -> bool {
        false
    }

    /// Files several outcomes at once, each with what its item printed and its time. Called
    /// instead of [`Sink::deliver_all`] for a sink that [`Sink::observes`].
    fn deliver_seen(&self, outcomes: &mut dyn Iterator<Item = (usize, Outcome, Seen)>) {
        self.deliver_all(&mut outcomes.map(|(index, outcome, _)| (index, outcome)));
    }

    /// Files the outcomes of the items from `index` on, one per item of `results`, each the
    /// success whose one result is that item's number (see [`Packed::number_bytes`]), in one
    /// go and without an [`Outcome`] each. `false` if this sink does not keep numbers as they
    /// are (then nothing was filed, and the caller files them one by one).
    fn deliver_packed(&self, _index: usize, _results: &Packed) -> bool {
        false
    }
}

impl Job {
    /// A job of `items`, each with its own arguments.
    pub(crate) fn new(
        task: Task,
        items: Vec<JobItem>,
        gather: Gather,
        limits: Resolved,
        grants: Arc<Grants>,
        sink: Option<Arc<dyn Sink>>,
    ) -> Job {
        Job {
            task,
            calls: Calls::Each(items),
            gather,
            limits,
            grants,
            sink,
        }
    }

    /// A chunk of packed calls, all of whose outcomes go to `sink`; never gathered.
    pub(crate) fn packed(
        task: Task,
        calls: PackedCalls,
        limits: Resolved,
        grants: Arc<Grants>,
        sink: Arc<dyn Sink>,
    ) -> Job {
        Job {
            task,
            calls: Calls::Packed(calls),
            gather: Gather::No,
            limits,
            grants,
            sink: Some(sink),
        }
    }

    /// How many items.
    pub(crate) fn len(&self) -> usize {
        match &self.calls {
            Calls::Each(items) => items.len(),
            Calls::Packed(packed) => packed.args.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pool-wide task number of the job's `i`-th item.
    pub(crate) fn task_no(&self, i: usize) -> u64 {
        match &self.calls {
            Calls::Each(items) => items[i].task_no,
            Calls::Packed(packed) => packed.task_no + i as u64,
        }
    }

    /// The items, one by one, to rearrange: packed calls are unpacked first (each item with
    /// its own arguments), and stay so.
    pub(crate) fn items_mut(&mut self) -> &mut Vec<JobItem> {
        if let Calls::Packed(packed) = &self.calls {
            let items = packed
                .args
                .items()
                .enumerate()
                .map(|(i, args)| JobItem {
                    index: packed.index + i,
                    task_no: packed.task_no + i as u64,
                    // The host packed them itself, from checked arguments.
                    args: args.expect("packed arguments made by the host decode"),
                    crashes: 0,
                    sink: None,
                })
                .collect();
            self.calls = Calls::Each(items);
        }
        match &mut self.calls {
            Calls::Each(items) => items,
            Calls::Packed(_) => unreachable!("unpacked above"),
        }
    }

    /// What of a finished job's memory can serve a later one.
    pub(crate) fn into_spare(self) -> Spare {
        match self.calls {
            Calls::Each(items) => Spare::Items(items),
            Calls::Packed(packed) => Spare::Bytes(packed.args.into_bytes()),
        }
    }

    /// Adds `other`'s items after this job's (gathering single submissions).
    pub(crate) fn append(&mut self, mut other: Job) {
        let more = std::mem::take(other.items_mut());
        self.items_mut().extend(more);
    }

    /// The arguments of every item, as the wire's chunk carries them.
    pub(crate) fn serialize_args<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match &self.calls {
            Calls::Each(items) => crate::wire::Items::serialize_from(
                items.iter().map(|item| item.args.as_slice()),
                serializer,
            ),
            Calls::Packed(packed) => crate::wire::Items::serialize_packed(&packed.args, serializer),
        }
    }

    /// Files the outcome of the job's `i`-th item.
    pub(crate) fn deliver_at(&self, i: usize, outcome: Outcome) {
        match &self.calls {
            Calls::Each(items) => self.deliver(&items[i], outcome),
            Calls::Packed(packed) => self.own_sink().deliver(packed.index + i, outcome),
        }
    }

    /// The job's own sink, which every packed call's outcome goes to.
    fn own_sink(&self) -> &dyn Sink {
        self.sink
            .as_deref()
            .expect("packed calls have their job's sink")
    }

    /// Files the outcomes of the items from `first` on, one per item of `results`, all
    /// successes of one number each, without an [`Outcome`] each, if the job's sink keeps
    /// numbers; `false` (nothing filed) if not.
    pub(crate) fn deliver_packed(&self, first: usize, results: &Packed) -> bool {
        match &self.calls {
            Calls::Packed(packed) if first + results.len() <= packed.args.len() => self
                .own_sink()
                .deliver_packed(packed.index + first, results),
            _ => false,
        }
    }

    /// Where `item`'s outcome goes.
    pub(crate) fn sink_of<'a>(&'a self, item: &'a JobItem) -> &'a dyn Sink {
        match (&item.sink, &self.sink) {
            (Some(sink), _) | (None, Some(sink)) => sink.as_ref(),
            (None, None) => unreachable!("an item without a sink in a job without one"),
        }
    }

    /// Files `item`'s outcome.
    pub(crate) fn deliver(&self, item: &JobItem, outcome: Outcome) {
        self.sink_of(item).deliver(item.index, outcome);
    }

    /// Files the outcomes of the items from `first` on, in order: in one go when they all
    /// go to the job's own sink.
    pub(crate) fn deliver_from(
        &self,
        first: usize,
        outcomes: impl ExactSizeIterator<Item = Outcome>,
    ) {
        let items = match &self.calls {
            Calls::Each(items) => &items[first..first + outcomes.len()],
            Calls::Packed(packed) => {
                let index = packed.index + first;
                self.own_sink()
                    .deliver_all(&mut outcomes.enumerate().map(|(i, o)| (index + i, o)));
                return;
            }
        };
        match &self.sink {
            Some(sink) if items.iter().all(|item| item.sink.is_none()) => {
                sink.deliver_all(&mut items.iter().zip(outcomes).map(|(i, o)| (i.index, o)));
            }
            _ => {
                for (item, outcome) in items.iter().zip(outcomes) {
                    self.deliver(item, outcome);
                }
            }
        }
    }

    /// Whether the job's outcomes go, with what each item printed and its time, to a sink that
    /// [`Sink::observes`] (only a whole stream's chunk has such a sink).
    pub(crate) fn observed(&self) -> bool {
        self.sink.as_ref().is_some_and(|sink| sink.observes())
    }

    /// Files the outcomes of the items from `first` on, in order, with what each printed and
    /// its time, to the job's observing sink.
    pub(crate) fn deliver_seen_from(
        &self,
        first: usize,
        outcomes: impl ExactSizeIterator<Item = (Outcome, Seen)>,
    ) {
        let sink = self.sink.as_ref().expect("an observed job has a sink");
        let items = match &self.calls {
            Calls::Each(items) => &items[first..first + outcomes.len()],
            Calls::Packed(packed) => {
                let index = packed.index + first;
                sink.deliver_seen(
                    &mut outcomes
                        .enumerate()
                        .map(|(i, (outcome, seen))| (index + i, outcome, seen)),
                );
                return;
            }
        };
        sink.deliver_seen(
            &mut items
                .iter()
                .zip(outcomes)
                .map(|(item, (outcome, seen))| (item.index, outcome, seen)),
        );
    }

    /// Fails every item of the job with the same error.
    pub(crate) fn fail_all(self, error: impl Fn(&str) -> TaskError) {
        let func = self.task.name();
        for i in 0..self.len() {
            self.deliver_at(i, Err(error(func)));
        }
    }

    /// Fails every item of the job as cancelled (the pool is terminating).
    pub(crate) fn cancel(self) {
        self.fail_all(|func| TaskError::Cancelled {
            func: func.to_string(),
        });
    }

    /// Splits the job in two at `at`: this one keeps the items before it, the one returned
    /// the others, for the same task, limits, grants and sinks.
    pub(crate) fn split_off(&mut self, at: usize) -> Job {
        Job {
            task: self.task.clone(),
            calls: Calls::Each(self.items_mut().split_off(at)),
            gather: self.gather,
            limits: self.limits,
            grants: Arc::clone(&self.grants),
            sink: self.sink.clone(),
        }
    }

    /// How many calls a worker may make, one after another, between two frames of this job's
    /// outcomes: one per item, but a batch chunk's list call that fails is split in halves
    /// and retried (see [`crate::Task::batched`]), so the next outcome may wait for one call
    /// per level of halving, `ceil(log2(items)) + 1`. Each call has the whole timeout.
    pub(crate) fn calls_per_report(&self) -> u32 {
        if !self.task.is_batched() {
            return 1;
        }
        let items = self.len().max(1);
        items.next_power_of_two().trailing_zeros() + 1
    }

    /// Whether `other` calls the same export of the same module under the same limits and
    /// grants, so that the two can travel as one chunk. A batched task's single submissions
    /// are never gathered: one list call would carry several callers' items, where a task
    /// promises each caller an instance of its own.
    pub(crate) fn same_call(&self, other: &Job) -> bool {
        self.gather == Gather::Yes
            && other.gather == Gather::Yes
            && !self.task.is_batched()
            && !other.task.is_batched()
            && self.task.module().id() == other.task.module().id()
            && self.task.name() == other.task.name()
            && self.limits == other.limits
            && (Arc::ptr_eq(&self.grants, &other.grants) || self.grants == other.grants)
    }
}

/// Python's default: `ceil(len / (4 * workers))`, so that each worker gets about four chunks,
/// enough to even out uneven tasks without paying a round trip per item.
pub(crate) fn default_chunksize(len: usize, workers: usize) -> usize {
    len.div_ceil(4 * workers.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunksize_follows_python() {
        assert_eq!(default_chunksize(64, 2), 8);
        assert_eq!(default_chunksize(100, 4), 7);
        assert_eq!(default_chunksize(1, 8), 1);
        assert_eq!(default_chunksize(0, 2), 1);
        assert_eq!(default_chunksize(200_000, 2), 25_000);
    }
}
