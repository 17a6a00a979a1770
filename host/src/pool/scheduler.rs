//! What the pool schedules: [`Job`]s (a chunk of calls to one task) and the [`Sink`]s their
//! outcomes are delivered to, with the chunking heuristic and the conversion of a worker's raw
//! reply into one [`Outcome`] per task. Pure logic: no processes here.

use std::sync::Arc;

use crate::error::TaskError;
use crate::limits::{Grants, Resolved};
use crate::module::Task;
use crate::values::{self, Value, Values, WitType};
use crate::wire::{ItemOutcome, Packed, RunFailure};

/// The outcome of one task: its results (zero, one, or several values) or why it failed.
pub(crate) type Outcome = Result<Values, TaskError>;

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

/// A chunk of calls to one task, sent to one worker in one frame.
pub(crate) struct Job {
    pub(crate) task: Task,
    pub(crate) items: Vec<JobItem>,
    pub(crate) gather: Gather,
    /// The task's limits over the pool's, decided at submission.
    pub(crate) limits: Resolved,
    /// What the task may reach.
    pub(crate) grants: Arc<Grants>,
    /// Where the outcomes of items without a sink of their own go: one sink for a whole
    /// `map` chunk costs no reference count per item.
    pub(crate) sink: Option<Arc<dyn Sink>>,
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
}

impl Job {
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
        let items = &self.items[first..first + outcomes.len()];
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

    /// Fails every item of the job with the same error.
    pub(crate) fn fail_all(self, error: impl Fn(&str) -> TaskError) {
        let func = self.task.name();
        for item in &self.items {
            self.deliver(item, Err(error(func)));
        }
    }

    /// Fails every item of the job as cancelled (the pool is terminating).
    pub(crate) fn cancel(self) {
        self.fail_all(|func| TaskError::Cancelled {
            func: func.to_string(),
        });
    }

