//! A fresh instance made while the worker waits for work.
//!
//! Making an instance and looking up its export is most of a tiny task's cost (about 10 µs of
//! a round trip of 25 to 40). A worker that has nothing to read makes, ahead of time, the
//! instance its next chunk will most likely need: one for the same export of the same module
//! with the same limits and grants as the chunk it just ran. If the next chunk is for those
//! calls, its first item runs in that instance; if not, the instance is dropped unused.
//!
//! The instance is as fresh as one made on demand: no guest code has run in it but the
//! module's own start function, which runs whenever an instance is made. What differs is
//! only when that happens, so instances are not made ahead in the two cases where it shows:
//! - a fuel limit: the start function's fuel would no longer count against the call, and fuel
//!   accounting is meant to be exact;
//! - a module whose instances take long to make (a slow start function): the worker would be
//!   busy making one when a chunk for other calls arrives.

use std::time::Duration;

use crate::limits::{Grants, Resolved};
use crate::wire::{Chunk, ModuleId};

use super::cache::ModuleCache;
use super::runner::Live;

/// Instances that take longer than this to make are not made ahead: a chunk for other calls
/// that arrives meanwhile would wait for it.
const MAX_MAKE_TIME: Duration = Duration::from_millis(1);

/// The instance made ahead, and the calls it is for.
#[derive(Default)]
pub(crate) struct Ahead {
    /// The calls to make the next instance for: the last chunk's, when they qualify.
    want: Option<Calls>,
    /// An instance made for `want`'s calls, not yet used.
    ready: Option<Live>,
}

/// What an instance depends on: which module, which export (looked up at instantiation), and
/// the limits and grants its store and WASI context were built with.
#[derive(Clone, PartialEq)]
struct Calls {
    module: ModuleId,
    func: String,
    limits: Resolved,
    grants: Grants,
}

impl Calls {
    fn matches(&self, chunk: &Chunk) -> bool {
        self.module == chunk.module
            && self.func == chunk.func
            && self.limits == chunk.limits
            && self.grants == chunk.grants
    }
}

impl Ahead {
    /// The instance made ahead for `chunk`'s calls, if there is one. An instance made for
    /// other calls is dropped (its slot in the instance pool may be needed).
    pub(crate) fn take(&mut self, chunk: &Chunk) -> Option<Live> {
        match &self.want {
            Some(calls) if calls.matches(chunk) => self.ready.take(),
            _ => {
                self.ready = None;
                None
            }
        }
    }

    /// Notes the calls of the chunk that just ran as the ones to make instances for, if they
    /// qualify: `made_in` is how long its last instance took to make (`None`: no instance
    /// was left to tell, as after a failed call).
    pub(crate) fn expect(&mut self, chunk: &Chunk, made_in: Option<Duration>) {
        let quick = made_in.is_some_and(|t| t <= MAX_MAKE_TIME);
        if !quick || chunk.limits.fuel.is_some() {
            self.want = None;
            self.ready = None;
            return;
        }
        if !self.want.as_ref().is_some_and(|calls| calls.matches(chunk)) {
            self.ready = None;
            self.want = Some(Calls {
                module: chunk.module,
                func: chunk.func.clone(),
                limits: chunk.limits,
                grants: chunk.grants.clone(),
            });
        }
    }

    /// Makes the instance the next chunk will probably need, unless it is made already or
    /// there is nothing to make it for. Called when the worker has nothing to read.
    pub(crate) fn make(&mut self, cache: &ModuleCache) {
        let Some(calls) = &self.want else { return };
        if self.ready.is_some() {
            return;
        }
        let made = cache
            .get(&calls.module, calls.limits.metering)
            .ok()
            .and_then(|compiled| {
                let runner = cache.runner();
                runner
                    .instantiate_ahead(compiled, &calls.func, &calls.limits, &calls.grants)
                    .ok()
            });
        match made {
            // Should this one have been slow to make, the next chunk's last instance will be
            // too, and `expect` stops making them.
            Some(live) => self.ready = Some(live),
            // Making it failed: the chunk that needs it will make its own and report why.
            None => self.want = None,
        }
    }

    /// Whether an instance is ready (for tests).
    #[cfg(test)]
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Metering;
    use crate::limits::Limits;
    use crate::wire::{Code, Items, ModuleKind};
    use crate::worker::TEST_SETTINGS;

