//! Runs one call: a fresh store and instance from the module's pre-instantiated template, the
//! arguments turned into wasmtime values, the call, and its results or its trap.
//!
//! A fresh instance per call means no state leaks from one task to the next: a task sees
//! memory exactly as the module initialises it, whatever ran before it in this worker.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{self, ResourceTable, Val};
use wasmtime::{Engine, ResourceLimiter, Store, Trap, WasmBacktrace};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::limits::{EPOCH_TICK, Grants, Resolved};
use crate::values::{Value, Values};
use crate::wire::{Code, ItemOutcome, Metering, ModuleKind, Row, RunFailure, WorkerSettings};

use super::capture::Capture;
use super::sandbox::Sandbox;

/// A module compiled and linked, ready to be instantiated many times.
pub(crate) enum Compiled {
    Component(component::InstancePre<ComponentState>),
    Core(wasmtime::InstancePre<CoreState>),
}

/// The store data of a component task: its WASI context, resource table and limiter.
pub(crate) struct ComponentState {
    wasi: Sandbox<WasiCtx>,
    table: ResourceTable,
    limiter: TaskLimiter,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self.wasi.get(),
            table: &mut self.table,
        }
    }
}

/// The store data of a core-module task: a WASI preview 1 context and its limiter.
pub(crate) struct CoreState {
    wasi: Sandbox<WasiP1Ctx>,
    limiter: TaskLimiter,
}

/// Store data that carries a [`TaskLimiter`].
trait Limited: 'static {
    fn limiter(&self) -> &TaskLimiter;
    fn limiter_mut(&mut self) -> &mut TaskLimiter;
}

impl Limited for ComponentState {
    fn limiter(&self) -> &TaskLimiter {
        &self.limiter
    }
    fn limiter_mut(&mut self) -> &mut TaskLimiter {
        &mut self.limiter
    }
}

impl Limited for CoreState {
    fn limiter(&self) -> &TaskLimiter {
        &self.limiter
    }
    fn limiter_mut(&mut self) -> &mut TaskLimiter {
        &mut self.limiter
    }
}

/// A fresh store for one task: its limiter installed, its time and fuel budgets armed.
fn limited_store<T: Limited>(engine: &Engine, state: T, limits: &Resolved) -> Store<T> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| s.limiter_mut());
    arm(&mut store, limits);
    store
}

/// Caps the growth of a task's memories and tables, and remembers that a cap was hit, so
/// that the trap that follows is reported as the limit it is.
struct TaskLimiter {
    max_memory: u64,
    max_table_elements: u64,
    hit: bool,
}

impl TaskLimiter {
    /// Allows a growth to `desired` units of `what`, or refuses it (a trap) and remembers why.
    fn allow(&mut self, what: &str, desired: usize, limit: u64) -> wasmtime::Result<bool> {
        if desired as u64 > limit {
            self.hit = true;
            wasmtime::bail!("{what} would grow to {desired}, past the limit of {limit}");
        }
        Ok(true)
    }
}

impl ResourceLimiter for TaskLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.allow("linear memory (bytes)", desired, self.max_memory)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.allow("table (elements)", desired, self.max_table_elements)
    }
}

/// Compiles and runs modules, with one engine per [`Metering`] variant: a task pays for the
/// instrumentation its limits need, and no more.
pub(crate) struct Runner {
    settings: WorkerSettings,
    flavors: Flavors,
}

/// Each metering variant's engine and linkers, by [`Metering::index`], made on first use:
/// making one takes about a millisecond (its instance pool's reservations, the WASI linkers),
/// which a worker that never sees a timeout or a fuel limit need not pay at start-up, where it
/// delays the first task. Clones share them, with the ticker that advances their epochs.
#[derive(Clone, Default)]
pub(crate) struct Flavors(Arc<[OnceLock<Flavor>; 3]>);

impl Flavors {
    /// Advances the epoch of every engine made so far.
    pub(crate) fn increment_epochs(&self) {
        for flavor in self.0.iter().filter_map(OnceLock::get) {
            flavor.engine.increment_epoch();
        }
    }
}

/// One engine and its linkers.
pub(crate) struct Flavor {
    engine: Engine,
    component_linker: component::Linker<ComponentState>,
    core_linker: wasmtime::Linker<CoreState>,
}

