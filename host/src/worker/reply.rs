//! The outcomes of a chunk on their way to the host, in as few frames as keep the host
//! informed: gathered while items finish quickly, sent at once when one is slow, packed while
//! they are numbers of the same kinds.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::values::Value;
use crate::values::wire::Packed;
use crate::wire::{ItemOutcome, WorkerMsg};

use super::{Output, WorkerFault, send};

/// Most outcomes sent in one frame, and the longest a finished outcome waits for its frame
/// (up to a clock tick more: see [`Pace`]). An item that took at least `BATCH_WAIT` is sent at
/// once: the next one will likely take as long, and its outcome would wait for it.
const BATCH_ITEMS: usize = 256;
const BATCH_WAIT: Duration = Duration::from_millis(1);

/// Most outcomes of one batch call sent in one frame, and about the most bytes of results and
/// output (see [`Reply::add_all`]): far under a frame's limit.
const RANGE_ITEMS: usize = 1 << 14;
const RANGE_BYTES: usize = 16 << 20;

/// The outcomes of a chunk on their way to the host: gathered while items finish quickly,
/// packed while they are numbers of the same kinds.
pub(super) struct Reply {
    chunk_id: u64,
    /// Items in the chunk, and how many have been reported or gathered.
    len: usize,
    done: usize,
    /// The index of the first gathered outcome.
    first: usize,
    gathered: Gathered,
    /// When the first gathered outcome was ready.
    since: Instant,
    pace: Pace,
}

/// When a worker looks at the precise clock while a chunk runs. A look costs about 30 ns on a
/// VM, a twentieth of all the worker's time on a tiny task; the kernel's coarse clock costs
/// 9 ns and moves once per tick (1 to 4 ms). So the precise clock is read when a frame starts
/// and when the coarse one has moved since the last look. An item that took a tick or more is
/// always measured, as is every item of a chunk whose items are sent one by one; an item that
/// took between [`BATCH_WAIT`] and a tick among quick ones may be sent up to a tick late.
struct Pace {
    /// The last precise reading, and the coarse clock's then.
    looked: Instant,
    tick: (i64, i64),
    /// Items finished since that reading.
    unseen: u32,
}

impl Pace {
    fn new() -> Self {
        Pace {
            looked: Instant::now(),
            tick: coarse_now(),
            unseen: 0,
        }
    }

    /// Called as an item ends: the precise time now, if `look` or the coarse clock has moved;
    /// with it, how long this item took if it is the only one since the last look (zero if not).
    fn item_done(&mut self, look: bool) -> Option<(Instant, Duration)> {
        let tick = coarse_now();
        self.unseen += 1;
        if !look && tick == self.tick {
            return None;
        }
        let now = Instant::now();
        let took = if self.unseen == 1 {
            now.duration_since(self.looked)
        } else {
            Duration::ZERO
        };
        *self = Pace {
            looked: now,
            tick,
            unseen: 0,
        };
        Some((now, took))
    }
}

/// The kernel's coarse monotonic clock: a read of a shared page, no system call.
fn coarse_now() -> (i64, i64) {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    (now.tv_sec, now.tv_nsec)
}

enum Gathered {
    Nothing,
    Outcomes(Vec<ItemOutcome>),
    Results(Packed),
}

impl Reply {
    pub(super) fn new(chunk_id: u64, len: usize) -> Self {
        let pace = Pace::new();
        Reply {
            chunk_id,
            len,
            done: 0,
            first: 0,
            gathered: Gathered::Nothing,
            since: pace.looked,
            pace,
        }
    }

    fn gathered_len(&self) -> usize {
        self.done - self.first
    }

    /// Adds the next item's outcome; sends what is gathered when the chunk is done, when
    /// [`BATCH_ITEMS`] are gathered, when the oldest has waited [`BATCH_WAIT`], or when this
    /// item took that long (as far as [`Pace`] has looked).
    pub(super) fn add<W: Write>(
        &mut self,
        outcome: ItemOutcome,
        output: &Output<W>,
    ) -> Result<(), WorkerFault> {
        let looked = self
            .pace
            .item_done(matches!(self.gathered, Gathered::Nothing));
        let slow = looked.is_some_and(|(_, took)| took >= BATCH_WAIT);
        self.gather(outcome, looked.map(|(now, _)| now), output)?;
        self.done += 1;
        let last = self.done == self.len;
        if last
            || slow
            || self.gathered_len() >= BATCH_ITEMS
            || looked.is_some_and(|(now, _)| now.duration_since(self.since) >= BATCH_WAIT)
        {
            self.send(output, last)?;
        }
        Ok(())
    }

