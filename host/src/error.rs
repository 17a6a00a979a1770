//! The outcome taxonomy: [`TaskError`] for what can happen to one task, [`Error`] for what can
//! happen to the pool itself (start-up, loading a module). Every layer reports into these two
//! types, so a caller matches on variants, never on strings.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why one task did not produce a value.
///
/// Each task submitted to a pool ends with exactly one outcome: its value, or one of these.
/// A failed task never takes the pool down with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The guest trapped: `unreachable`, a Rust panic, an integer division by zero, an
    /// out-of-bounds access... The worker survives and takes the next task.
    #[error("{}", trap_text(func, message, panic.as_deref()))]
    Trap {
        /// The export that trapped.
        func: String,
        /// What trapped, as wasmtime describes it.
        message: String,
        /// The wasm backtrace, innermost frame first, when one was captured. For a Rust panic,
        /// from the guest's own code on: the frames of the panic machinery are left out.
        backtrace: Option<String>,
        /// The panic message, when the guest panicked (a Rust panic traps with `unreachable`
        /// after printing its message to stderr, where it is read from): `power overflows s64
        /// (at power/src/lib.rs:9:36)`.
        panic: Option<String>,
    },
    /// The export returned the `err` case of its `result<T, E>`: the guest's own error.
    #[error("`{func}` returned an error: {message}")]
    Guest {
        /// The export that returned the error.
        func: String,
        /// The error as text: the string itself when `E` is a string, else its JSON.
        message: String,
        /// The error value as JSON (`null` for a `result<T>` with no error type).
        value: serde_json::Value,
    },
    /// The arguments do not fit the export's signature: wrong count or wrong type (or, from
    /// a front end, an input that could not be read as arguments at all).
    #[error("bad input for `{func}`: {detail}")]
    BadInput {
        /// The export that was called.
        func: String,
        /// What is wrong: which parameter, what its WIT type expects, what came instead.
        detail: String,
        /// Where the wrong value is, when one value is at fault: the parameter's name, and
        /// inside it the field, case or index (`p.tags[2]`).
        param: Option<String>,
    },
    /// The arguments are too large to send to a worker: a frame holds at most `limit` bytes.
    #[error("the arguments of `{func}` take {}, over the {} limit of a frame", Size(*size), Size(*limit))]
    ArgsTooLarge {
        /// The export that was called.
        func: String,
        /// The size of the frame the arguments needed.
        size: u64,
        /// The largest frame.
        limit: u64,
    },
    /// The task ran past its wall-clock timeout: it was interrupted (or, stuck in a host
    /// call, its worker was killed and replaced).
    #[error("`{func}` exceeded its {limit:?} timeout")]
    Timeout {
        /// The export that ran too long.
        func: String,
        /// The timeout.
        limit: std::time::Duration,
    },
    /// The task used up its fuel (instruction budget).
    #[error("`{func}` ran out of fuel (limit {limit})")]
    OutOfFuel {
        /// The export.
        func: String,
        /// The fuel it was given.
        limit: u64,
    },
    /// A linear memory of the task tried to grow past its cap.
    #[error("`{func}` exceeded its memory limit of {}", Size(*limit))]
    MemoryLimit {
        /// The export.
        func: String,
        /// The cap on each linear memory, in bytes.
        limit: u64,
    },
    /// A table of the task tried to grow past its cap.
    #[error("`{func}` exceeded its table limit of {limit} elements")]
    TableLimit {
        /// The export.
        func: String,
        /// The cap on each table, in elements.
        limit: u64,
    },
    /// The task overflowed its wasm stack.
    #[error("`{func}` overflowed its wasm stack of {}", Size(*limit as u64))]
    StackOverflow {
        /// The export.
        func: String,
        /// The wasm stack size, in bytes.
        limit: usize,
    },
    /// The task's result was larger than allowed.
    #[error("the result of `{func}` is about {}, over the limit of {}", Size(*size), Size(*limit))]
    ResultTooLarge {
        /// The export.
        func: String,
        /// The limit, in bytes.
        limit: u64,
        /// About how large the result was.
        size: u64,
    },
    /// The task wrote more to its stdout or stderr than allowed.
    #[error("`{func}` wrote more than its output limit of {}", Size(*limit))]
    OutputLimit {
        /// The export.
        func: String,
        /// The cap on each of stdout and stderr, in bytes.
        limit: u64,
    },
    /// A batch export (see [`crate::Task::batched`]) returned a list of another length than
    /// the list it was given: it must return one result per element, in order. Every item of
    /// the call fails with this error.
    #[error(
        "`{func}` broke the batch contract: expected {expected} results, got {got} (one per element of the list it was given, in order)"
    )]
    BatchLength {
        /// The batch export.
        func: String,
        /// How many elements the list had.
        expected: u64,
        /// How many results it returned.
        got: u64,
    },
    /// The sandbox could not be set up as granted.
    #[error("cannot set up the sandbox for `{func}`: {detail}")]
    Sandbox {
        /// The export.
        func: String,
        /// What failed.
        detail: String,
    },
    /// The worker process running the task died (crashed or was killed) before it answered,
    /// or broke the protocol and was killed by the host.
    #[error("worker process {pid} {cause} while running `{func}` (attempt {attempts}): {detail}{}", stderr_note(.stderr_tail))]
    WorkerCrashed {
        /// The export that was running.
        func: String,
        /// The worker's process id.
        pid: u32,
        /// How it ended.
        cause: ExitCause,
        /// How many times the task was tried (1 + retries used).
        attempts: u32,
        /// What the host saw: `its pipe closed`, or why the host killed it.
        detail: String,
        /// The last lines the worker wrote to its stderr, if any.
        stderr_tail: String,
    },
    /// The task was cancelled before it ran, or the pool was terminated while it was pending.
    #[error("`{func}` was cancelled before it finished")]
    Cancelled {
        /// The export that was to run.
        func: String,
    },
    /// The pool was closed or terminated before the task was submitted.
    #[error("`{func}` was not run: the pool is closed")]
    PoolClosed {
        /// The export that was to run.
        func: String,
    },
    /// The task's value could not be converted into the type the caller asked for.
    #[error("the value returned by `{func}` does not fit the requested Rust type: {detail}")]
    ResultType {
        /// The export that returned the value.
        func: String,
        /// What serde said.
        detail: String,
    },
    /// A fault inside wasmpool itself (a broken pipe, a protocol error). Please report it.
    #[error("internal error while running `{func}`: {detail}")]
    Internal {
        /// The export that was running.
        func: String,
        /// What went wrong.
        detail: String,
    },
}

