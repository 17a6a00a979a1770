//! The one wasmtime configuration that both the host (to validate modules and read their
//! signatures) and the workers (to run them) use, so the two always agree on what a module is,
//! in its three [`Metering`] variants.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How compiled code is instrumented for limits. Each check costs guest speed (epoch checks at
/// loop heads about a third on a tight loop, fuel about half), so a worker compiles a module
/// in the variant a task needs, and a task with no time or fuel limit runs at full speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Metering {
    /// No instrumentation: no timeout, no fuel limit.
    Plain,
    /// Epoch checks, for a wall-clock timeout.
    Epochs,
    /// Epoch checks and fuel, for a fuel limit (with or without a timeout).
    EpochsAndFuel,
}

impl Metering {
    /// The variant a task with a timeout (or not) and a fuel limit (or not) runs on. Decided
    /// once, when limits are resolved ([`crate::limits::Resolved::metering`]), and carried from
    /// there to the worker.
    pub(crate) fn needed(timeout: bool, fuel: bool) -> Metering {
        match (timeout, fuel) {
            (_, true) => Metering::EpochsAndFuel,
            (true, false) => Metering::Epochs,
            (false, false) => Metering::Plain,
        }
    }

    #[cfg(test)]
    pub(crate) const ALL: [Metering; 3] =
        [Metering::Plain, Metering::Epochs, Metering::EpochsAndFuel];

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The engine configuration shared by host and workers, with the instrumentation `metering`
/// asks for (the host validates with [`Metering::Plain`]).
pub(crate) fn config(metering: Metering) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(metering != Metering::Plain);
    config.consume_fuel(metering == Metering::EpochsAndFuel);
    config
}

/// The instance allocator of a worker's engines: a small pool of pre-reserved slots, reused
/// from task to task, instead of an `mmap` and `munmap` per instance (which, measured, was 70%
/// of a tiny task's time, all of it in the kernel). A slot's memory is reset in place: with
/// copy-on-write images a new instance starts from the module's initial memory, and with
/// `PAGEMAP_SCAN` only the pages the last task dirtied are wiped.
///
/// A worker runs one task at a time, so the pool is sized for one component instance with
/// room to spare, not for concurrency: every memory slot reserves 4 GiB of address space
/// (plus guard), which [`crate::walls::WORKER_ADDRESS_SPACE`] allows for.
pub(crate) fn worker_instance_pool() -> InstanceAllocationStrategy {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(WORKER_POOL_COMPONENTS)
        .total_core_instances(64)
        .total_memories(WORKER_POOL_MEMORIES)
        .total_tables(64)
        // Stacks are for async calls, which workers do not make; the default (1000 stacks,
        // each with a guard page) took 3 ms per engine to map, at every worker start.
        .total_stacks(1)
        .max_memories_per_module(WORKER_POOL_MEMORIES)
        .max_tables_per_module(8)
        .table_elements(crate::limits::DEFAULT_MAX_TABLE_ELEMENTS as usize)
        .max_memory_size(1 << 32)
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    InstanceAllocationStrategy::Pooling(pool)
}

/// Component instances a worker's engine can hold at once.
const WORKER_POOL_COMPONENTS: u32 = 4;
/// Linear memories a worker's engine can hold at once (each reserves 4 GiB of address space).
pub(crate) const WORKER_POOL_MEMORIES: u32 = 4;

/// The host's engine for each metering variant, built on first use: the plain one validates
/// modules and reads their signatures, and each compiles the code workers of that variant
/// load (see [`crate::code_cache`]).
pub(crate) fn host_engine(metering: Metering) -> &'static Engine {
    static ENGINES: [OnceLock<Engine>; 3] = [const { OnceLock::new() }; 3];
    ENGINES[metering.index()].get_or_init(|| {
        Engine::new(&config(metering)).expect("the default wasmtime configuration is valid")
    })
}

/// SHA-256 of wasmtime's `precompile_compatibility_hash` of `engine`: equal on two machines
/// exactly when code one compiled can run on the other (the target, the CPU features
/// Cranelift compiled for, the settings, wasmtime's version). Hashed through SHA-256 rather
/// than the standard library's hasher, whose output may change between Rust releases.
pub(crate) fn compat_digest(engine: &Engine) -> [u8; 32] {
    use sha2::Digest;
    use std::hash::{Hash, Hasher};
    struct Sha(sha2::Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha(sha2::Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.finalize().into()
}

/// The compatibility of each metering variant's engine on this machine, by
/// [`Metering::index`]: what a remote worker reports at its handshake, and what the host
/// compares it with (`host` true: the host's own engines; false: engines made for the
/// purpose, as a worker, whose engines have other settings, does).
pub(crate) fn compat_digests(host: bool) -> Result<Vec<[u8; 32]>, String> {
    [Metering::Plain, Metering::Epochs, Metering::EpochsAndFuel]
        .into_iter()
        .map(|metering| {
            if host {
                Ok(compat_digest(host_engine(metering)))
            } else {
                Engine::new(&config(metering))
                    .map(|engine| compat_digest(&engine))
                    .map_err(|e| format!("cannot make its {metering:?} engine: {e:#}"))
            }
        })
        .collect()
}

/// This machine's target and the CPU features Cranelift can use, for messages: `x86_64
/// linux +sse4.2 +avx2 ...`.
pub(crate) fn target_description() -> String {
    let mut text = format!("{} {}", std::env::consts::ARCH, std::env::consts::OS);
    #[cfg(target_arch = "x86_64")]
    {
        let features = [
            ("sse3", std::arch::is_x86_feature_detected!("sse3")),
            ("ssse3", std::arch::is_x86_feature_detected!("ssse3")),
            ("sse4.1", std::arch::is_x86_feature_detected!("sse4.1")),
            ("sse4.2", std::arch::is_x86_feature_detected!("sse4.2")),
            ("popcnt", std::arch::is_x86_feature_detected!("popcnt")),
            ("avx", std::arch::is_x86_feature_detected!("avx")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("bmi1", std::arch::is_x86_feature_detected!("bmi1")),
            ("bmi2", std::arch::is_x86_feature_detected!("bmi2")),
            ("lzcnt", std::arch::is_x86_feature_detected!("lzcnt")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
        ];
        for (name, _) in features.iter().filter(|(_, on)| *on) {
            text.push_str(" +");
            text.push_str(name);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let features = [
            ("lse", std::arch::is_aarch64_feature_detected!("lse")),
            ("paca", std::arch::is_aarch64_feature_detected!("paca")),
            ("fp16", std::arch::is_aarch64_feature_detected!("fp16")),
        ];
        for (name, _) in features.iter().filter(|(_, on)| *on) {
            text.push_str(" +");
            text.push_str(name);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker on this machine reports the host's own compatibility, so that a remote
    /// worker on a machine like the host's gets the host's compiled code; each variant's
    /// differs from the others'.
    #[test]
    fn a_worker_here_can_run_the_hosts_code_and_the_variants_differ() {
        let host = compat_digests(true).unwrap();
        let worker = compat_digests(false).unwrap();
        assert_eq!(host, worker);
        assert_ne!(host[0], host[1]);
        assert_ne!(host[1], host[2]);
        assert!(target_description().starts_with(std::env::consts::ARCH));
    }
}
