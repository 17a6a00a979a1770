//! wasmpool runs untrusted computations in parallel, safely: Python's `multiprocessing.Pool`
//! and `concurrent.futures.ProcessPoolExecutor`, rebuilt for WebAssembly. Each task sits
//! behind two walls, a wasmtime sandbox inside an isolated worker process.
//!
//! # Quick start
//! ```no_run
//! use wasmpool::{Module, Pool};
//!
//! let pool = Pool::builder().workers(4).build()?;               // 4 worker processes
//! let square = Module::from_file("square.wasm")?.task("square")?; // validated once, here
//! let squares: Vec<i64> = pool.map(&square, 0..100_i64)?;   // in input order
//! assert_eq!(squares[12], 144);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Tasks
//! A task is an export of a WebAssembly component (any WIT signature: strings, records,
//! lists, options, results, variants, enums, flags) or of a core module (numbers only).
//! Arguments are any `serde::Serialize` value and results any `serde::Deserialize` type; they
//! are checked against the export's WIT signature before anything is sent, so a wrong type is
//! a clear [`TaskError::BadInput`] naming the parameter. A record field `word-count` matches a
//! Rust field `word_count`, a variant case `circle` matches `Circle`.
//!
//! # The API, by its Python names
//! - [`Pool::map`], [`Pool::starmap`], [`Pool::map_async`], [`Pool::imap`],
//!   [`Pool::imap_unordered`]: many items, chunked (Python's chunksize heuristic by default).
//! - [`Pool::map_batched`], [`Pool::imap_batched`], [`Task::batched`]: many tiny items, each
//!   chunk one call of an export that takes a list and returns a list.
//! - [`Pool::apply`], [`Pool::apply_async`], [`Pool::submit`]: one call; the handle is a
//!   [`TaskFuture`] with blocking, timed and `async` waits, and [`as_completed`] / [`wait`].
//! - [`Process`]: one task in a worker process of its own.
//! - [`Pool::close`], [`Pool::join`], [`Pool::terminate`]; dropping a pool terminates it.
//!
//! # Failures
//! Every task ends with exactly one outcome. A trap ([`TaskError::Trap`]) fails that task
//! alone; an `err` returned by a `result<T, E>` export is [`TaskError::Guest`]; a limit that
//! fires is its own variant ([`TaskError::Timeout`], [`TaskError::OutOfFuel`],
//! [`TaskError::MemoryLimit`], ...); a worker that dies fails only the tasks it held
//! ([`TaskError::WorkerCrashed`]) and is replaced.
//!
//! # Untrusted code
//! Deny by default: a task sees no files, no network, no environment, no arguments and an
//! empty stdin unless [`Grants`] say so, and [`Limits`] bound its time, instructions, memory,
//! output and result, pool-wide ([`PoolBuilder::limits`]) or per task ([`Task::with_limits`]).
//!
//! # What tasks print
//! The library never prints. What a task writes to stdout and stderr is handed, when the task
//! ends, to the handler of [`PoolBuilder::on_output`] (or [`Process::on_output`]); by default
//! it goes to the `log` facade (target `wasmpool::guest`), as do the library's own warnings
//! (a worker's stderr, a replaced worker).
//!
//! # Front ends
//! A program that deals in JSON rather than Rust types (the `wasmpool` command line is one)
//! checks arguments with [`Task::args_from_json`] or [`Task::arg_from_json`], runs them with
//! [`Pool::apply_json`] or streams them with [`Pool::imap_json`], and gets each outcome as
//! JSON with WIT's names, or as its [`TaskError`], with its position in the input. For a batch
//! export, it does the same with the task [`Task::batched`] makes, whose arguments are one
//! element of the list each (the command line's `map --batch`).
//!
//! # Workers
//! A worker is this same executable, started with `WASMPOOL_WORKER` set: a constructor that runs
//! before `main` turns it into a worker, so no extra code is needed in your program. A
//! [`WorkerCommand`] runs another program instead (such as `wasmpool worker`), for every slot
//! of a pool ([`PoolBuilder::worker_command`]) or for a [`Process`].
//!
//! # Workers on other machines
//! A pool mixes local workers with workers reached through the launchers clusters already
//! run: [`PoolBuilder::ssh`], [`PoolBuilder::slurm`], [`PoolBuilder::kubectl`], or any
//! [`Launcher`] template. Each remote worker raises the same walls on its own machine, its
//! link carries heartbeats both ways (a lost link is found within seconds and its task
//! retried or failed with [`TaskError::WorkerCrashed`]; no remote worker outlives its pool),
//! and compiled code goes only to a worker whose engine can run it.

#![deny(missing_docs)]

mod code_cache;
mod compile;
mod engine;
mod error;
mod limits;
mod module;
mod pool;
pub mod shared;
mod shared_code;
mod spin;
mod values;
mod walls;
mod wire;
mod worker;

#[doc(hidden)]
pub mod benching;
#[doc(hidden)]
pub mod fuzzing;

pub use code_cache::{cache_dir, set_cache_dir};
pub use compile::{DEFAULT_COMPILE_MEMORY, DEFAULT_COMPILE_TIMEOUT};
pub use error::{Error, ExitCause, TaskError};
pub use limits::{
    DEFAULT_MAX_MEMORY, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_MAX_TABLE_ELEMENTS, DEFAULT_MAX_WASM_STACK, DirGrant, Grants, Limits,
};
pub use module::{
    CompileEvent, DEFAULT_MAX_MODULE_BYTES, LARGE_MODULE_BYTES, Loader, Module, Task,
};
pub use pool::handle::{MapResult, ReturnWhen, TaskFuture, WaitOutcome, as_completed, wait};
pub use pool::imap::{Captured, Imap, ImapJson, JsonOutcome, Order, StreamOptions};
pub use pool::launcher::Launcher;
pub use pool::output::{GuestOutput, GuestStream};
pub use pool::process::Process;
pub use pool::worker_command::{DEFAULT_STARTUP_TIMEOUT, WorkerCommand, set_worker_command};
pub use pool::{Pool, PoolBuilder};
pub use shared::{
    GrantOf, LockGuard, PipeEnd, Shareable, SharedArray, SharedDict, SharedError, SharedFloatArray,
    SharedFloatValue, SharedLock, SharedQueue, SharedValue,
};
pub use values::{Args, MAX_VALUE_DEPTH, Signature, Value, WitType};
pub use wire::{MAX_FRAME_BYTES, ModuleKind};
pub use worker::worker_main;