    /// Whether `other` calls the same export of the same module under the same limits and
    /// grants, so that the two can travel as one chunk.
    pub(crate) fn same_call(&self, other: &Job) -> bool {
        self.gather == Gather::Yes
            && other.gather == Gather::Yes
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

/// One frame of a chunk's outcomes, as its worker reported them.
pub(crate) enum Reported {
    /// Each item's outcome, with what it printed.
    Outcomes(Vec<ItemOutcome>),
    /// Results alone, packed; checked to decode (see [`Packed::check`]) when read, so that a
    /// worker that sends garbage is caught before any of the frame is delivered.
    Results(Packed),
}

impl Reported {
    /// How many items the frame reports.
    pub(crate) fn len(&self) -> usize {
        match self {
            Reported::Outcomes(outcomes) => outcomes.len(),
            Reported::Results(results) => results.len(),
        }
    }

    /// Each item's printed output with its index in the chunk (none from packed results).
    pub(crate) fn output(&self) -> impl Iterator<Item = (usize, &[u8], &[u8])> {
        let outcomes = match self {
            Reported::Outcomes(outcomes) => outcomes.as_slice(),
            Reported::Results(_) => &[],
        };
        outcomes
            .iter()
            .enumerate()
            .map(|(i, raw)| (i, raw.stdout.as_slice(), raw.stderr.as_slice()))
    }

    /// Files each item's outcome (see [`finish`]) into `job`'s sinks, the first as item
    /// `first` of the job. Packed results go straight from the frame's bytes to outcomes.
    pub(crate) fn deliver(self, job: &Job, first: usize, max_wasm_stack: usize) {
        match self {
            Reported::Outcomes(raws) => job.deliver_from(
                first,
                raws.into_iter()
                    .map(|raw| finish(&job.task, &job.limits, max_wasm_stack, raw)),
            ),
            Reported::Results(results) => job.deliver_from(
                first,
                results.items().map(|values| match values {
                    Ok(values) => finish_results(&job.task, values),
                    Err(detail) => Err(TaskError::Internal {
                        func: job.task.name().to_string(),
                        detail,
                    }),
                }),
            ),
        }
    }
}

/// Turns a worker's reply for one item into the task's outcome. A task whose one result is a
/// `result<T, E>` fails with [`TaskError::Guest`] when it returns `err`, and yields `T` when it
/// returns `ok`, the way a Python function raises or returns.
pub(crate) fn finish(
    task: &Task,
    limits: &Resolved,
    max_wasm_stack: usize,
    raw: ItemOutcome,
) -> Outcome {
    // The name is copied only into errors: most outcomes are values.
    let func = || task.name().to_string();
    match raw.result {
        Err(RunFailure::Timeout) => Err(TaskError::Timeout {
            func: func(),
            limit: limits.timeout.unwrap_or_default(),
        }),
        Err(RunFailure::OutOfFuel) => Err(TaskError::OutOfFuel {
            func: func(),
            limit: limits.fuel.unwrap_or_default(),
        }),
        Err(RunFailure::MemoryLimit) => Err(TaskError::MemoryLimit {
            func: func(),
            limit: limits.max_memory,
        }),
        Err(RunFailure::StackOverflow) => Err(TaskError::StackOverflow {
            func: func(),
            limit: max_wasm_stack,
        }),
        Err(RunFailure::ResultTooLarge(size)) => Err(TaskError::ResultTooLarge {
            func: func(),
            limit: limits.max_result_bytes,
            size,
        }),
        Err(RunFailure::OutputLimit) => Err(TaskError::OutputLimit {
            func: func(),
            limit: limits.max_output_bytes,
        }),
        Err(RunFailure::Sandbox(detail)) => Err(TaskError::Sandbox {
            func: func(),
            detail,
        }),
        Ok(results) => finish_results(task, results),
        Err(RunFailure::Trap { message, backtrace }) => Err(TaskError::Trap {
            func: func(),
            message,
            backtrace,
        }),
        Err(RunFailure::BadInput(detail)) => Err(TaskError::BadInput {
            func: func(),
            detail,
        }),
        Err(RunFailure::Module(detail)) => Err(TaskError::Internal {
            func: func(),
            detail,
        }),
    }
}

/// The outcome of a call that returned `results`.
fn finish_results(task: &Task, results: Values) -> Outcome {
    unwrap_guest_result(task.name(), &task.signature().results, results)
}

fn unwrap_guest_result(func: &str, types: &[WitType], mut results: Values) -> Outcome {
    if !matches!(types, [WitType::Result { .. }]) || results.len() != 1 {
        return Ok(results);
    }
    match results.pop() {
        Some(Value::Result(Ok(ok))) => Ok(ok.map(|v| smallvec::smallvec![*v]).unwrap_or_default()),
        Some(Value::Result(Err(err))) => {
            let value = err.map_or(serde_json::Value::Null, |v| values::to_json(&v));
            let message = match &value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "error".to_string(),
                other => other.to_string(),
            };
            Err(TaskError::Guest {
                func: func.to_string(),
                message,
                value,
            })
        }
        other => Ok(other.into_iter().collect()),
    }
}

/// The results of a task as one JSON value: `null` for none, the value for one, an array for
/// several. `rust` selects serde's naming (see [`values::to_rust_json`]).
pub(crate) fn results_json(results: &[Value], rust: bool) -> serde_json::Value {
    let one = |v: &Value| {
        if rust {
            values::to_rust_json(v)
        } else {
            values::to_json(v)
        }
    };
    match results {
        [] => serde_json::Value::Null,
        [v] => one(v),
        many => serde_json::Value::Array(many.iter().map(one).collect()),
    }
}

/// Converts a task's outcome into the caller's Rust type.
pub(crate) fn typed<R: serde::de::DeserializeOwned>(
    func: &str,
    outcome: &Outcome,
) -> Result<R, TaskError> {
    let converted = match outcome {
        Ok(results) => match results.as_slice() {
            [one] => match scalar::<R>(one) {
                Some(converted) => converted,
                None => serde_json::from_value(results_json(results, true)),
            },
            _ => serde_json::from_value(results_json(results, true)),
        },
        Err(e) => return Err(e.clone()),
    };
    converted.map_err(|e| TaskError::ResultType {
        func: func.to_string(),
        detail: e.to_string(),
    })
}

/// A number, boolean, character or string result straight into the caller's type, exactly as
/// through its JSON form (see [`values::to_rust_json`]) but without building it: the common
/// case of a `map` over numbers pays no allocation here. `None` for other values.
fn scalar<R: serde::de::DeserializeOwned>(value: &Value) -> Option<Result<R, serde_json::Error>> {
    use serde::de::value::{
        BoolDeserializer, CharDeserializer, F64Deserializer, I64Deserializer, StrDeserializer,
        U64Deserializer,
    };
    type E = serde_json::Error;
    Some(match value {
        Value::Bool(b) => R::deserialize(BoolDeserializer::<E>::new(*b)),
        Value::S8(n) => R::deserialize(I64Deserializer::<E>::new(i64::from(*n))),
        Value::S16(n) => R::deserialize(I64Deserializer::<E>::new(i64::from(*n))),
        Value::S32(n) => R::deserialize(I64Deserializer::<E>::new(i64::from(*n))),
        Value::S64(n) if *n < 0 => R::deserialize(I64Deserializer::<E>::new(*n)),
        // JSON keeps a non-negative integer as unsigned: so does this.
        Value::S64(n) => R::deserialize(U64Deserializer::<E>::new(*n as u64)),
        Value::U8(n) => R::deserialize(U64Deserializer::<E>::new(u64::from(*n))),
        Value::U16(n) => R::deserialize(U64Deserializer::<E>::new(u64::from(*n))),
        Value::U32(n) => R::deserialize(U64Deserializer::<E>::new(u64::from(*n))),
        Value::U64(n) => R::deserialize(U64Deserializer::<E>::new(*n)),
        Value::F32(x) if x.is_finite() => R::deserialize(F64Deserializer::<E>::new(f64::from(*x))),
        Value::F64(x) if x.is_finite() => R::deserialize(F64Deserializer::<E>::new(*x)),
        Value::Char(c) => R::deserialize(CharDeserializer::<E>::new(*c)),
        Value::String(s) => R::deserialize(StrDeserializer::<E>::new(s)),
        _ => return None,
    })
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

    #[test]
    fn guest_results_become_values_or_errors() {
        let ty = [WitType::Result {
            ok: Some(Box::new(WitType::S64)),
            err: Some(Box::new(WitType::String)),
        }];
        let ok = unwrap_guest_result(
            "f",
            &ty,
            smallvec::smallvec![Value::Result(Ok(Some(Box::new(Value::S64(4)))))],
        );
        assert_eq!(ok, Ok(smallvec::smallvec![Value::S64(4)]));
        let err = unwrap_guest_result(
            "f",
            &ty,
            smallvec::smallvec![Value::Result(Err(Some(Box::new(Value::String(
                "bad".into(),
            )))))],
        );
        let Err(TaskError::Guest { message, .. }) = err else {
            panic!("{err:?}")
        };
        assert_eq!(message, "bad");
        let plain = unwrap_guest_result("f", &[WitType::U32], smallvec::smallvec![Value::U32(1)]);
        assert_eq!(plain, Ok(smallvec::smallvec![Value::U32(1)]));
    }

    #[test]
    fn scalar_results_convert_exactly_as_through_json() {
        fn same<R: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &Value) {
            let direct = scalar::<R>(v).expect("a scalar").map_err(|e| e.to_string());
            let json =
                serde_json::from_value::<R>(values::to_rust_json(v)).map_err(|e| e.to_string());
            assert_eq!(direct, json, "{v:?} as {}", std::any::type_name::<R>());
        }
        let values = [
            Value::S64(-5),
            Value::S64(7),
            Value::U64(u64::MAX),
            Value::S8(-1),
            Value::U32(300),
            Value::F64(2.5),
            Value::F32(-0.25),
            Value::Bool(true),
            Value::Char('λ'),
            Value::String("hi".into()),
        ];
        for v in &values {
            same::<i64>(v);
            same::<u8>(v);
            same::<u64>(v);
            same::<f64>(v);
            same::<bool>(v);
            same::<String>(v);
            same::<char>(v);
            same::<serde_json::Value>(v);
        }
        assert!(scalar::<f64>(&Value::F64(f64::NAN)).is_none());
        assert!(scalar::<i64>(&Value::List(vec![])).is_none());
    }

    #[test]
    fn results_json_shapes() {
        assert_eq!(results_json(&[], false), serde_json::Value::Null);
        assert_eq!(results_json(&[Value::U8(1)], false), serde_json::json!(1));
        assert_eq!(
            results_json(&[Value::U8(1), Value::U8(2)], false),
            serde_json::json!([1, 2])
        );
        let r: Result<u8, TaskError> = typed("f", &Ok(smallvec::smallvec![Value::U8(7)]));
        assert_eq!(r, Ok(7));
        let r: Result<String, TaskError> = typed("f", &Ok(smallvec::smallvec![Value::U8(7)]));
        assert!(matches!(r, Err(TaskError::ResultType { .. })));
    }
}
