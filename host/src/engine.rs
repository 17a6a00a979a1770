//! The one wasmtime configuration that both the host (to validate modules and read their
//! signatures) and the workers (to run them) use, so the two always agree on what a module is.

use std::sync::OnceLock;

use wasmtime::{Config, Engine};

/// The engine configuration shared by host and workers.
pub(crate) fn config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Limits: wall-clock time by epochs, a deterministic budget by fuel. Both change the
    // generated code, so the host compiles with them too and both sides agree.
    config.epoch_interruption(true);
    config.consume_fuel(true);
    config
}

/// The host's engine, built on first use.
pub(crate) fn host_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(&config()).expect("the default wasmtime configuration is valid")
    })
}