/// A number of bytes as a person reads it: `64 MiB`, `1.5 GiB`, `4 KiB`, `100 bytes` (exact
/// below 1 KiB and for whole units, one decimal otherwise).
pub(crate) struct Size(pub(crate) u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        let n = self.0;
        for (unit, scale) in UNITS {
            if n >= scale {
                return if n.is_multiple_of(scale) {
                    write!(f, "{} {unit}", n / scale)
                } else {
                    write!(f, "{:.1} {unit}", n as f64 / scale as f64)
                };
            }
        }
        write!(f, "{n} byte{}", if n == 1 { "" } else { "s" })
    }
}

fn trap_text(func: &str, message: &str, panic: Option<&str>) -> String {
    match panic {
        Some(panic) => format!("`{func}` panicked: {panic}"),
        None => format!("wasm trap in `{func}`: {message}"),
    }
}

fn stderr_note(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; its last stderr lines:\n{}", tail.trim_end())
    }
}

impl TaskError {
    /// The export (function) the task called.
    pub fn func(&self) -> &str {
        match self {
            TaskError::Trap { func, .. }
            | TaskError::Guest { func, .. }
            | TaskError::BadInput { func, .. }
            | TaskError::ArgsTooLarge { func, .. }
            | TaskError::WorkerCrashed { func, .. }
            | TaskError::Timeout { func, .. }
            | TaskError::OutOfFuel { func, .. }
            | TaskError::MemoryLimit { func, .. }
            | TaskError::TableLimit { func, .. }
            | TaskError::StackOverflow { func, .. }
            | TaskError::ResultTooLarge { func, .. }
            | TaskError::OutputLimit { func, .. }
            | TaskError::BatchLength { func, .. }
            | TaskError::Sandbox { func, .. }
            | TaskError::Cancelled { func }
            | TaskError::PoolClosed { func }
            | TaskError::ResultType { func, .. }
            | TaskError::Internal { func, .. } => func,
        }
    }

    /// A short stable name for the kind of failure (`"trap"`, `"guest"`, `"bad-input"`, ...),
    /// used as the `kind` field of the CLI's JSON error objects.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskError::Trap { .. } => "trap",
            TaskError::Guest { .. } => "guest",
            TaskError::BadInput { .. } => "bad-input",
            TaskError::ArgsTooLarge { .. } => "args-too-large",
            TaskError::WorkerCrashed { .. } => "worker-crashed",
            TaskError::Timeout { .. } => "timeout",
            TaskError::OutOfFuel { .. } => "out-of-fuel",
            TaskError::MemoryLimit { .. } => "memory-limit",
            TaskError::TableLimit { .. } => "table-limit",
            TaskError::StackOverflow { .. } => "stack-overflow",
            TaskError::ResultTooLarge { .. } => "result-too-large",
            TaskError::OutputLimit { .. } => "output-limit",
            TaskError::BatchLength { .. } => "batch-length",
            TaskError::Sandbox { .. } => "sandbox",
            TaskError::Cancelled { .. } => "cancelled",
            TaskError::PoolClosed { .. } => "pool-closed",
            TaskError::ResultType { .. } => "result-type",
            TaskError::Internal { .. } => "internal",
        }
    }
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitCause {
    /// Killed by this signal number (9 is SIGKILL).
    Signal(i32),
    /// Exited with this status code.
    Code(i32),
    /// Its pipe closed but its status could not be read.
    Unknown,
}

