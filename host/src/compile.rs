//! Compiling untrusted modules is untrusted work: wasmtime's compiler runs on
//! attacker-chosen input (a 3 MB module with one giant function took 40 s and 3.8 GB to
//! compile), so it never runs in the host. Each compile happens in a worker process of its
//! own, started from the same [`WorkerCommand`] as workers, behind the same walls (no new
//! privileges, death with the host, no files, no sockets, no new processes, seccomp), with an
//! address-space cap ([`CompileLimits::memory`]) and a deadline
//! ([`CompileLimits::timeout`]) past which it is killed. The worker reads the module's
//! interface from the code it compiled, so the host never deserializes code at all: it keeps
//! the code, bound to the module, in its cache (`crate::code_cache`) and sends it to workers.

use std::time::Duration;

use crate::engine::Metering;
use crate::error::ExitCause;
use crate::pool::worker_command::WorkerCommand;
use crate::pool::worker_process::{PidSlot, Why, WorkerProcess};
use crate::wire::{Compiled, ModuleKind, WorkerSettings};

/// The default deadline of a compile (see [`crate::Loader::compile_timeout`]).
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default address-space cap of a compiling process (see [`crate::Loader::compile_memory`]).
pub const DEFAULT_COMPILE_MEMORY: u64 = 4 << 30;

/// How long, and in how much memory, a module may take to compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompileLimits {
    /// How long one variant's compile may take before the compiling process is killed.
    pub(crate) timeout: Duration,
    /// The compiling process's address space, in bytes (its own code and libraries
    /// included).
    pub(crate) memory: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            timeout: DEFAULT_COMPILE_TIMEOUT,
            memory: DEFAULT_COMPILE_MEMORY,
        }
    }
}

/// Why a module could not be compiled.
#[derive(Debug)]
pub(crate) enum CompileError {
    /// The module is not valid, or wasmtime cannot compile it (its message).
    Invalid(String),
    /// The compile took longer than the limit.
    Timeout(Duration),
    /// The compiling process died: its memory cap, most often (it aborts when an allocation
    /// fails), or a crash of the compiler.
    Died { cause: ExitCause, memory: u64 },
    /// No compiling process could be started.
    Spawn(crate::error::Error),
}

/// Compiles `wasm` for the host's engine of `metering` in a process of its own, within
/// `limits`.
pub(crate) fn compile(
    kind: ModuleKind,
    metering: Metering,
    wasm: &[u8],
    limits: CompileLimits,
) -> Result<Compiled, CompileError> {
    let command = WorkerCommand::default_command().map_err(CompileError::Spawn)?;
    let settings = WorkerSettings {
        max_wasm_stack: crate::limits::DEFAULT_MAX_WASM_STACK,
        allow_files: false,
        lock_down: true,
        compile_memory: Some(limits.memory),
    };
    let mut worker = WorkerProcess::spawn(&command, settings, PidSlot::default(), None)
        .map_err(CompileError::Spawn)?;
    let answer = worker.compile(kind, metering, wasm, limits.timeout);
    match answer {
        Ok(compiled) => {
            worker.shutdown();
            compiled.map_err(CompileError::Invalid)
        }
        Err((Why::Overran, _)) => Err(CompileError::Timeout(limits.timeout)),
        Err((Why::Crashed, lost)) => Err(CompileError::Died {
            cause: lost.cause,
            memory: limits.memory,
        }),
    }
}