impl Flavor {
    fn new(settings: WorkerSettings, metering: Metering) -> anyhow::Result<Self> {
        let mut config = crate::engine::config(metering);
        config.max_wasm_stack(settings.max_wasm_stack);
        config.allocation_strategy(crate::engine::worker_instance_pool());
        let engine = Engine::new(&config)?;
        Ok(Flavor {
            component_linker: component_linker(&engine)?,
            core_linker: core_linker(&engine)?,
            engine,
        })
    }
}

/// What a component task can import: WASI 0.2 (each task gets only what it was granted; see
/// [`Sandbox`]).
fn component_linker(engine: &Engine) -> anyhow::Result<component::Linker<ComponentState>> {
    let mut linker = component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Ok(linker)
}

/// What a core-module task can import: WASI preview 1.
fn core_linker(engine: &Engine) -> anyhow::Result<wasmtime::Linker<CoreState>> {
    let mut linker = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut CoreState| s.wasi.get())?;
    Ok(linker)
}

/// Why a worker could not link this component, if it could not: an import its linker does not
/// provide, or provides with another type. The host asks at load time (on its own engine; only
/// types are compared), so that such a module is refused then, not at every call.
pub(crate) fn component_link_error(component: &component::Component) -> Option<String> {
    let linker = component_linker(component.engine()).ok()?;
    linker
        .instantiate_pre(component)
        .err()
        .map(|e| format!("{e:#}"))
}

/// As [`component_link_error`], for a core module.
pub(crate) fn core_link_error(module: &wasmtime::Module) -> Option<String> {
    let linker = core_linker(module.engine()).ok()?;
    linker
        .instantiate_pre(module)
        .err()
        .map(|e| format!("{e:#}"))
}

impl Runner {
    pub(crate) fn new(settings: WorkerSettings) -> anyhow::Result<Self> {
        let runner = Runner {
            settings,
            flavors: Flavors::default(),
        };
        // The plain variant, which tasks without limits use, is made now, so that a worker
        // that cannot make an engine says so at start-up.
        runner.flavor(Metering::Plain).map_err(anyhow::Error::msg)?;
        Ok(runner)
    }

    /// The engines made so far (and those made later), for the ticker.
    pub(crate) fn flavors(&self) -> Flavors {
        self.flavors.clone()
    }

    /// The engine and linkers of one metering variant, made if this is its first use.
    fn flavor(&self, metering: Metering) -> Result<&Flavor, String> {
        let cell = &self.flavors.0[metering.index()];
        if let Some(flavor) = cell.get() {
            return Ok(flavor);
        }
        let flavor = Flavor::new(self.settings, metering)
            .map_err(|e| format!("the worker cannot make its {metering:?} engine: {e:#}"))?;
        Ok(cell.get_or_init(|| flavor))
    }

