//! Runs one call: a fresh store and instance from the module's pre-instantiated template, the
//! arguments turned into wasmtime values, the call, and its results or its failure.
//!
//! A fresh instance per call means no state leaks from one task to the next: a task sees
//! memory exactly as the module initialises it, whatever ran before it in this worker.

use std::time::{Duration, Instant};

use wasmtime::component::{self, Val};
use wasmtime::{Store, Trap, WasmBacktrace};

use crate::engine::Metering;
use crate::limits::{Grants, Resolved};
use crate::values::wasm::{core_val, from_core_val, from_val, to_val};
use crate::values::wire::Row;
use crate::values::{Value, Values};
use crate::wire::{Code, ItemOutcome, ModuleKind, RunFailure, WorkerSettings};

use super::capture::Capture;
use super::core_call::{self, CoreCall};
use super::engines::Flavors;
use super::sandbox::{ProgramInput, Sandbox};
use super::shared::CallShared;
use super::store::{Cap, ComponentState, CoreState, Limited, arm, limited_store};

mod list;
pub(crate) use list::{Elements, ListFailure, Returned};

/// A module compiled and linked, ready to be instantiated many times.
pub(crate) enum Compiled {
    Component(component::InstancePre<ComponentState>),
    Core(wasmtime::InstancePre<CoreState>),
}

/// Compiles and runs modules on the worker's engines (one per [`Metering`] variant).
pub(crate) struct Runner {
    flavors: Flavors,
    /// Whether core exports of numbers are called through raw values (see
    /// [`super::core_call`]); off only for the bench, to print both paths side by side.
    raw_core_calls: bool,
}

impl Runner {
    /// A runner with the plain engine made now, which tasks without limits use, so that a
    /// worker that cannot make an engine says so at start-up; the others come on first use.
    pub(crate) fn new(settings: WorkerSettings) -> Result<Self, String> {
        let flavors = Flavors::new(settings);
        flavors.get(Metering::Plain)?;
        Ok(Runner {
            flavors,
            raw_core_calls: true,
        })
    }

    /// Calls core exports through `Func::call` instead of raw values (for the bench).
    pub(crate) fn without_raw_core_calls(mut self) -> Self {
        self.raw_core_calls = false;
        self
    }

    /// The engines made so far (and those made later), for the ticker.
    pub(crate) fn flavors(&self) -> Flavors {
        self.flavors.clone()
    }

    /// Loads (or compiles) a module for the engine of one metering variant.
    pub(crate) fn compile(
        &self,
        kind: ModuleKind,
        code: &Code,
        metering: Metering,
    ) -> Result<Compiled, String> {
        let flavor = self.flavors.get(metering)?;
        let engine = &flavor.engine;
        let compiled = match kind {
            ModuleKind::Component => {
                let component = match code {
                    Code::Wasm(bytes) => component::Component::new(engine, bytes),
                    // SAFETY: the host's own compiler output (see `Code::Precompiled`); its
                    // engine configuration is checked by wasmtime as it loads.
                    Code::Precompiled(bytes) => unsafe {
                        component::Component::deserialize(engine, bytes)
                    },
                    Code::Descriptor { .. } => Err(no_descriptor()),
                }
                .map_err(|e| format!("{e:#}"))?;
                Compiled::Component(
                    flavor
                        .component_linker
                        .instantiate_pre(&component)
                        .map_err(|e| format!("{e:#}"))?,
                )
            }
            ModuleKind::Core => {
                let module = match code {
                    Code::Wasm(bytes) => wasmtime::Module::new(engine, bytes),
                    // SAFETY: as for components above.
                    Code::Precompiled(bytes) => unsafe {
                        wasmtime::Module::deserialize(engine, bytes)
                    },
                    Code::Descriptor { .. } => Err(no_descriptor()),
                }
                .map_err(|e| format!("{e:#}"))?;
                Compiled::Core(
                    flavor
                        .core_linker
                        .instantiate_pre(&module)
                        .map_err(|e| format!("{e:#}"))?,
                )
            }
        };
        Ok(compiled)
    }