    /// Adds the outcomes of the next items, all produced by one call (a batch export's list
    /// call), and sends them at once, flushed: they were ready together, and the call that
    /// produces the next ones may take long. In frames of at most [`RANGE_ITEMS`] outcomes
    /// and about [`RANGE_BYTES`].
    pub(super) fn add_all<W: Write>(
        &mut self,
        outcomes: impl IntoIterator<Item = ItemOutcome>,
        output: &Output<W>,
    ) -> Result<(), WorkerFault> {
        let mut outcomes = outcomes.into_iter().peekable();
        let mut bytes = 0;
        while let Some(outcome) = outcomes.next() {
            bytes += outcome.stdout.len() + outcome.stderr.len();
            if let Ok(results) = &outcome.result {
                bytes += results.iter().map(Value::approx_size).sum::<u64>() as usize;
            }
            self.gather(outcome, None, output)?;
            self.done += 1;
            let last = outcomes.peek().is_none();
            if last || self.gathered_len() >= RANGE_ITEMS || bytes >= RANGE_BYTES {
                self.send(output, last)?;
                bytes = 0;
            }
        }
        self.pace = Pace::new();
        self.since = self.pace.looked;
        Ok(())
    }

    /// Adds the results of the next items, all produced by one call and packed, and sends
    /// them at once, flushed (after what is gathered), as [`Reply::add_all`] does.
    pub(super) fn add_packed<W: Write>(
        &mut self,
        results: Packed,
        output: &Output<W>,
    ) -> Result<(), WorkerFault> {
        self.send(output, false)?;
        self.done += results.len();
        self.gathered = Gathered::Results(results);
        self.send(output, true)?;
        self.pace = Pace::new();
        self.since = self.pace.looked;
        Ok(())
    }

    /// Gathers one outcome into the frame being gathered, packed if it can be: a change of
    /// form sends the frame gathered so far and starts the next (at `now`, if known).
    fn gather<W: Write>(
        &mut self,
        outcome: ItemOutcome,
        now: Option<Instant>,
        output: &Output<W>,
    ) -> Result<(), WorkerFault> {
        let results = match &outcome {
            ItemOutcome {
                result: Ok(results),
                stdout,
                stderr,
            } if stdout.is_empty() && stderr.is_empty() => Some(results),
            _ => None,
        };
        // Into the packed frame being gathered, if the results are of its kinds.
        let packed_in = match (&mut self.gathered, results) {
            (Gathered::Results(packed), Some(results)) => packed.push(results),
            _ => false,
        };
        if !packed_in {
            let packed = results.and_then(|results| {
                let mut packed = Packed::start(results)?;
                packed.push(results);
                Some(packed)
            });
            if let (None, Gathered::Outcomes(outcomes)) = (&packed, &mut self.gathered) {
                outcomes.push(outcome);
            } else {
                // A change of form ends the frame gathered so far, and starts the next.
                self.send(output, false)?;
                self.since = now.unwrap_or_else(Instant::now);
                self.gathered = match packed {
                    Some(packed) => Gathered::Results(packed),
                    None => Gathered::Outcomes(vec![outcome]),
                };
            }
        }
        Ok(())
    }

    /// Sends what is gathered as one frame (flushed to the pipe with `flush`).
    fn send<W: Write>(&mut self, output: &Output<W>, flush: bool) -> Result<(), WorkerFault> {
        let chunk_id = self.chunk_id;
        let first = self.first as u32;
        let msg = match std::mem::replace(&mut self.gathered, Gathered::Nothing) {
            Gathered::Nothing => return Ok(()),
            Gathered::Outcomes(outcomes) => WorkerMsg::Outcomes {
                chunk_id,
                first,
                outcomes,
            },
            Gathered::Results(results) => WorkerMsg::Results {
                chunk_id,
                first,
                results,
            },
        };
        self.first = self.done;
        send(output, &msg, flush)
    }
}