    /// Loads (or compiles) a module for the engine of one metering variant.
    pub(crate) fn compile(
        &self,
        kind: ModuleKind,
        code: &Code,
        metering: Metering,
    ) -> Result<Compiled, String> {
        let flavor = self.flavor(metering)?;
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

    /// The engine a task with these limits runs on (the cache picks the matching compiled
    /// variant by the same rule).
    fn engine_for(&self, limits: &Resolved) -> Result<&Engine, RunFailure> {
        self.flavor(Metering::for_limits(limits))
            .map(|flavor| &flavor.engine)
            .map_err(RunFailure::Module)
    }

    /// Runs `func(args)` in a fresh instance, within `limits`, with only what `grants` allow.
    pub(crate) fn run(
        &self,
        compiled: &Compiled,
        func: &str,
        args: Args<'_>,
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
        args: Args<'_>,
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
        let result = match result {
            Err(RunFailure::Trap { ref message, .. })
                if message.contains("beyond capacity") || overflowed =>
            {
                Err(RunFailure::OutputLimit)
            }
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
    /// [`super::spare`]): its time and fuel budgets are set when that call starts, not now.
    pub(crate) fn prepare(
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
        let limiter = TaskLimiter {
            max_memory: limits.max_memory,
            max_table_elements: limits.max_table_elements,
            hit: false,
        };
        let engine = self.engine_for(limits)?;
        let callee = match compiled {
            Compiled::Component(pre) => {
                let state = ComponentState {
                    wasi: Sandbox::new(grants, &stdout, &stderr)?,
                    table: ResourceTable::new(),
                    limiter,
                };
                let mut store = limited_store(engine, state, limits);
                let instance = pre
                    .instantiate(&mut store)
                    .map_err(|e| failure(e, store.data().limiter().hit))?;
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
                let state = CoreState {
                    wasi: Sandbox::new(grants, &stdout, &stderr)?,
                    limiter,
                };
                let mut store = limited_store(engine, state, limits);
                let instance = pre
                    .instantiate(&mut store)
                    .map_err(|e| failure(e, store.data().limiter().hit))?;
                let f = instance
                    .get_func(&mut store, func)
                    .ok_or_else(|| RunFailure::Module(format!("no exported function `{func}`")))?;
                Callee::Core(store, f)
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

/// One call's arguments: values, or numbers read in place from a packed chunk.
#[derive(Clone, Copy)]
pub(crate) enum Args<'a> {
    Values(&'a [Value]),
    Packed(Row<'a>),
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
    Core(Store<CoreState>, wasmtime::Func),
}

impl Live {
    /// Calls the export once with `args`, within `limits` (time and fuel are per call).
    fn call(&mut self, args: &Args<'_>, limits: &Resolved) -> Result<Values, RunFailure> {
        let rearm = !self.armed;
        self.armed = false;
        match &mut self.callee {
            Callee::Component(store, f, results) => {
                if rearm {
                    arm(store, limits);
                }
                let params = &mut self.params;
                params.clear();
                match args {
                    Args::Values(args) => params.extend(args.iter().map(to_val)),
                    Args::Packed(row) => {
                        for value in row.values() {
                            params.push(to_val(&value.map_err(RunFailure::BadInput)?));
                        }
                    }
                }
                f.call(&mut *store, params, results)
                    .map_err(|e| failure(e, store.data().limiter().hit))?;
                // A plain loop: collecting into a `Result` costs more than the call's own
                // conversion for one number.
                let mut values = Values::new();
                for result in results.iter() {
                    values.push(from_val(result).map_err(RunFailure::BadInput)?);
                }
                Ok(values)
            }
            Callee::Core(store, f) => {
                if rearm {
                    arm(store, limits);
                }
                let params = match args {
                    Args::Values(args) => args.iter().map(core_val).collect::<Result<Vec<_>, _>>(),
                    Args::Packed(row) => row
                        .values()
                        .map(|value| core_val(&value.map_err(RunFailure::BadInput)?))
                        .collect(),
                }?;
                let mut results = vec![wasmtime::Val::I32(0); f.ty(&*store).results().len()];
                f.call(&mut *store, &params, &mut results)
                    .map_err(|e| failure(e, store.data().limiter().hit))?;
                results
                    .iter()
                    .map(|v| match v {
                        wasmtime::Val::I32(x) => Ok(Value::S32(*x)),
                        wasmtime::Val::I64(x) => Ok(Value::S64(*x)),
                        wasmtime::Val::F32(bits) => Ok(Value::F32(f32::from_bits(*bits))),
                        wasmtime::Val::F64(bits) => Ok(Value::F64(f64::from_bits(*bits))),
                        other => Err(RunFailure::BadInput(format!(
                            "unsupported core result {other:?}"
                        ))),
                    })
                    .collect()
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

/// Sets a fresh store's time and fuel budgets.
fn arm<T>(store: &mut Store<T>, limits: &Resolved) {
    // Only the instrumented engines check epochs and fuel, and only tasks with those limits
    // run on them.
    if Metering::for_limits(limits) != Metering::Plain {
        // An epoch deadline defaults to 0 ticks, which would interrupt at once.
        let ticks = match limits.timeout {
            Some(timeout) => (timeout.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64 + 1,
            None => u64::MAX / 2,
        };
        store.set_epoch_deadline(ticks);
    }
    if let Some(fuel) = limits.fuel {
        let _ = store.set_fuel(fuel);
    }
}

/// A failed instantiation or call, as the host will report it. `limit_hit` says whether the
/// limiter refused a memory or table growth during the call.
fn failure(err: wasmtime::Error, limit_hit: bool) -> RunFailure {
    if limit_hit {
        return RunFailure::MemoryLimit;
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

/// A core module's parameter: a number of one of wasm's four types.
fn core_val(value: &Value) -> Result<wasmtime::Val, RunFailure> {
    match value {
        Value::S32(x) => Ok(wasmtime::Val::I32(*x)),
        Value::S64(x) => Ok(wasmtime::Val::I64(*x)),
        Value::F32(x) => Ok(wasmtime::Val::F32(x.to_bits())),
        Value::F64(x) => Ok(wasmtime::Val::F64(x.to_bits())),
        other => Err(RunFailure::BadInput(format!(
            "a core module takes numbers, not {other:?}"
        ))),
    }
}

fn to_val(value: &Value) -> Val {
    let boxed = |v: &Option<Box<Value>>| v.as_deref().map(|v| Box::new(to_val(v)));
    match value {
        Value::Bool(b) => Val::Bool(*b),
        Value::S8(n) => Val::S8(*n),
        Value::U8(n) => Val::U8(*n),
        Value::S16(n) => Val::S16(*n),
        Value::U16(n) => Val::U16(*n),
        Value::S32(n) => Val::S32(*n),
        Value::U32(n) => Val::U32(*n),
        Value::S64(n) => Val::S64(*n),
        Value::U64(n) => Val::U64(*n),
        Value::F32(x) => Val::Float32(*x),
        Value::F64(x) => Val::Float64(*x),
        Value::Char(c) => Val::Char(*c),
        Value::String(s) => Val::String(s.clone()),
        Value::List(items) => Val::List(items.iter().map(to_val).collect()),
        Value::Record(fields) => {
            Val::Record(fields.iter().map(|(n, v)| (n.clone(), to_val(v))).collect())
        }
        Value::Tuple(items) => Val::Tuple(items.iter().map(to_val).collect()),
        Value::Variant(case, payload) => Val::Variant(case.clone(), boxed(payload)),
        Value::Enum(case) => Val::Enum(case.clone()),
        Value::Option(v) => Val::Option(boxed(v)),
        Value::Result(Ok(v)) => Val::Result(Ok(boxed(v))),
        Value::Result(Err(v)) => Val::Result(Err(boxed(v))),
        Value::Flags(flags) => Val::Flags(flags.clone()),
    }
}

fn from_val(val: &Val) -> Result<Value, String> {
    let boxed = |v: &Option<Box<Val>>| -> Result<Option<Box<Value>>, String> {
        v.as_deref().map(|v| from_val(v).map(Box::new)).transpose()
    };
    let list = |items: &[Val]| items.iter().map(from_val).collect::<Result<Vec<_>, _>>();
    Ok(match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(n) => Value::S8(*n),
        Val::U8(n) => Value::U8(*n),
        Val::S16(n) => Value::S16(*n),
        Val::U16(n) => Value::U16(*n),
        Val::S32(n) => Value::S32(*n),
        Val::U32(n) => Value::U32(*n),
        Val::S64(n) => Value::S64(*n),
        Val::U64(n) => Value::U64(*n),
        Val::Float32(x) => Value::F32(*x),
        Val::Float64(x) => Value::F64(*x),
        Val::Char(c) => Value::Char(*c),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) => Value::List(list(items)?),
        Val::Record(fields) => Value::Record(
            fields
                .iter()
                .map(|(n, v)| Ok((n.clone(), from_val(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        Val::Tuple(items) => Value::Tuple(list(items)?),
        Val::Variant(case, payload) => Value::Variant(case.clone(), boxed(payload)?),
        Val::Enum(case) => Value::Enum(case.clone()),
        Val::Option(v) => Value::Option(boxed(v)?),
        Val::Result(Ok(v)) => Value::Result(Ok(boxed(v)?)),
        Val::Result(Err(v)) => Value::Result(Err(boxed(v)?)),
        Val::Flags(flags) => Value::Flags(flags.clone()),
        other => {
            return Err(format!(
                "the result holds a value that cannot leave the worker: {other:?}"
            ));
        }
    })
}