impl fmt::Display for ExitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitCause::Signal(sig) => {
                write!(f, "was killed by signal {sig} ({})", signal_name(*sig))
            }
            ExitCause::Code(code) => write!(f, "exited with code {code}"),
            ExitCause::Unknown => write!(f, "closed its pipe"),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGINT => "SIGINT",
        libc::SIGSYS => "SIGSYS",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

/// What can go wrong with the pool itself, or with loading a module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a valid WebAssembly module or component.
    #[error("invalid module {origin}: {detail}")]
    InvalidModule {
        /// Where the bytes came from (a path, or "from bytes").
        origin: String,
        /// What the validator said.
        detail: String,
    },
    /// The module has no export by that name.
    #[error("no export named `{name}` in {origin}; its exports are: {available}")]
    NoSuchExport {
        /// The name asked for.
        name: String,
        /// The module.
        origin: String,
        /// The callable exports it does have.
        available: String,
    },
    /// The module is not a whole program: it has no `wasi:cli/run` entry point (a component)
    /// and no `_start` (a core module), so [`crate::Module::program`] cannot run it.
    #[error(
        "{origin} is not a program: it exports neither `wasi:cli/run` (a component built as a command) nor `_start` (a WASI preview-1 command module); its exports are: {available}"
    )]
    NotAProgram {
        /// The module.
        origin: String,
        /// The callable exports it does have.
        available: String,
    },
    /// The export cannot be mapped in batches ([`crate::Task::batched`]): it does not take one
    /// list and return one list.
    #[error(
        "the export `{name}` of {origin} cannot be mapped in batches: {why}; a batch export takes one list and returns a list of one result per element (`f: func(xs: list<T>) -> list<R>`)"
    )]
    NotBatchable {
        /// The export.
        name: String,
        /// The module.
        origin: String,
        /// What its signature has instead.
        why: String,
    },
    /// The export takes or returns a value that cannot cross a process boundary (a resource,
    /// a stream...): it cannot be a task.
    #[error(
        "the export `{name}` of {origin} cannot be a task: its signature holds a {what}, which cannot cross a process boundary"
    )]
    UnsupportedExport {
        /// The export.
        name: String,
        /// The module.
        origin: String,
        /// What it holds (`resource`, `stream`...).
        what: String,
    },
    /// Compiling the module took longer than the loader allows (see
    /// [`crate::Loader::compile_timeout`]): the compiling process was killed.
    #[error(
        "cannot load {origin}: compiling it took longer than the limit of {limit:?} (raise it with Loader::compile_timeout, or --compile-timeout)"
    )]
    CompileTimeout {
        /// The module.
        origin: String,
        /// The limit.
        limit: std::time::Duration,
    },
    /// The process compiling the module died: past its memory limit (see
    /// [`crate::Loader::compile_memory`]), most often, or a crash of the compiler.
    #[error(
        "cannot load {origin}: the process compiling it {cause}, as when compiling takes more than the limit of {} of memory (raise it with Loader::compile_memory, or --compile-memory)",
        Size(*memory)
    )]
    CompileFailed {
        /// The module.
        origin: String,
        /// The memory limit of the compiling process, in bytes.
        memory: u64,
        /// How the compiling process ended.
        cause: ExitCause,
    },
    /// A module file is larger than the loader reads (see [`crate::Loader::max_bytes`]).
    #[error(
        "cannot load {origin}: it is {}, over the limit of {} (raise it with Loader::max_bytes, or --max-module-size)", Size(*size), Size(*limit)
    )]
    ModuleTooLarge {
        /// The file.
        origin: String,
        /// Its size, or at least what was read of it.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A worker process could not be started.
    #[error("cannot start a worker process ({program}): {detail}")]
    Spawn {
        /// The program that was run.
        program: String,
        /// Why it failed.
        detail: String,
    },
    /// A worker answered the handshake with another protocol version, or not at all.
    #[error("worker handshake failed: {0}")]
    Handshake(String),
    /// A grant cannot be honoured (a directory that does not exist).
    #[error("invalid grant: {0}")]
    Grant(String),
    /// A shared object cannot be made (a name in use, no room left).
    #[error("shared state: {0}")]
    Shared(String),
    /// The pool was closed or terminated: it takes no new work.
    #[error("the pool is closed and takes no new tasks")]
    Closed,
    /// [`crate::Process::start`] was called on a process that had already been started.
    #[error("this process was already started: a process runs its task once")]
    AlreadyStarted,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_a_person_reads_them() {
        assert_eq!(Size(64 << 20).to_string(), "64 MiB");
        assert_eq!(Size(3 << 29).to_string(), "1.5 GiB");
        assert_eq!(Size(4096).to_string(), "4 KiB");
        assert_eq!(Size(1).to_string(), "1 byte");
        assert_eq!(Size(1000).to_string(), "1000 bytes");
        let err = TaskError::MemoryLimit {
            func: "f".into(),
            limit: 64 << 20,
        };
        assert_eq!(err.to_string(), "`f` exceeded its memory limit of 64 MiB");
    }
}
