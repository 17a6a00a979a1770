//! The library's errors as the package's exception classes (defined in Python, in
//! `wasmpool/_errors.py`): each [`wasmpool::TaskError`] variant is a subclass of
//! `wasmpool.TaskError` carrying the variant's fields as attributes, each
//! [`wasmpool::Error`] a `wasmpool.Error`. The message is the library's own text.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use wasmpool::{ExitCause, TaskError, WitType};

use crate::values::to_python;

/// An instance of `wasmpool._errors.<class>` with `message`, and `attrs` set on it.
fn make(py: Python<'_>, class: &str, message: String, attrs: &Bound<'_, PyDict>) -> PyErr {
    let built = (|| -> PyResult<PyErr> {
        let module = py.import("wasmpool._errors")?;
        let cls = module.getattr(class)?;
        let exc = cls.call1((message,))?;
        for (k, v) in attrs.iter() {
            exc.setattr(k.cast_into::<pyo3::types::PyString>()?, v)?;
        }
        Ok(PyErr::from_value(exc))
    })();
    built.unwrap_or_else(|e| e)
}

/// A task's error as its exception; `err_type` shapes a guest error's value.
pub(crate) fn task_error(py: Python<'_>, e: &TaskError, err_type: Option<&WitType>) -> PyErr {
    let attrs = PyDict::new(py);
    let filled = (|| -> PyResult<&'static str> {
        attrs.set_item("func", e.func())?;
        attrs.set_item("kind", e.kind())?;
        Ok(match e {
            TaskError::Trap {
                message,
                backtrace,
                panic,
                ..
            } => {
                attrs.set_item("trap", message)?;
                attrs.set_item("backtrace", backtrace)?;
                attrs.set_item("panic", panic)?;
                "Trap"
            }
            TaskError::Guest { message, value, .. } => {
                attrs.set_item("value", to_python(py, value, err_type)?)?;
                attrs.set_item("error_message", message)?;
                "GuestError"
            }
            TaskError::BadInput { detail, param, .. } => {
                attrs.set_item("detail", detail)?;
                attrs.set_item("param", param)?;
                "BadInput"
            }
            TaskError::ArgsTooLarge { size, limit, .. } => {
                attrs.set_item("size", size)?;
                attrs.set_item("limit", limit)?;
                "ArgsTooLarge"
            }
            TaskError::Timeout { limit, .. } => {
                attrs.set_item("limit", limit.as_secs_f64())?;
                "Timeout"
            }
            TaskError::OutOfFuel { limit, .. } => {
                attrs.set_item("limit", limit)?;
                "OutOfFuel"
            }
            TaskError::MemoryLimit { limit, .. } => {
                attrs.set_item("limit", limit)?;
                "MemoryLimit"
            }
            TaskError::TableLimit { limit, .. } => {
                attrs.set_item("limit", limit)?;
                "TableLimit"
            }
            TaskError::StackOverflow { limit, .. } => {
                attrs.set_item("limit", limit)?;
                "StackOverflow"
            }
            TaskError::ResultTooLarge { limit, size, .. } => {
                attrs.set_item("limit", limit)?;
                attrs.set_item("size", size)?;
                "ResultTooLarge"
            }
            TaskError::OutputLimit { limit, .. } => {
                attrs.set_item("limit", limit)?;
                "OutputLimit"
            }
            TaskError::BatchLength { expected, got, .. } => {
                attrs.set_item("expected", expected)?;
                attrs.set_item("got", got)?;
                "BatchLength"
            }
            TaskError::Sandbox { detail, .. } => {
                attrs.set_item("detail", detail)?;
                "SandboxError"
            }
            TaskError::WorkerCrashed {
                pid,
                cause,
                attempts,
                detail,
                stderr_tail,
                ..
            } => {
                attrs.set_item("pid", pid)?;
                let (signal, code) = match cause {
                    ExitCause::Signal(s) => (Some(*s), None),
                    ExitCause::Code(c) => (None, Some(*c)),
                    _ => (None, None),
                };
                attrs.set_item("signal", signal)?;
                attrs.set_item("exit_code", code)?;
                attrs.set_item("attempts", attempts)?;
                attrs.set_item("detail", detail)?;
                attrs.set_item("stderr_tail", stderr_tail)?;
                "WorkerCrashed"
            }
            TaskError::Cancelled { .. } => "Cancelled",
            TaskError::PoolClosed { .. } => "PoolClosed",
            TaskError::ResultType { detail, .. } => {
                attrs.set_item("detail", detail)?;
                "ResultType"
            }
            TaskError::Internal { detail, .. } => {
                attrs.set_item("detail", detail)?;
                "InternalError"
            }
            _ => "TaskError",
        })
    })();
    match filled {
        Ok(class) => make(py, class, e.to_string(), &attrs),
        Err(err) => err,
    }
}

