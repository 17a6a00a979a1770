//! The one wasmtime configuration that both the host (to validate modules and read their
//! signatures) and the workers (to run them) use, so the two always agree on what a module is.

use std::sync::OnceLock;

use wasmtime::{Config, Engine};

use crate::wire::Metering;

/// The engine configuration shared by host and workers, with the instrumentation `metering`
/// asks for (the host validates with [`Metering::Plain`]).
pub(crate) fn config(metering: Metering) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(metering != Metering::Plain);
    config.consume_fuel(metering == Metering::EpochsAndFuel);
    config
}

/// The host's engine, built on first use.
pub(crate) fn host_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(&config(Metering::Plain)).expect("the default wasmtime configuration is valid")
    })
}
