//! What a task may use (grants) and how much (limits).
//!
//! Deny by default: a task sees no files, no network, no environment variables, no arguments
//! and an empty stdin, unless granted. Limits bound its time, instructions, memory, result and
//! output; each one that fires is its own [`crate::TaskError`] variant, naming the limit.
//!
//! Limits and grants are set pool-wide on the [`crate::PoolBuilder`] and can be overridden per
//! task with [`crate::Task::with_limits`] and [`crate::Task::with_grants`].

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::Metering;

/// The default cap on each linear memory of a task: 1 GiB.
pub const DEFAULT_MAX_MEMORY: u64 = 1 << 30;
/// The default cap on each table of a task: 1 Mi elements.
pub const DEFAULT_MAX_TABLE_ELEMENTS: u64 = 1 << 20;
/// The default cap on a task's encoded result: 64 MiB.
pub const DEFAULT_MAX_RESULT_BYTES: u64 = 64 << 20;
/// The default cap on each of a task's stdout and stderr: 1 MiB.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1 << 20;
/// The default wasm stack size of a worker: 1 MiB.
pub const DEFAULT_MAX_WASM_STACK: usize = 1 << 20;

/// How much a task may use. A field left `None` takes the pool's value, and the pool's
/// takes the default: no timeout, no fuel limit, [`DEFAULT_MAX_MEMORY`],
/// [`DEFAULT_MAX_TABLE_ELEMENTS`], [`DEFAULT_MAX_RESULT_BYTES`], [`DEFAULT_MAX_OUTPUT_BYTES`].
///
/// # Examples
/// ```
/// use std::time::Duration;
/// let limits = wasmpool::Limits::new().timeout(Duration::from_secs(2)).max_memory(64 << 20);
/// assert_eq!(limits.timeout, Some(Duration::from_secs(2)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Limits {
    /// Wall-clock time for one call. The guest is interrupted (epoch interruption) and the
    /// same worker takes the next task; a worker stuck in a host call is killed and replaced.
    pub timeout: Option<Duration>,
    /// A deterministic instruction budget (wasmtime fuel, about one unit per instruction).
    pub fuel: Option<u64>,
    /// Bytes each linear memory may grow to.
    pub max_memory: Option<u64>,
    /// Elements each table may grow to.
    pub max_table_elements: Option<u64>,
    /// Bytes of the encoded result.
    pub max_result_bytes: Option<u64>,
    /// Bytes of captured stdout, and as many of stderr.
    pub max_output_bytes: Option<u64>,
}

impl Limits {
    /// No limit set here: everything comes from the pool or the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`Limits::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets [`Limits::fuel`].
    pub fn fuel(mut self, fuel: u64) -> Self {
        self.fuel = Some(fuel);
        self
    }

    /// Sets [`Limits::max_memory`].
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// Sets [`Limits::max_table_elements`].
    pub fn max_table_elements(mut self, elements: u64) -> Self {
        self.max_table_elements = Some(elements);
        self
    }

    /// Sets [`Limits::max_result_bytes`].
    pub fn max_result_bytes(mut self, bytes: u64) -> Self {
        self.max_result_bytes = Some(bytes);
        self
    }

    /// Sets [`Limits::max_output_bytes`].
    pub fn max_output_bytes(mut self, bytes: u64) -> Self {
        self.max_output_bytes = Some(bytes);
        self
    }

    /// These limits, with every unset field taken from `fallback`.
    pub fn or(self, fallback: Limits) -> Limits {
        Limits {
            timeout: self.timeout.or(fallback.timeout),
            fuel: self.fuel.or(fallback.fuel),
            max_memory: self.max_memory.or(fallback.max_memory),
            max_table_elements: self.max_table_elements.or(fallback.max_table_elements),
            max_result_bytes: self.max_result_bytes.or(fallback.max_result_bytes),
            max_output_bytes: self.max_output_bytes.or(fallback.max_output_bytes),
        }
    }

    /// Every field set: these limits over the defaults.
    pub(crate) fn resolve(self) -> Resolved {
        Resolved {
            timeout: self.timeout,
            fuel: self.fuel,
            metering: Metering::needed(self.timeout.is_some(), self.fuel.is_some()),
            max_memory: self.max_memory.unwrap_or(DEFAULT_MAX_MEMORY),
            max_table_elements: self
                .max_table_elements
                .unwrap_or(DEFAULT_MAX_TABLE_ELEMENTS),
            max_result_bytes: self.max_result_bytes.unwrap_or(DEFAULT_MAX_RESULT_BYTES),
            max_output_bytes: self.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES),
        }
    }
}