    /// Loads a module's compiled code from `file` (the host's descriptor of it: see
    /// `crate::shared_code`) for the engine of one metering variant. wasmtime maps the file
    /// instead of copying it, and makes the module's initial memory a mapping of it too, so
    /// that every worker holding the module shares one copy of their pages.
    ///
    /// wasmtime 48 takes a core module's file as an open file, but a component's only by
    /// path: the descriptor's own, `/proc/self/fd/N`, which a worker without granted
    /// directories cannot open but has answered with a duplicate of the descriptor
    /// (`walls::answer_open`).
    pub(crate) fn load_file(
        &self,
        kind: ModuleKind,
        file: std::fs::File,
        metering: Metering,
    ) -> Result<Compiled, String> {
        use std::os::fd::AsRawFd;
        let flavor = self.flavors.get(metering)?;
        let engine = &flavor.engine;
        let error = |e: wasmtime::Error| format!("{e:#}");
        Ok(match kind {
            ModuleKind::Component => {
                let path = format!("/proc/self/fd/{}", file.as_raw_fd());
                // SAFETY: the host's own compiler output, as for `Code::Precompiled` (its
                // engine configuration is checked by wasmtime as it loads), in a file that never
                // changes while it is mapped: a sealed memfd, or a cache entry, which is replaced
                // by renaming a new file over it, never written in place (`crate::code_cache`).
                let mapped = unsafe { component::Component::deserialize_file(engine, &path) };
                let component = match mapped {
                    Ok(component) => component,
                    // A worker with granted directories opens the path for real, which a
                    // system without /proc does not have: the bytes, then, read from the
                    // descriptor (an error of the code's own comes again from these).
                    Err(_) => {
                        let bytes = read_all(&file).map_err(|e| format!("{e}"))?;
                        // SAFETY: as above, in memory of our own.
                        unsafe { component::Component::deserialize(engine, &bytes) }
                            .map_err(error)?
                    }
                };
                drop(file);
                let pre = flavor.component_linker.instantiate_pre(&component);
                Compiled::Component(pre.map_err(error)?)
            }
            ModuleKind::Core => {
                // SAFETY: as for a component above.
                let module = unsafe { wasmtime::Module::deserialize_open_file(engine, file) }
                    .map_err(error)?;
                Compiled::Core(flavor.core_linker.instantiate_pre(&module).map_err(error)?)
            }
        })
    }

    /// The engine a task with these limits runs on (the cache picks the matching compiled
    /// variant by the same field).
    fn engine_for(&self, limits: &Resolved) -> Result<&wasmtime::Engine, RunFailure> {
        self.flavors
            .get(limits.metering)
            .map(|flavor| &flavor.engine)
            .map_err(RunFailure::Module)
    }

    /// Runs `func(args)` in a fresh instance, within `limits`, with only what `grants` allow.
    pub(crate) fn run(
        &self,
        compiled: &Compiled,
        func: &str,
        args: CallArgs<'_>,
        limits: &Resolved,
        grants: &Grants,
    ) -> ItemOutcome {
        let mut live = None;
        self.run_in(&mut live, compiled, func, args, limits, grants)
    }

    /// Runs `func(args)` in the instance `live` holds, first making one if it holds none.
    /// The instance is kept for the next call only if this call succeeded: after a trap or a
    /// limit, its state is not to be trusted, and the next call gets a fresh one.
    pub(crate) fn run_in(
        &self,
        live: &mut Option<Live>,
        compiled: &Compiled,
        func: &str,
        args: CallArgs<'_>,
        limits: &Resolved,
        grants: &Grants,
    ) -> ItemOutcome {
        // The instance stays in `live` (not moved out and back: it is large, and this is the
        // per-item path of a reused instance).
        let instance = match live {
            Some(instance) => instance,
            None => match self.instantiate(compiled, func, limits, grants) {
                Ok(instance) => live.insert(instance),
                Err(failure) => return ItemOutcome::failed(failure),
            },
        };
        let result = instance.call(&args, limits);
        let (stdout, stderr, overflowed) = instance.take_output();
        // A guest whose write did not fit was refused it, and traps when it cannot cope: that
        // trap is the output limit.
        let result = match result {
            Err(RunFailure::Trap { .. }) if overflowed => Err(RunFailure::OutputLimit),
            other => other,
        };
        if result.is_err() {
            *live = None;
        }
        let result = result.and_then(|values| {
            let size: u64 = values.iter().map(Value::approx_size).sum();
            if size > limits.max_result_bytes {
                Err(RunFailure::ResultTooLarge(size))
            } else {
                Ok(values)
            }
        });
        ItemOutcome {
            result,
            stdout,
            stderr,
        }
    }