    /// A core module with `id`: its start function counts to `start_loops` first.
    fn cache_with(id: ModuleId, start_loops: u32) -> ModuleCache {
        let wat = format!(
            r#"(module
                (global $n (mut i32) (i32.const 0))
                (func $start
                    (loop
                        global.get $n i32.const 1 i32.add global.set $n
                        global.get $n i32.const {start_loops} i32.lt_u br_if 0))
                (start $start)
                (func (export "f") (param i32) (result i32) local.get 0)
                (func (export "g") (param i32) (result i32) local.get 0))"#
        );
        let bytes = wat::parse_str(wat).unwrap();
        let mut cache = ModuleCache::new(TEST_SETTINGS).unwrap();
        for metering in Metering::ALL {
            cache.load(id, ModuleKind::Core, &Code::Wasm(bytes.clone()), metering);
        }
        cache
    }

    fn chunk(module: ModuleId, func: &str, limits: Resolved) -> Chunk {
        Chunk {
            chunk_id: 0,
            module,
            func: func.into(),
            items: Items::Values(Vec::new()),
            limits,
            grants: Grants::new(),
            reuse_instance: false,
            program: false,
            batch: false,
        }
    }

    const QUICK: Option<Duration> = Some(Duration::from_micros(20));

    #[test]
    fn an_instance_is_made_ahead_for_the_same_calls_only() {
        let id = [1; 32];
        let cache = cache_with(id, 1);
        let f = chunk(id, "f", Resolved::default());
        let mut ahead = Ahead::default();
        // Nothing ran yet: nothing to make an instance for.
        ahead.make(&cache);
        assert!(!ahead.is_ready());
        ahead.expect(&f, QUICK);
        ahead.make(&cache);
        assert!(ahead.is_ready());
        assert!(ahead.take(&f).is_some());
        // Taken: the next pause makes another.
        ahead.make(&cache);
        assert!(ahead.take(&f).is_some());
        // Another export, other limits or other grants: the instance made ahead is dropped unused.
        ahead.make(&cache);
        assert!(ahead.take(&chunk(id, "g", Resolved::default())).is_none());
        assert!(!ahead.is_ready());
        ahead.make(&cache);
        let other_limits = Limits::new().max_memory(1 << 20).resolve();
        assert!(ahead.take(&chunk(id, "f", other_limits)).is_none());
        ahead.make(&cache);
        let mut granted = f.clone();
        granted.grants = Grants::new().env("A", "1");
        assert!(ahead.take(&granted).is_none());
        // After a failed call (no instance left to tell how long it took): none.
        ahead.expect(&f, None);
        ahead.make(&cache);
        assert!(!ahead.is_ready());
    }

    #[test]
    fn an_instance_made_ahead_gets_its_time_budget_when_its_call_starts() {
        let id = [4; 32];
        let cache = cache_with(id, 1);
        let limits = Limits::new().timeout(Duration::from_millis(50)).resolve();
        let f = chunk(id, "f", limits);
        let mut ahead = Ahead::default();
        ahead.expect(&f, QUICK);
        ahead.make(&cache);
        // The worker waits far longer than the timeout before the call comes.
        let engines = cache.runner().flavors();
        for _ in 0..1000 {
            engines.increment_epochs();
        }
        let mut made = ahead.take(&f);
        assert!(made.is_some());
        let compiled = cache.get(&id, Metering::Epochs).unwrap();
        let args = [crate::values::Value::S32(7)];
        let args = crate::worker::runner::CallArgs::Values(&args);
        let outcome =
            cache
                .runner()
                .run_in(&mut made, compiled, "f", args, &limits, &Grants::new());
        assert_eq!(
            outcome.result,
            Ok(smallvec::smallvec![crate::values::Value::S32(7)])
        );
    }

    #[test]
    fn fuel_limited_and_slow_to_make_instances_are_not_made_ahead() {
        let id = [2; 32];
        let cache = cache_with(id, 1);
        let mut ahead = Ahead::default();
        let fueled = Limits::new().fuel(1_000_000).resolve();
        ahead.expect(&chunk(id, "f", fueled), QUICK);
        ahead.make(&cache);
        assert!(!ahead.is_ready());
        ahead.expect(
            &chunk(id, "f", Resolved::default()),
            Some(MAX_MAKE_TIME * 2),
        );
        ahead.make(&cache);
        assert!(!ahead.is_ready());

        // A start function that takes long: the instance made ahead says so, and the calls
        // it ran for get no more instances made ahead.
        let slow = [3; 32];
        let cache = cache_with(slow, 200_000_000);
        let f = chunk(slow, "f", Resolved::default());
        ahead.expect(&f, QUICK);
        ahead.make(&cache);
        let made = ahead.take(&f).expect("made");
        assert!(made.made_in() > MAX_MAKE_TIME, "{:?}", made.made_in());
        ahead.expect(&f, Some(made.made_in()));
        ahead.make(&cache);
        assert!(!ahead.is_ready());
    }
}
