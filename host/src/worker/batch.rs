//! A batch chunk (see [`crate::Task::batched`]): the export takes a list and returns a list,
//! each item of the chunk is one element, and the worker calls the export once with every
//! item's element as the list, then files the `i`-th element of the list it returns as the
//! `i`-th item's outcome.
//!
//! A call that fails (a trap, a limit) says nothing of which element it failed on, so its list
//! is split in two halves, each called again in a fresh instance, and so on down to the items
//! that fail alone: each of them gets the failure of its own one-element call, with what that
//! call printed, and every other item its result. Outcomes go to the host as each part is
//! done, so that the host, which gives a batch chunk one timeout per level of halving between
//! two frames (`Job::calls_per_report`), always hears from it in time.

use std::io::Write;
use std::time::Duration;

use crate::values::Value;
use crate::values::wasm::{from_val, to_val};
use crate::values::wire::{Packed, unpack};
use crate::wire::{Chunk, ItemOutcome, Items, RunFailure};

use super::cache::ModuleCache;
use super::reply::Reply;
use super::runner::{Compiled, Elements, ListFailure, Live, Returned, Runner};
use super::{Output, WorkerFault};

/// Runs a batch chunk, its first call in `ahead` if an instance was made for it; how long the
/// last instance took to make (`None` if none was made).
pub(super) fn run<W: Write>(
    cache: &ModuleCache,
    chunk: &Chunk,
    ahead: Option<Live>,
    reply: &mut Reply,
    output: &Output<W>,
) -> Result<Option<Duration>, WorkerFault> {
    let len = chunk.items.len();
    let every = |why: RunFailure| (0..len).map(move |_| ItemOutcome::failed(why.clone()));
    let compiled = match cache.get(&chunk.module, chunk.limits.metering) {
        Ok(compiled) => compiled,
        Err(reason) => {
            reply.add_all(every(RunFailure::Module(reason)), output)?;
            return Ok(None);
        }
    };
    // The host checked every item against the element type: an item that is not one value
    // is a host that breaks the protocol, and the whole chunk is refused.
    let list = match elements(&chunk.items) {
        Ok(list) => list,
        Err(reason) => {
            reply.add_all(every(RunFailure::BadInput(reason)), output)?;
            return Ok(None);
        }
    };
    if list.is_empty() {
        return Ok(None);
    }
    let mut batch = Batch {
        runner: cache.runner(),
        compiled,
        chunk,
        reply,
        made_in: None,
    };
    batch.solve(list, ahead, output)?;
    Ok(batch.made_in)
}

/// Each item's one value, as an element of the list: numbers packed stay words.
fn elements(items: &Items) -> Result<Elements, String> {
    let not_one = |n: usize| format!("an item of a batch chunk is one element, not {n} values");
    match items {
        Items::Values(items) => items
            .iter()
            .map(|args| match args.as_slice() {
                [one] => Ok(to_val(one)),
                other => Err(not_one(other.len())),
            })
            .collect::<Result<_, _>>()
            .map(Elements::Vals),
        Items::Packed(packed) => match packed.words() {
            Some((kind, words)) => Ok(Elements::Words(kind, words)),
            None => Err(not_one(
                packed
                    .rows()
                    .next()
                    .map_or(0, |row| row.map_or(0, |row| row.values().count())),
            )),
        },
    }
}

/// A batch chunk being run.
struct Batch<'a> {
    runner: &'a Runner,
    compiled: &'a Compiled,
    chunk: &'a Chunk,
    reply: &'a mut Reply,
    /// How long the last instance took to make.
    made_in: Option<Duration>,
}

impl Batch<'_> {
    /// Calls the export with `list`, the elements of the next items, and files their outcomes;
    /// splits the list in halves and solves each if the call failed.
    fn solve<W: Write>(
        &mut self,
        mut list: Elements,
        ahead: Option<Live>,
        output: &Output<W>,
    ) -> Result<(), WorkerFault> {
        let chunk = self.chunk;
        let n = list.len();
        let called = self.runner.call_list(
            ahead,
            self.compiled,
            &chunk.func,
            &mut list,
            &chunk.limits,
            &chunk.grants,
        );
        if called.made_in.is_some() {
            self.made_in = called.made_in;
        }
        let (stdout, stderr) = (called.stdout, called.stderr);
        let max_result = chunk.limits.max_result_bytes;
        match called.result {
            // Numbers that printed nothing, each within the result limit: packed as they are.
            Ok(Returned::Words(kind, words))
                if words.len() == n
                    && stdout.is_empty()
                    && stderr.is_empty()
                    && max_result >= NUMBER_SIZE =>
            {
                self.reply
                    .add_packed(Packed::of_words(kind, &words), output)
            }
            Ok(Returned::Words(kind, words)) if words.len() == n => {
                let vals = words.into_iter().map(|word| unpack(kind, word));
                let outcomes = outcomes(vals, stdout, stderr, max_result);
                self.reply.add_all(outcomes, output)
            }
            Ok(Returned::Vals(vals)) if vals.len() == n => {
                let vals = vals.into_iter().map(|val| from_val(&val));
                let outcomes = outcomes(vals, stdout, stderr, max_result);
                self.reply.add_all(outcomes, output)
            }
            Ok(results) => {
                let wrong = RunFailure::BatchLength {
                    expected: n as u64,
                    got: results.len() as u64,
                };
                self.fail(n, wrong, stdout, stderr, output)
            }
            // What the failed call printed is dropped: the calls of its halves print it again.
            Err(ListFailure::Call(why)) if n > 1 && !matches!(why, RunFailure::Module(_)) => {
                let right = list.split_off(n / 2);
                self.solve(list, None, output)?;
                self.solve(right, None, output)
            }
            // An instance that cannot be made (or an export that is no batch export) fails
            // every list alike.
            Err(ListFailure::Call(why) | ListFailure::Instance(why)) => {
                self.fail(n, why, stdout, stderr, output)
            }
        }
    }

    /// Fails the next `n` items with `why`, the first with what the call printed.
    fn fail<W: Write>(
        &mut self,
        n: usize,
        why: RunFailure,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
        output: &Output<W>,
    ) -> Result<(), WorkerFault> {
        let mut printed = Some((stdout, stderr));
        let outcomes = (0..n).map(|_| {
            let (stdout, stderr) = printed.take().unwrap_or_default();
            ItemOutcome {
                result: Err(why.clone()),
                stdout,
                stderr,
            }
        });
        self.reply.add_all(outcomes, output)
    }
}

/// The most a number's result counts against the result limit ([`Value::approx_size`] of a
/// 64-bit number).
const NUMBER_SIZE: u64 = 9;

/// One outcome per element of a list call's result, the first with what the call printed;
/// each result within `max_result_bytes`.
fn outcomes(
    results: impl Iterator<Item = Result<Value, String>>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    max_result_bytes: u64,
) -> impl Iterator<Item = ItemOutcome> {
    let mut printed = Some((stdout, stderr));
    results.map(move |value| {
        let (stdout, stderr) = printed.take().unwrap_or_default();
        let result = value.map_err(RunFailure::BadInput).and_then(|value| {
            let size = value.approx_size();
            if size > max_result_bytes {
                Err(RunFailure::ResultTooLarge(size))
            } else {
                Ok(smallvec::smallvec![value])
            }
        });
        ItemOutcome {
            result,
            stdout,
            stderr,
        }
    })
}
