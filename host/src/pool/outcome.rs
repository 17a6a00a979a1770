//! What came back: one [`Outcome`] per task, made from its worker's reply. A failure inside
//! the worker becomes the [`TaskError`] that names it, with the limit that fired; a `result`'s
//! `err` becomes [`TaskError::Guest`], as a Python function raises.

use crate::error::TaskError;
use crate::limits::Resolved;
use crate::module::Task;
use crate::values::json::to_json;
use crate::values::wire::Packed;
use crate::values::{Value, Values, WitType};
use crate::wire::{ItemOutcome, RunFailure};

use super::job::{Job, Seen};
use super::panic;

/// The outcome of one task: its results (zero, one, or several values) or why it failed.
pub(crate) type Outcome = Result<Values, TaskError>;

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
    /// `first` of the job. Packed results go straight from the frame's bytes to outcomes. A
    /// job whose sink [`Job::observed`] gets what each item printed, and `per_item`, with it.
    pub(crate) fn deliver(
        self,
        job: &Job,
        first: usize,
        max_wasm_stack: usize,
        per_item: std::time::Duration,
    ) {
        if job.observed() {
            return self.deliver_seen(job, first, max_wasm_stack, per_item);
        }
        match self {
            Reported::Outcomes(raws) => job.deliver_from(
                first,
                raws.into_iter()
                    .map(|raw| finish(&job.task, &job.limits, max_wasm_stack, raw)),
            ),
            // Straight into a sink that keeps numbers, when it does: every item succeeded
            // with one number, which is its outcome as it is (a packed result is never a
            // guest's `result`, so `finish_results` would leave it unchanged).
            Reported::Results(results) if job.deliver_packed(first, &results) => {}
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

impl Reported {
    fn deliver_seen(
        self,
        job: &Job,
        first: usize,
        max_wasm_stack: usize,
        elapsed: std::time::Duration,
    ) {
        match self {
            Reported::Outcomes(raws) => job.deliver_seen_from(
                first,
                raws.into_iter().map(|mut raw| {
                    let seen = Seen {
                        elapsed,
                        stdout: std::mem::take(&mut raw.stdout),
                        stderr: std::mem::take(&mut raw.stderr),
                    };
                    let outcome = finish_with(
                        &job.task,
                        &job.limits,
                        max_wasm_stack,
                        raw.result,
                        &seen.stderr,
                    );
                    (outcome, seen)
                }),
            ),
            Reported::Results(results) => job.deliver_seen_from(
                first,
                results.items().map(|values| {
                    let outcome = match values {
                        Ok(values) => finish_results(&job.task, values),
                        Err(detail) => Err(TaskError::Internal {
                            func: job.task.name().to_string(),
                            detail,
                        }),
                    };
                    let seen = Seen {
                        elapsed,
                        ..Seen::default()
                    };
                    (outcome, seen)
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
    finish_with(task, limits, max_wasm_stack, raw.result, &raw.stderr)
}

/// [`finish`], from the reply's result and what the item wrote to `stderr` (where a Rust
/// panic's message is).
fn finish_with(
    task: &Task,
    limits: &Resolved,
    max_wasm_stack: usize,
    result: Result<Values, RunFailure>,
    stderr: &[u8],
) -> Outcome {
    // The name is copied only into errors: most outcomes are values.
    let func = || task.name().to_string();
    match result {
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
        Err(RunFailure::TableLimit) => Err(TaskError::TableLimit {
            func: func(),
            limit: limits.max_table_elements,
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
        Err(RunFailure::Trap { message, backtrace }) => {
            let panic = panic::panic_message(stderr);
            let backtrace = match (&panic, backtrace) {
                (Some(_), Some(bt)) => Some(panic::without_panic_frames(&bt)),
                (_, bt) => bt,
            };
            Err(TaskError::Trap {
                func: func(),
                message,
                backtrace,
                panic,
            })
        }
        Err(RunFailure::BadInput(detail)) => Err(TaskError::BadInput {
            func: func(),
            detail,
            param: None,
        }),
        Err(RunFailure::Module(detail)) => Err(TaskError::Internal {
            func: func(),
            detail,
        }),
        Err(RunFailure::BatchLength { expected, got }) => Err(TaskError::BatchLength {
            func: func(),
            expected,
            got,
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
            let value = err.map_or(serde_json::Value::Null, |v| to_json(&v));
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
