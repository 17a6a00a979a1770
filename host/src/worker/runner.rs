//! Runs one call: a fresh store and instance from the module's pre-instantiated template, the
//! arguments turned into wasmtime values, the call, and its results or its trap.
//!
//! A fresh instance per call means no state leaks from one task to the next: a task sees
//! memory exactly as the module initialises it, whatever ran before it in this worker.

use wasmtime::component::{self, ResourceTable, Val};
use wasmtime::{Engine, Store, Trap, WasmBacktrace};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::values::Value;
use crate::wire::{ItemOutcome, ModuleKind, RunFailure};

/// How much of a task's stdout and of its stderr is kept.
const OUTPUT_CAPACITY: usize = 1 << 20;

/// A module compiled and linked, ready to be instantiated many times.
pub(crate) enum Compiled {
    Component(component::InstancePre<ComponentState>),
    Core(wasmtime::InstancePre<CoreState>),
}

/// The store data of a component task: its WASI context and resource table.
pub(crate) struct ComponentState {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// The store data of a core-module task: a WASI preview 1 context.
pub(crate) struct CoreState {
    wasi: WasiP1Ctx,
}

pub(crate) struct Runner {
    engine: Engine,
    component_linker: component::Linker<ComponentState>,
    core_linker: wasmtime::Linker<CoreState>,
}

impl Runner {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let engine = Engine::new(&crate::engine::config())?;
        let mut component_linker = component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut component_linker)?;
        let mut core_linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut core_linker, |s: &mut CoreState| &mut s.wasi)?;
        Ok(Runner {
            engine,
            component_linker,
            core_linker,
        })
    }

    pub(crate) fn compile(&self, kind: ModuleKind, bytes: &[u8]) -> Result<Compiled, String> {
        let compiled = match kind {
            ModuleKind::Component => {
                let component =
                    component::Component::new(&self.engine, bytes).map_err(|e| format!("{e:#}"))?;
                Compiled::Component(
                    self.component_linker
                        .instantiate_pre(&component)
                        .map_err(|e| format!("{e:#}"))?,
                )
            }
            ModuleKind::Core => {
                let module =
                    wasmtime::Module::new(&self.engine, bytes).map_err(|e| format!("{e:#}"))?;
                Compiled::Core(
                    self.core_linker
                        .instantiate_pre(&module)
                        .map_err(|e| format!("{e:#}"))?,
                )
            }
        };
        Ok(compiled)
    }

    /// Runs `func(args)` in a fresh instance.
    pub(crate) fn run(&self, compiled: &Compiled, func: &str, args: &[Value]) -> ItemOutcome {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        let result = match compiled {
            Compiled::Component(pre) => self.run_component(pre, wasi.build(), func, args),
            Compiled::Core(pre) => self.run_core(pre, wasi.build_p1(), func, args),
        };
        ItemOutcome {
            result,
            stdout: stdout.contents().to_vec(),
            stderr: stderr.contents().to_vec(),
        }
    }

    fn run_component(
        &self,
        pre: &component::InstancePre<ComponentState>,
        ctx: WasiCtx,
        func: &str,
        args: &[Value],
    ) -> Result<Vec<Value>, RunFailure> {
        let state = ComponentState {
            ctx,
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&self.engine, state);
        let instance = pre.instantiate(&mut store).map_err(failure)?;
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
        let params: Vec<Val> = args.iter().map(to_val).collect();
        let mut results = vec![Val::Bool(false); f.ty(&store).results().len()];
        f.call(&mut store, &params, &mut results).map_err(failure)?;
        results
            .iter()
            .map(from_val)
            .collect::<Result<_, _>>()
            .map_err(RunFailure::BadInput)
    }

    fn run_core(
        &self,
        pre: &wasmtime::InstancePre<CoreState>,
        wasi: WasiP1Ctx,
        func: &str,
        args: &[Value],
    ) -> Result<Vec<Value>, RunFailure> {
        let mut store = Store::new(&self.engine, CoreState { wasi });
        let instance = pre.instantiate(&mut store).map_err(failure)?;
        let f = instance
            .get_func(&mut store, func)
            .ok_or_else(|| RunFailure::Module(format!("no exported function `{func}`")))?;
        let params = args
            .iter()
            .map(|v| match v {
                Value::S32(x) => Ok(wasmtime::Val::I32(*x)),
                Value::S64(x) => Ok(wasmtime::Val::I64(*x)),
                Value::F32(x) => Ok(wasmtime::Val::F32(x.to_bits())),
                Value::F64(x) => Ok(wasmtime::Val::F64(x.to_bits())),
                other => Err(RunFailure::BadInput(format!(
                    "a core module takes numbers, not {other:?}"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut results = vec![wasmtime::Val::I32(0); f.ty(&store).results().len()];
        f.call(&mut store, &params, &mut results).map_err(failure)?;
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

/// A failed instantiation or call, as the host will report it.
fn failure(err: wasmtime::Error) -> RunFailure {
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
