//! A worker's engines: one wasmtime engine per [`Metering`] variant, each with the linkers that
//! give tasks what they may import (WASI, and nothing else), made on first use.
//!
//! Each check a variant compiles in costs guest speed, so a task pays for the instrumentation
//! its limits need and no more (see [`Metering`]). Making an engine takes about a millisecond
//! (its instance pool's reservations, the WASI linkers), which a worker that never sees a
//! timeout or a fuel limit need not pay at start-up, where it would delay the first task. The
//! engines are made after the seccomp lock-down as well as before: making one needs no system
//! call the filter refuses.

use std::sync::{Arc, OnceLock};

use wasmtime::Engine;
use wasmtime::component;

use crate::engine::Metering;
use crate::wire::WorkerSettings;

use super::store::{ComponentState, CoreState};

/// Each metering variant's engine and linkers, by [`Metering::index`], made on first use.
/// Clones share them, with the ticker that advances their epochs.
#[derive(Clone)]
pub(crate) struct Flavors {
    settings: WorkerSettings,
    made: Arc<[OnceLock<Flavor>; 3]>,
}

/// One engine and its linkers.
pub(crate) struct Flavor {
    pub(crate) engine: Engine,
    pub(crate) component_linker: component::Linker<ComponentState>,
    pub(crate) core_linker: wasmtime::Linker<CoreState>,
}

impl Flavors {
    /// No engine yet; each is made for `settings` when first asked for.
    pub(crate) fn new(settings: WorkerSettings) -> Self {
        Flavors {
            settings,
            made: Arc::default(),
        }
    }

    /// The engine and linkers of one metering variant, made if this is its first use.
    pub(crate) fn get(&self, metering: Metering) -> Result<&Flavor, String> {
        let cell = &self.made[metering.index()];
        if let Some(flavor) = cell.get() {
            return Ok(flavor);
        }
        let flavor = Flavor::new(self.settings, metering)
            .map_err(|e| format!("the worker cannot make its {metering:?} engine: {e:#}"))?;
        Ok(cell.get_or_init(|| flavor))
    }

    /// Advances the epoch of every engine made so far.
    pub(crate) fn increment_epochs(&self) {
        for flavor in self.made.iter().filter_map(OnceLock::get) {
            flavor.engine.increment_epoch();
        }
    }
}

impl Flavor {
    fn new(settings: WorkerSettings, metering: Metering) -> wasmtime::Result<Self> {
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
/// [`super::sandbox::Sandbox`]).
fn component_linker(engine: &Engine) -> wasmtime::Result<component::Linker<ComponentState>> {
    let mut linker = component::Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    super::shared::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// What a core-module task can import: WASI preview 1.
fn core_linker(engine: &Engine) -> wasmtime::Result<wasmtime::Linker<CoreState>> {
    let mut linker = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, CoreState::wasi)?;
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