/// Limits with every value decided, as they travel to the worker. Made only by
/// [`Limits::resolve`], which also decides the engine variant they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Resolved {
    pub(crate) timeout: Option<Duration>,
    pub(crate) fuel: Option<u64>,
    /// The instrumented engine variant the timeout and the fuel limit need: decided once,
    /// here, and carried with the limits to the driver, the worker and the store.
    pub(crate) metering: Metering,
    pub(crate) max_memory: u64,
    pub(crate) max_table_elements: u64,
    pub(crate) max_result_bytes: u64,
    pub(crate) max_output_bytes: u64,
}

impl Default for Resolved {
    fn default() -> Self {
        Limits::new().resolve()
    }
}

/// What a task may reach beyond its own memory. Nothing, by default: no files, no
/// environment variables, no arguments, no network, an empty stdin. Clocks and random
/// numbers are always available.
///
/// # Examples
/// ```
/// let grants = wasmpool::Grants::new().read_only_dir("/srv/data", "/data").env("MODE", "fast");
/// assert_eq!(grants.dirs.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Grants {
    /// Host directories mapped into the guest.
    pub dirs: Vec<DirGrant>,
    /// Environment variables the guest sees.
    pub env: Vec<(String, String)>,
    /// The pool's shared objects the guest may open, by the names it opens them by.
    pub(crate) shared: Vec<crate::shared::SharedGrant>,
}

/// A host directory visible to the guest under another path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the guest sees it (`/data`, `.`).
    pub guest: String,
    /// Whether the guest may only read (enforced: writes fail with a permission error).
    pub read_only: bool,
}

impl Grants {
    /// Nothing granted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Grants read and write access to `host`, seen by the guest as `guest`.
    pub fn dir(mut self, host: impl Into<PathBuf>, guest: impl Into<String>) -> Self {
        self.dirs.push(DirGrant {
            host: host.into(),
            guest: guest.into(),
            read_only: false,
        });
        self
    }

    /// Grants read-only access to `host`, seen by the guest as `guest`.
    pub fn read_only_dir(mut self, host: impl Into<PathBuf>, guest: impl Into<String>) -> Self {
        self.dirs.push(DirGrant {
            host: host.into(),
            guest: guest.into(),
            read_only: true,
        });
        self
    }

    /// Sets an environment variable the guest can read.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Grants the shared object `object` (a value, an array, a lock, a queue, a pipe end, a
    /// dict of the pool that runs the task) under its own name; see [`crate::shared`].
    ///
    /// ```no_run
    /// let pool = wasmpool::Pool::new()?;
    /// let counter = pool.value("counter", 0)?;
    /// let grants = wasmpool::Grants::new().shared(&counter);
    /// # Ok::<(), wasmpool::Error>(())
    /// ```
    pub fn shared(self, object: &impl crate::Shareable) -> Self {
        let name = object.name().to_string();
        self.shared_as(&name, object)
    }

    /// Grants the shared object `object` under `name`, the name the task opens it by.
    pub fn shared_as(mut self, name: &str, object: &impl crate::Shareable) -> Self {
        let grant = object.grant_as(name).0;
        self.shared.retain(|g| g.name != grant.name);
        self.shared.push(grant);
        self
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.env.is_empty() && self.shared.is_empty()
    }

    /// Checks that every granted directory exists, so a typo is an error when the pool or
    /// task is set up rather than a failure of every task.
    pub(crate) fn check(&self) -> Result<(), crate::Error> {
        for dir in &self.dirs {
            if !dir.host.is_dir() {
                return Err(crate::Error::Grant(format!(
                    "{} is not a directory (granted as {})",
                    dir.host.display(),
                    dir.guest
                )));
            }
        }
        Ok(())
    }
}

/// How the wall-clock timeout is enforced: the worker's epoch ticks every `EPOCH_TICK`.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How long past a task's timeout the host waits for the worker before killing it: the
/// worker interrupts a running guest itself within a tick, so only a worker stuck in a host
/// call (a long sleep, a blocking read) is ever killed.
pub(crate) fn kill_grace(timeout: Duration) -> Duration {
    Duration::from_millis(500) + timeout / 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_limits_override_pool_limits_override_defaults() {
        let pool = Limits::new()
            .timeout(Duration::from_secs(5))
            .max_memory(100);
        let task = Limits::new().timeout(Duration::from_secs(1)).fuel(10);
        let resolved = task.or(pool).resolve();
        assert_eq!(resolved.timeout, Some(Duration::from_secs(1)));
        assert_eq!(resolved.fuel, Some(10));
        assert_eq!(resolved.max_memory, 100);
        assert_eq!(resolved.max_output_bytes, DEFAULT_MAX_OUTPUT_BYTES);
        assert_eq!(Limits::new().resolve().timeout, None);
    }

    #[test]
    fn grants_are_empty_by_default() {
        assert!(Grants::new().is_empty());
        let g = Grants::new()
            .dir("/tmp", "/work")
            .read_only_dir("/etc", "/etc");
        assert!(!g.dirs[0].read_only && g.dirs[1].read_only);
    }
}
