//! What a task's store holds, and how it is bounded: its WASI context (see
//! [`super::sandbox`]), the limiter that caps its memories and tables, and its time and fuel
//! budgets, armed per call.

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::engine::Metering;
use crate::limits::{EPOCH_TICK, Resolved};

use super::sandbox::Sandbox;
use super::shared::CallShared;

/// The store data of a component task: its WASI context, resource table and limiter.
pub(crate) struct ComponentState {
    wasi: Sandbox<WasiCtx>,
    pub(super) table: ResourceTable,
    limiter: TaskLimiter,
    /// What the call may reach of the pool's shared state (see [`super::shared`]).
    pub(super) shared: CallShared,
}

impl ComponentState {
    pub(crate) fn new(wasi: Sandbox<WasiCtx>, limits: &Resolved, shared: CallShared) -> Self {
        ComponentState {
            wasi,
            table: ResourceTable::new(),
            limiter: TaskLimiter::new(limits),
            shared,
        }
    }

    /// A call starts, with `timeout`: its shared-state waits end then.
    pub(crate) fn begin_call(&mut self, timeout: Option<std::time::Duration>) {
        self.shared.begin(timeout);
    }

    /// A call ended: the locks it still holds are released (as abandoned if it `failed`).
    pub(crate) fn end_call(&mut self, failed: bool) {
        self.shared.end(failed);
    }
}

impl ComponentState {
    /// The WASI context to be, for a whole program's input.
    pub(crate) fn sandbox(&mut self) -> &mut Sandbox<WasiCtx> {
        &mut self.wasi
    }
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

impl CoreState {
    pub(crate) fn new(wasi: Sandbox<WasiP1Ctx>, limits: &Resolved) -> Self {
        CoreState {
            wasi,
            limiter: TaskLimiter::new(limits),
        }
    }

    /// The WASI context to be, for a whole program's input.
    pub(crate) fn sandbox(&mut self) -> &mut Sandbox<WasiP1Ctx> {
        &mut self.wasi
    }

    /// The WASI context, built on the guest's first WASI call (the linker's accessor).
    pub(crate) fn wasi(&mut self) -> &mut WasiP1Ctx {
        self.wasi.get()
    }
}

/// Store data that carries a [`TaskLimiter`].
pub(crate) trait Limited: 'static {
    fn limiter_mut(&mut self) -> &mut TaskLimiter;
    /// Which cap the limiter refused a growth past, if it did: the trap that follows is that
    /// limit.
    fn limit_hit(&self) -> Option<Cap>;
}

impl Limited for ComponentState {
    fn limiter_mut(&mut self) -> &mut TaskLimiter {
        &mut self.limiter
    }
    fn limit_hit(&self) -> Option<Cap> {
        self.limiter.hit
    }
}

impl Limited for CoreState {
    fn limiter_mut(&mut self) -> &mut TaskLimiter {
        &mut self.limiter
    }
    fn limit_hit(&self) -> Option<Cap> {
        self.limiter.hit
    }
}

/// The two caps a [`TaskLimiter`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    /// A linear memory's size.
    Memory,
    /// A table's elements.
    Table,
}

/// A fresh store for one task: its limiter installed, its time and fuel budgets armed, and
/// room for its results to be copied out (see [`hostcall_room`]).
pub(crate) fn limited_store<T: Limited>(engine: &Engine, state: T, limits: &Resolved) -> Store<T> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| s.limiter_mut());
    store.set_hostcall_fuel(hostcall_room(limits.max_result_bytes));
    arm(&mut store, limits);
    store
}

/// How many bytes wasmtime may copy out of a guest in one go (its "hostcall fuel", 128 MiB by
/// default, which made every result of 150 MB a trap whatever the result limit said): four
/// times the result limit, so that a result over its limit is copied and reported as
/// `ResultTooLarge` with its size, while a guest that makes a small memory look like a huge
/// result (a list of a million references to one string) still cannot make the worker
/// allocate without bound.
fn hostcall_room(max_result_bytes: u64) -> usize {
    const DEFAULT: usize = 128 << 20;
    usize::try_from(max_result_bytes.saturating_mul(4))
        .unwrap_or(usize::MAX)
        .max(DEFAULT)
}

/// Sets a store's time and fuel budgets for the next call.
pub(crate) fn arm<T>(store: &mut Store<T>, limits: &Resolved) {
    // Only the instrumented engines check epochs and fuel, and only tasks with those limits
    // run on them.
    if limits.metering != Metering::Plain {
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

/// Caps the growth of a task's memories and tables, and remembers which cap was hit, so
/// that the trap that follows is reported as the limit it is.
pub(crate) struct TaskLimiter {
    max_memory: u64,
    max_table_elements: u64,
    hit: Option<Cap>,
}

impl TaskLimiter {
    fn new(limits: &Resolved) -> Self {
        TaskLimiter {
            max_memory: limits.max_memory,
            max_table_elements: limits.max_table_elements,
            hit: None,
        }
    }

    /// Allows a growth to `desired` units of `cap`, or refuses it (a trap) and remembers why.
    fn allow(&mut self, cap: Cap, desired: usize, limit: u64) -> wasmtime::Result<bool> {
        if desired as u64 > limit {
            self.hit = Some(cap);
            let what = match cap {
                Cap::Memory => "linear memory (bytes)",
                Cap::Table => "table (elements)",
            };
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
        self.allow(Cap::Memory, desired, self.max_memory)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.allow(Cap::Table, desired, self.max_table_elements)
    }
}