/// A pool's or a load's error as `wasmpool.Error` (or its subclass for the kind).
pub(crate) fn load_error(e: wasmpool::Error) -> PyErr {
    Python::attach(|py| {
        let attrs = PyDict::new(py);
        let (class, kind) = match &e {
            wasmpool::Error::InvalidModule { .. } => ("InvalidModule", "invalid-module"),
            wasmpool::Error::NoSuchExport { .. } => ("NoSuchExport", "no-such-export"),
            wasmpool::Error::NotAProgram { .. } => ("Error", "not-a-program"),
            wasmpool::Error::NotBatchable { .. } => ("Error", "not-batchable"),
            wasmpool::Error::UnsupportedExport { .. } => ("Error", "unsupported-export"),
            wasmpool::Error::CompileTimeout { .. } => ("Error", "compile-timeout"),
            wasmpool::Error::CompileFailed { .. } => ("Error", "compile-failed"),
            wasmpool::Error::ModuleTooLarge { .. } => ("Error", "module-too-large"),
            wasmpool::Error::Read { .. } => ("Error", "read"),
            wasmpool::Error::Spawn { .. } => ("Error", "spawn"),
            wasmpool::Error::Handshake(_) => ("Error", "handshake"),
            wasmpool::Error::Grant(_) => ("Error", "grant"),
            wasmpool::Error::Closed => ("Error", "closed"),
            wasmpool::Error::AlreadyStarted => ("Error", "already-started"),
            wasmpool::Error::Shared(_) => ("Error", "shared"),
            _ => ("Error", "other"),
        };
        let _ = attrs.set_item("kind", kind);
        make(py, class, e.to_string(), &attrs)
    })
}

/// `multiprocessing.TimeoutError`, as its `AsyncResult.get(timeout)` raises it.
pub(crate) fn timeout_error(py: Python<'_>) -> PyErr {
    let built = (|| -> PyResult<PyErr> {
        let cls = py.import("multiprocessing")?.getattr("TimeoutError")?;
        Ok(PyErr::from_value(cls.call0()?))
    })();
    built.unwrap_or_else(|e| e)
}

/// An operation on a shared object that failed: `Closed` (a queue or pipe closed and
/// drained), `queue.Full`, `IndexError`, `ValueError` (an item too large, say),
/// `multiprocessing.TimeoutError`, or `wasmpool.Error` of kind `closed` (the pool is gone).
pub(crate) fn shared_error(py: Python<'_>, e: wasmpool::SharedError) -> PyErr {
    use wasmpool::SharedError;
    let message = e.to_string();
    let attrs = PyDict::new(py);
    match e {
        SharedError::Closed => make(py, "Closed", message, &attrs),
        SharedError::PoolClosed => {
            let _ = attrs.set_item("kind", "closed");
            make(py, "Error", message, &attrs)
        }
        SharedError::Timeout => timeout_error(py),
        SharedError::Full => {
            let built = (|| -> PyResult<PyErr> {
                let cls = py.import("queue")?.getattr("Full")?;
                Ok(PyErr::from_value(cls.call0()?))
            })();
            built.unwrap_or_else(|e| e)
        }
        SharedError::OutOfRange { .. } => pyo3::exceptions::PyIndexError::new_err(message),
        // The library's detail (an item larger than its queue, say) without the prefix of
        // its JSON case, which the Python half does not use.
        SharedError::Json(detail) => pyo3::exceptions::PyValueError::new_err(detail),
        _ => pyo3::exceptions::PyValueError::new_err(message),
    }
}

/// `wasmpool.Closed` with `message`.
pub(crate) fn closed_error(py: Python<'_>, message: &str) -> PyErr {
    make(py, "Closed", message.to_string(), &PyDict::new(py))
}