    /// A fresh instance of `compiled` with `func` looked up, made ahead of its first call (see
    /// [`super::ahead`]): its time and fuel budgets are set when that call starts, not now.
    pub(crate) fn instantiate_ahead(
        &self,
        compiled: &Compiled,
        func: &str,
        limits: &Resolved,
        grants: &Grants,
    ) -> Result<Live, RunFailure> {
        let mut live = self.instantiate(compiled, func, limits, grants)?;
        live.armed = false;
        Ok(live)
    }

    /// A fresh instance of `compiled`, with `func` looked up, ready for calls.
    fn instantiate(
        &self,
        compiled: &Compiled,
        func: &str,
        limits: &Resolved,
        grants: &Grants,
    ) -> Result<Live, RunFailure> {
        let started = Instant::now();
        let cap = usize::try_from(limits.max_output_bytes).unwrap_or(usize::MAX);
        let stdout = Capture::new(cap);
        let stderr = Capture::new(cap);
        let engine = self.engine_for(limits)?;
        let callee = match compiled {
            Compiled::Component(pre) => {
                let state = ComponentState::new(
                    Sandbox::new(grants, &stdout, &stderr)?,
                    limits,
                    CallShared::new(&grants.shared),
                );
                let mut store = limited_store(engine, state, limits);
                let instance = pre
                    .instantiate(&mut store)
                    .map_err(|e| failure(e, store.data().limit_hit()))?;
                let export = match func.split_once('#') {
                    Some((iface, name)) => {
                        let component = pre.component();
                        let iface = component.get_export_index(None, iface);
                        iface.and_then(|i| component.get_export_index(Some(&i), name))
                    }
                    None => pre.component().get_export_index(None, func),
                };
                let f = export
                    .and_then(|index| instance.get_func(&mut store, index))
                    .ok_or_else(|| RunFailure::Module(format!("no exported function `{func}`")))?;
                let results = vec![Val::Bool(false); f.ty(&store).results().len()];
                Callee::Component(store, f, results)
            }
            Compiled::Core(pre) => {
                let state = CoreState::new(Sandbox::new(grants, &stdout, &stderr)?, limits);
                let mut store = limited_store(engine, state, limits);
                let instance = pre
                    .instantiate(&mut store)
                    .map_err(|e| failure(e, store.data().limit_hit()))?;
                let f = instance
                    .get_func(&mut store, func)
                    .ok_or_else(|| RunFailure::Module(format!("no exported function `{func}`")))?;
                let raw = if self.raw_core_calls {
                    CoreCall::new(&store, &f)
                } else {
                    None
                };
                Callee::Core(store, f, raw)
            }
        };
        Ok(Live {
            callee,
            stdout,
            stderr,
            armed: true,
            made_in: started.elapsed(),
            params: Vec::new(),
        })
    }
}

/// One call's arguments: values, or numbers read in place from a packed chunk, or a whole
/// program's arguments and stdin.#[derive(Clone, Copy)]
pub(crate) enum CallArgs<'a> {
    Values(&'a [Value]),
    Packed(Row<'a>),
    /// A whole program's two values, its arguments (`list<string>`) and its stdin (`string`):
    /// they go to its WASI context, its entry point is called without parameters, and its
    /// result is its exit code.
    Program(&'a [Value]),
}

/// A program's arguments and stdin, from the two values the host checked against the
/// signature [`crate::Module::program`] gives it.
fn program_input(args: &[Value]) -> Result<ProgramInput, RunFailure> {
    match args {
        [Value::List(argv), Value::String(stdin)] => {
            let args = argv
                .iter()
                .map(|arg| match arg {
                    Value::String(arg) => Ok(arg.clone()),
                    other => Err(format!("a program argument is not a string: {other:?}")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(RunFailure::BadInput)?;
            Ok(ProgramInput {
                args,
                stdin: bytes::Bytes::from(stdin.clone().into_bytes()),
            })
        }
        _ => Err(RunFailure::BadInput(
            "a program takes its arguments (list<string>) and its stdin (string)".into(),
        )),
    }
}

/// A program's exit code from how its entry point ended: 0 when it returned (`ok` for
/// `wasi:cli/run`), 1 for `wasi:cli/run`'s `err`, the code it exited with (`proc_exit(3)`,
/// `std::process::exit`), or the failure (a trap, a limit) that ended it.
fn exit_code(
    ended: Result<(), wasmtime::Error>,
    limit_hit: Option<Cap>,
    run_result: Option<&Val>,
) -> Result<Values, RunFailure> {
    let code = match ended {
        Ok(()) => match run_result {
            Some(Val::Result(Err(_))) => 1,
            _ => 0,
        },
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => exit.0,
            None => return Err(failure(e, limit_hit)),
        },
    };
    Ok(smallvec::smallvec![Value::S32(code)])
}

/// An instance ready to be called, with its captured output.
pub(crate) struct Live {
    callee: Callee,
    stdout: Capture,
    stderr: Capture,
    /// Whether the store's time and fuel budgets are set for the next call: those set at
    /// instantiation serve the first call (they also bound the module's start function); every
    /// later call, and the first call of an instance made ahead of it, gets them afresh.
    armed: bool,
    /// How long making the instance took (its start function included).
    made_in: Duration,
    /// A component call's parameters, kept between calls.
    params: Vec<Val>,
}

enum Callee {
    /// The store, the export, and a buffer for its results (sized once, kept between calls).
    Component(Store<ComponentState>, component::Func, Vec<Val>),
    /// The store, the export, and its raw call (numbers only; `None` for any other
    /// signature, which goes through `Func::call`).
    Core(Store<CoreState>, wasmtime::Func, Option<CoreCall>),
}

impl Live {
    /// Calls the export once with `args`, within `limits` (time and fuel are per call).
    fn call(&mut self, args: &CallArgs<'_>, limits: &Resolved) -> Result<Values, RunFailure> {
        let rearm = !self.armed;
        self.armed = false;
        if let CallArgs::Program(args) = args {
            return self.call_program(args, limits, rearm);
        }
        match &mut self.callee {
            Callee::Component(store, f, results) => {
                if rearm {
                    arm(store, limits);
                }
                let params = &mut self.params;
                params.clear();
                match args {
                    CallArgs::Values(args) => params.extend(args.iter().map(to_val)),
                    CallArgs::Packed(row) => {
                        for value in row.values() {
                            params.push(to_val(&value.map_err(RunFailure::BadInput)?));
                        }
                    }
                    CallArgs::Program(_) => unreachable!("a program is run by call_program"),
                }
                store.data_mut().begin_call(limits.timeout);
                let called = f.call(&mut *store, params, results);
                store.data_mut().end_call(called.is_err());
                called.map_err(|e| failure(e, store.data().limit_hit()))?;
                // A plain loop: collecting into a `Result` costs more than the call's own
                // conversion for one number.
                let mut values = Values::new();
                for result in results.iter() {
                    values.push(from_val(result).map_err(RunFailure::BadInput)?);
                }
                Ok(values)
            }
            Callee::Core(store, f, Some(raw)) => {
                if rearm {
                    arm(store, limits);
                }
                let args = match args {
                    CallArgs::Values(args) => core_call::Args::Values(args),
                    CallArgs::Packed(row) => core_call::Args::Packed(*row),
                    CallArgs::Program(_) => unreachable!("a program is run by call_program"),
                };
                raw.call(store, f, args)?
                    .map_err(|e| failure(e, store.data().limit_hit()))
            }
            Callee::Core(store, f, None) => {
                if rearm {
                    arm(store, limits);
                }
                let params = match args {
                    CallArgs::Values(args) => {
                        args.iter().map(core_val).collect::<Result<Vec<_>, _>>()
                    }
                    CallArgs::Packed(row) => row.values().map(|value| core_val(&value?)).collect(),
                    CallArgs::Program(_) => unreachable!("a program is run by call_program"),
                }
                .map_err(RunFailure::BadInput)?;
                let mut results = vec![wasmtime::Val::I32(0); f.ty(&*store).results().len()];
                f.call(&mut *store, &params, &mut results)
                    .map_err(|e| failure(e, store.data().limit_hit()))?;
                results
                    .iter()
                    .map(|v| from_core_val(v).map_err(RunFailure::BadInput))
                    .collect()
            }
        }
    }

    /// Runs a whole program once: its arguments and stdin into its WASI context, its entry
    /// point called, its exit code the result.
    fn call_program(
        &mut self,
        args: &[Value],
        limits: &Resolved,
        rearm: bool,
    ) -> Result<Values, RunFailure> {
        let input = program_input(args)?;
        match &mut self.callee {
            Callee::Component(store, f, results) => {
                if rearm {
                    arm(store, limits);
                }
                store.data_mut().sandbox().set_input(input)?;
                store.data_mut().begin_call(limits.timeout);
                let ended = f.call(&mut *store, &[], results).map(drop);
                store.data_mut().end_call(ended.is_err());
                exit_code(ended, store.data().limit_hit(), results.first())
            }
            Callee::Core(store, f, _) => {
                if rearm {
                    arm(store, limits);
                }
                store.data_mut().sandbox().set_input(input)?;
                let ended = f.call(&mut *store, &[], &mut []).map(drop);
                exit_code(ended, store.data().limit_hit(), None)
            }
        }
    }

    /// How long making this instance took.
    pub(crate) fn made_in(&self) -> Duration {
        self.made_in
    }

    /// What the last call printed (the output since the call before it), and whether stdout
    /// or stderr reached the output cap (the instance's, over all its calls).
    fn take_output(&mut self) -> (Vec<u8>, Vec<u8>, bool) {
        let (out, out_full) = self.stdout.take();
        let (err, err_full) = self.stderr.take();
        (out, err, out_full || err_full)
    }
}

/// A failed instantiation or call, as the host will report it. `limit_hit` says which cap,
/// if any, the limiter refused a growth past during the call.
fn failure(err: wasmtime::Error, limit_hit: Option<Cap>) -> RunFailure {
    match limit_hit {
        Some(Cap::Memory) => return RunFailure::MemoryLimit,
        Some(Cap::Table) => return RunFailure::TableLimit,
        None => {}
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return RunFailure::Timeout,
        Some(Trap::OutOfFuel) => return RunFailure::OutOfFuel,
        Some(Trap::StackOverflow) => return RunFailure::StackOverflow,
        _ => {}
    }
    let backtrace = err
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| bt.to_string())
        .filter(|bt| !bt.trim().is_empty());
    let message = match err.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{err:#}"),
    };
    let message = message
        .strip_prefix("wasm trap: ")
        .unwrap_or(&message)
        .to_string();
    RunFailure::Trap { message, backtrace }
}

/// The error of a `Code::Descriptor` given to [`Runner::compile`], which takes bytes.
fn no_descriptor() -> wasmtime::Error {
    wasmtime::Error::msg("the module's code was to come as a descriptor, not bytes")
}

/// The whole of `file`, read without moving its offset (a worker cannot open it again).
fn read_all(file: &std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut bytes = vec![0; file.metadata()?.len() as usize];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}
