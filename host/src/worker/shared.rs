//! The worker's side of shared state: the `wasmpool:shared` and `wasi:keyvalue` imports a
//! task calls (see [`crate::shared`] for what each object is and where it lives).
//!
//! The shared state arrives once, right after the handshake: a local worker's region and
//! shared-state socket ([`install`]), or for a worker behind a launcher the word that its link
//! reaches the host's objects ([`install_over_link`]); `shared/reach.rs` runs each operation
//! either way. Each call's store holds what its grants allow ([`CallShared`]): `open(name)`
//! finds the name among them or answers `not-granted`, whatever the pool holds.
//!
//! Every wait is bounded by the call's deadline, as epochs do not interrupt a host call: a
//! wait that reaches it ends the call as an epoch interruption would, a `Timeout`. When the
//! call ends, the locks it still holds are released ([`CallShared::end`]), marked abandoned if
//! the call failed.

mod reach;

use std::fs::File;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, Resource};

use crate::shared::numbers;
use crate::shared::region::Region;
use crate::shared::{Object, SharedGrant};
use crate::wire::{DictReply, DictRequest, SharedFailure};

pub(crate) use reach::OverLink;
use reach::WorkerShared;

use super::store::ComponentState;

wasmtime::component::bindgen!({
    path: "wit/shared",
    world: "wasmpool:shared/shared",
    imports: { default: trappable },
    with: {
        "wasmpool:shared/lock.lock": LockRes,
        "wasmpool:shared/lock.guard": GuardRes,
        "wasmpool:shared/value.value": ValueRes,
        "wasmpool:shared/value.float-value": ValueRes,
        "wasmpool:shared/value.array": ArrayRes,
        "wasmpool:shared/value.float-array": ArrayRes,
        "wasmpool:shared/queue.queue": RingRes,
        "wasmpool:shared/pipe.connection": PipeRes,
        "wasi:keyvalue/store.bucket": BucketRes,
    },
});

use self::wasmpool::shared::types::Error as SharedErr;
use wasi::keyvalue::store::{Error as KvError, KeyResponse};

/// A lock a task opened.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct LockRes {
    object: Object,
}

/// A held lock: the object whose lock it is.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct GuardRes {
    object: Object,
    abandoned: bool,
}

/// A value (integer or float) a task opened.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct ValueRes {
    object: Object,
}

/// An array a task opened.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct ArrayRes {
    object: Object,
    len: u32,
}

/// A queue a task opened.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct RingRes {
    object: Object,
}

/// A pipe end a task opened.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct PipeRes {
    object: Object,
}

/// A dict a task opened: its index among the host's.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct BucketRes {
    id: u64,
}

static WORKER_SHARED: OnceLock<WorkerShared> = OnceLock::new();

/// The link to the host of a worker behind a launcher, made ready by its link thread for the
/// `Shared` frame that may follow.
static LINK: Mutex<Option<OverLink>> = Mutex::new(None);

/// Takes the region's descriptor and the shared-state socket the host sent just before its
/// `Shared` frame, and maps the region.
pub(crate) fn install(pool: u64) -> Result<(), String> {
    let mut fds = crate::shared_code::receive_descriptors(2, "shared state")?;
    let socket = File::from(fds.pop().expect("two"));
    let region_file = File::from(fds.pop().expect("two"));
    let region = Region::map(&region_file).map_err(|e| e.to_string())?;
    drop(region_file);
    let shared = WorkerShared::mapped(pool, region, socket).map_err(|e| e.to_string())?;
    WORKER_SHARED
        .set(shared)
        .map_err(|_| "the shared state came twice".to_string())
}

/// A worker behind a launcher: its link thread hands over the link its tasks' requests go
/// out on and their answers come back from.
pub(crate) fn link_ready(link: OverLink) {
    *LINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(link);
}

/// The host's `Shared` frame to a worker behind a launcher: every use of an object goes over
/// the link.
pub(crate) fn install_over_link(pool: u64) -> Result<(), String> {
    let link = LINK
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or("the host would serve shared state over a link this worker does not have")?;
    WORKER_SHARED
        .set(WorkerShared::over_link(pool, link))
        .map_err(|_| "the shared state came twice".to_string())
}

/// Adds the shared-state imports to a component linker.
pub(crate) fn add_to_linker(linker: &mut Linker<ComponentState>) -> wasmtime::Result<()> {
    Shared::add_to_linker::<_, HasSelf<ComponentState>>(linker, |state| state)
}

/// A call's view of shared state: what it was granted, its deadline, the locks it holds.
#[derive(Debug, Default)]
pub(crate) struct CallShared {
    grants: Vec<SharedGrant>,
    deadline: Option<Instant>,
    held: Vec<Object>,
}

impl CallShared {
    pub(crate) fn new(grants: &[SharedGrant]) -> CallShared {
        CallShared {
            grants: grants.to_vec(),
            deadline: None,
            held: Vec::new(),
        }
    }

    /// A call starts: its waits end at `timeout` from now.
    pub(crate) fn begin(&mut self, timeout: Option<Duration>) {
        self.deadline = timeout.map(|t| Instant::now() + t);
    }

    /// A call ended: the locks it still holds are released, as abandoned if it `failed`.
    pub(crate) fn end(&mut self, failed: bool) {
        if self.held.is_empty() {
            return;
        }
        if let Some(shared) = WORKER_SHARED.get() {
            for object in self.held.drain(..) {
                // Over a link that failed, the host releases it when it reaps the worker.
                let _ = shared.release(object, failed);
            }
        }
    }

    /// The object granted as `name`, if it is of the kind `kind` accepts.
    fn find<T>(&self, name: &str, kind: impl Fn(Object) -> Option<T>) -> Option<T> {
        let shared = WORKER_SHARED.get()?;
        self.grants
            .iter()
            .find(|g| g.name == name && g.pool == shared.pool)
            .and_then(|g| kind(g.object))
    }

    /// How long a wait of `timeout_ms` may go on: the shorter of it and the call's deadline.
    fn wait_ms(&self, timeout_ms: Option<u32>) -> Option<u32> {
        let left = self.deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now()).as_millis();
            u32::try_from(left).unwrap_or(u32::MAX)
        });
        match (timeout_ms, left) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the call's deadline has passed: a wait bounded by it, given in whole
    /// milliseconds ([`CallShared::wait_ms`]), may end up to a millisecond before it.
    fn past_deadline(&self) -> bool {
        self.deadline
            .is_some_and(|d| Instant::now() + Duration::from_millis(2) >= d)
    }
}

/// This worker's shared state, which a granted object implies was installed.
fn shared() -> wasmtime::Result<&'static WorkerShared> {
    WORKER_SHARED
        .get()
        .ok_or_else(|| wasmtime::Error::msg("this worker was given no shared state"))
}

/// The end of a call whose wait reached its deadline: what an epoch interruption gives.
fn timed_out() -> wasmtime::Error {
    wasmtime::Trap::Interrupt.into()
}

/// A wait's failure as the contract's error; a wait that ran into the deadline ends the call.
fn served_error(call: &CallShared, failure: SharedFailure) -> wasmtime::Result<SharedErr> {
    match failure {
        SharedFailure::Timeout if call.past_deadline() => Err(timed_out()),
        SharedFailure::Timeout => Ok(SharedErr::Timeout),
        SharedFailure::Closed => Ok(SharedErr::Closed),
        SharedFailure::Full => Ok(SharedErr::Full),
        SharedFailure::Gone => Err(wasmtime::Error::msg("the pool is closing")),
        SharedFailure::Other(detail) => Err(wasmtime::Error::msg(detail)),
    }
}

fn not_granted(name: &str) -> SharedErr {
    SharedErr::NotGranted(name.to_string())
}

impl ComponentState {
    /// Opens the object granted to the call as `name`, if `kind` makes a resource of it;
    /// `not-granted` otherwise, whatever the pool holds.
    fn open_granted<T: Send + 'static>(
        &mut self,
        name: &str,
        kind: impl Fn(Object) -> Option<T>,
    ) -> wasmtime::Result<Result<Resource<T>, SharedErr>> {
        match self.shared.find(name, kind) {
            Some(resource) => Ok(Ok(self.table.push(resource)?)),
            None => Ok(Err(not_granted(name))),
        }
    }

    /// Takes `object`'s lock for the call, waiting `timeout_ms` (and no longer than its
    /// deadline).
    fn acquire(
        &mut self,
        object: Object,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Resource<GuardRes>, SharedErr>> {
        let wait_ms = self.shared.wait_ms(timeout_ms);
        match shared()?.acquire(object, wait_ms)? {
            Ok(abandoned) => {
                self.shared.held.push(object);
                Ok(Ok(self.table.push(GuardRes { object, abandoned })?))
            }
            Err(_) if self.shared.past_deadline() => Err(timed_out()),
            Err(_) => Ok(Err(SharedErr::Timeout)),
        }
    }

    /// The array `a`, if `count` numbers from `start` fit in it; else the contract's
    /// `out-of-range` error, naming the first index past its end.
    fn array_at(
        &self,
        a: &Resource<ArrayRes>,
        start: u32,
        count: u64,
    ) -> wasmtime::Result<Result<Object, SharedErr>> {
        let &ArrayRes { object, len } = self.table.get(a)?;
        Ok(match numbers::out_of_range(start, count, len) {
            Some(index) => Err(SharedErr::OutOfRange(index)),
            None => Ok(object),
        })
    }

    /// How long a wait of `timeout_ms` may go on, cut to the call's deadline.
    fn wait_ms(&self, timeout_ms: Option<u32>) -> Option<u32> {
        self.shared.wait_ms(timeout_ms)
    }

    /// A wait's failure as the contract's error; a wait that ran into the deadline ends the
    /// call.
    fn waited<T>(
        &self,
        result: Result<T, SharedFailure>,
    ) -> wasmtime::Result<Result<T, SharedErr>> {
        match result {
            Ok(value) => Ok(Ok(value)),
            Err(failure) => Ok(Err(served_error(&self.shared, failure)?)),
        }
    }
}

impl self::wasmpool::shared::types::Host for ComponentState {}
impl self::wasmpool::shared::lock::Host for ComponentState {}

impl self::wasmpool::shared::lock::HostGuard for ComponentState {
    fn abandoned(&mut self, guard: Resource<GuardRes>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&guard)?.abandoned)
    }

    fn drop(&mut self, guard: Resource<GuardRes>) -> wasmtime::Result<()> {
        let guard = self.table.delete(guard)?;
        if let Some(i) = self.shared.held.iter().position(|&o| o == guard.object) {
            self.shared.held.swap_remove(i);
            shared()?.release(guard.object, false)?;
        }
        Ok(())
    }
}

impl self::wasmpool::shared::lock::HostLock for ComponentState {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<LockRes>, SharedErr>> {
        self.open_granted(&name, |object| match object {
            Object::Lock { .. } => Some(LockRes { object }),
            _ => None,
        })
    }

    fn acquire(
        &mut self,
        lock: Resource<LockRes>,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Resource<GuardRes>, SharedErr>> {
        let object = self.table.get(&lock)?.object;
        ComponentState::acquire(self, object, timeout_ms)
    }

    fn drop(&mut self, lock: Resource<LockRes>) -> wasmtime::Result<()> {
        self.table.delete(lock)?;
        Ok(())
    }
}

impl self::wasmpool::shared::value::Host for ComponentState {}

/// The integer and float values' methods, which differ only in how a number is a word (and
/// in the integer's compare-and-swap).
macro_rules! value_host {
    ($trait:ident, $kind:ident, $num:ty, { $($extra:tt)* }) => {
        impl self::wasmpool::shared::value::$trait for ComponentState {
            fn open(
                &mut self,
                name: String,
            ) -> wasmtime::Result<Result<Resource<ValueRes>, SharedErr>> {
                self.open_granted(&name, |object| match object {
                    Object::$kind { .. } => Some(ValueRes { object }),
                    _ => None,
                })
            }

            fn get(&mut self, v: Resource<ValueRes>) -> wasmtime::Result<$num> {
                let object = self.table.get(&v)?.object;
                let words = shared()?.read::<$num>(object, 0, 1)?;
                Ok(words[0])
            }

            fn set(&mut self, v: Resource<ValueRes>, new: $num) -> wasmtime::Result<()> {
                let object = self.table.get(&v)?.object;
                shared()?.write(object, 0, &[new])
            }

            fn add(&mut self, v: Resource<ValueRes>, delta: $num) -> wasmtime::Result<$num> {
                let object = self.table.get(&v)?.object;
                shared()?.add(object, 0, delta)
            }

            $($extra)*

            fn lock(
                &mut self,
                v: Resource<ValueRes>,
                timeout_ms: Option<u32>,
            ) -> wasmtime::Result<Result<Resource<GuardRes>, SharedErr>> {
                let object = self.table.get(&v)?.object;
                self.acquire(object, timeout_ms)
            }

            fn drop(&mut self, v: Resource<ValueRes>) -> wasmtime::Result<()> {
                self.table.delete(v)?;
                Ok(())
            }
        }
    };
}

value_host!(HostValue, Value, i64, {
    fn compare_and_swap(
        &mut self,
        v: Resource<ValueRes>,
        expected: i64,
        new: i64,
    ) -> wasmtime::Result<i64> {
        let object = self.table.get(&v)?.object;
        shared()?.compare_and_swap(object, expected, new)
    }
});
value_host!(HostFloatValue, FloatValue, f64, {});

/// The integer and float arrays' methods, which differ only in how a number is a word.
macro_rules! array_host {
    ($trait:ident, $kind:ident, $num:ty) => {
        impl self::wasmpool::shared::value::$trait for ComponentState {
            fn open(
                &mut self,
                name: String,
            ) -> wasmtime::Result<Result<Resource<ArrayRes>, SharedErr>> {
                self.open_granted(&name, |object| match object {
                    Object::$kind { len, .. } => Some(ArrayRes { object, len }),
                    _ => None,
                })
            }

            fn len(&mut self, a: Resource<ArrayRes>) -> wasmtime::Result<u32> {
                Ok(self.table.get(&a)?.len)
            }

            fn get(
                &mut self,
                a: Resource<ArrayRes>,
                index: u32,
            ) -> wasmtime::Result<Result<$num, SharedErr>> {
                let object = match self.array_at(&a, index, 1)? {
                    Ok(object) => object,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(Ok(shared()?.read::<$num>(object, index, 1)?[0]))
            }

            fn set(
                &mut self,
                a: Resource<ArrayRes>,
                index: u32,
                v: $num,
            ) -> wasmtime::Result<Result<(), SharedErr>> {
                let object = match self.array_at(&a, index, 1)? {
                    Ok(object) => object,
                    Err(e) => return Ok(Err(e)),
                };
                shared()?.write(object, index, &[v])?;
                Ok(Ok(()))
            }

            fn add(
                &mut self,
                a: Resource<ArrayRes>,
                index: u32,
                delta: $num,
            ) -> wasmtime::Result<Result<$num, SharedErr>> {
                let object = match self.array_at(&a, index, 1)? {
                    Ok(object) => object,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(Ok(shared()?.add(object, index, delta)?))
            }

            fn read(
                &mut self,
                a: Resource<ArrayRes>,
                start: u32,
                count: u32,
            ) -> wasmtime::Result<Result<Vec<$num>, SharedErr>> {
                let object = match self.array_at(&a, start, count.into())? {
                    Ok(object) => object,
                    Err(e) => return Ok(Err(e)),
                };
                Ok(Ok(shared()?.read(object, start, count)?))
            }

            fn write(
                &mut self,
                a: Resource<ArrayRes>,
                start: u32,
                values: Vec<$num>,
            ) -> wasmtime::Result<Result<(), SharedErr>> {
                let object = match self.array_at(&a, start, values.len() as u64)? {
                    Ok(object) => object,
                    Err(e) => return Ok(Err(e)),
                };
                shared()?.write(object, start, &values)?;
                Ok(Ok(()))
            }

            fn lock(
                &mut self,
                a: Resource<ArrayRes>,
                timeout_ms: Option<u32>,
            ) -> wasmtime::Result<Result<Resource<GuardRes>, SharedErr>> {
                let object = self.table.get(&a)?.object;
                self.acquire(object, timeout_ms)
            }

            fn drop(&mut self, a: Resource<ArrayRes>) -> wasmtime::Result<()> {
                self.table.delete(a)?;
                Ok(())
            }
        }
    };
}

array_host!(HostArray, Array, i64);
array_host!(HostFloatArray, FloatArray, f64);

impl self::wasmpool::shared::queue::Host for ComponentState {}

impl self::wasmpool::shared::queue::HostQueue for ComponentState {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<RingRes>, SharedErr>> {
        self.open_granted(&name, |object| match object {
            Object::Queue { .. } => Some(RingRes { object }),
            _ => None,
        })
    }

    fn put(
        &mut self,
        q: Resource<RingRes>,
        item: Vec<u8>,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<(), SharedErr>> {
        let object = self.table.get(&q)?.object;
        let put = shared()?.put(object, item, self.wait_ms(timeout_ms))?;
        self.waited(put)
    }

    fn get(
        &mut self,
        q: Resource<RingRes>,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Vec<u8>, SharedErr>> {
        let object = self.table.get(&q)?.object;
        let got = shared()?.get(object, self.wait_ms(timeout_ms))?;
        self.waited(got)
    }

    fn len(&mut self, q: Resource<RingRes>) -> wasmtime::Result<u32> {
        let object = self.table.get(&q)?.object;
        Ok(u32::try_from(shared()?.len(object)?).unwrap_or(u32::MAX))
    }

    fn close(&mut self, q: Resource<RingRes>) -> wasmtime::Result<()> {
        let object = self.table.get(&q)?.object;
        shared()?.close(object)
    }

    fn drop(&mut self, q: Resource<RingRes>) -> wasmtime::Result<()> {
        self.table.delete(q)?;
        Ok(())
    }
}

impl self::wasmpool::shared::pipe::Host for ComponentState {}

impl self::wasmpool::shared::pipe::HostConnection for ComponentState {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<PipeRes>, SharedErr>> {
        self.open_granted(&name, |object| match object {
            Object::PipeEnd { .. } => Some(PipeRes { object }),
            _ => None,
        })
    }

    fn send(
        &mut self,
        c: Resource<PipeRes>,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<(), SharedErr>> {
        let object = self.table.get(&c)?.object;
        let sent = shared()?.put(object, message, self.wait_ms(None))?;
        self.waited(sent)
    }

    fn recv(
        &mut self,
        c: Resource<PipeRes>,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Vec<u8>, SharedErr>> {
        let object = self.table.get(&c)?.object;
        let got = shared()?.get(object, self.wait_ms(timeout_ms))?;
        self.waited(got)
    }

    fn poll(&mut self, c: Resource<PipeRes>, timeout_ms: Option<u32>) -> wasmtime::Result<bool> {
        let object = self.table.get(&c)?.object;
        shared()?.poll(object, self.wait_ms(timeout_ms))
    }

    fn close(&mut self, c: Resource<PipeRes>) -> wasmtime::Result<()> {
        let object = self.table.get(&c)?.object;
        shared()?.close(object)
    }

    fn drop(&mut self, c: Resource<PipeRes>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

/// A dict request's answer as `wasi:keyvalue`'s result.
fn kv<T>(
    reply: DictReply,
    pick: impl FnOnce(DictReply) -> Option<T>,
) -> wasmtime::Result<Result<T, KvError>> {
    match reply {
        DictReply::Failed(failure) => Ok(Err(KvError::Other(format!("{failure:?}")))),
        reply => {
            let shown = format!("{reply:?}");
            pick(reply)
                .map(Ok)
                .ok_or_else(|| wasmtime::Error::msg(format!("the host answered {shown}")))
        }
    }
}

/// Asks the host for what `request` makes of bucket `b`'s dict.
fn ask(
    state: &ComponentState,
    b: &Resource<BucketRes>,
    request: impl FnOnce(u64) -> DictRequest,
) -> wasmtime::Result<DictReply> {
    let dict = state.table.get(b)?.id;
    shared()?.dict(Object::Dict { id: dict }, request(dict))
}

impl wasi::keyvalue::store::Host for ComponentState {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<BucketRes>, KvError>> {
        match self.shared.find(&identifier, |object| match object {
            Object::Dict { id } => Some(BucketRes { id }),
            _ => None,
        }) {
            Some(bucket) => Ok(Ok(self.table.push(bucket)?)),
            None => Ok(Err(KvError::AccessDenied)),
        }
    }
}

impl wasi::keyvalue::store::HostBucket for ComponentState {
    fn get(
        &mut self,
        b: Resource<BucketRes>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, KvError>> {
        let reply = ask(self, &b, |dict| DictRequest::Get { dict, key })?;
        kv(reply, |r| match r {
            DictReply::Maybe(v) => Some(v),
            _ => None,
        })
    }

    fn set(
        &mut self,
        b: Resource<BucketRes>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        let reply = ask(self, &b, |dict| DictRequest::Set { dict, key, value })?;
        kv(reply, |r| matches!(r, DictReply::Done).then_some(()))
    }

    fn delete(
        &mut self,
        b: Resource<BucketRes>,
        key: String,
    ) -> wasmtime::Result<Result<(), KvError>> {
        let reply = ask(self, &b, |dict| DictRequest::Delete { dict, key })?;
        kv(reply, |r| matches!(r, DictReply::Done).then_some(()))
    }

    fn exists(
        &mut self,
        b: Resource<BucketRes>,
        key: String,
    ) -> wasmtime::Result<Result<bool, KvError>> {
        let reply = ask(self, &b, |dict| DictRequest::Exists { dict, key })?;
        kv(reply, |r| match r {
            DictReply::Flag(f) => Some(f),
            _ => None,
        })
    }

    fn list_keys(
        &mut self,
        b: Resource<BucketRes>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<KeyResponse, KvError>> {
        let reply = ask(self, &b, |dict| DictRequest::Keys { dict, cursor })?;
        kv(reply, |r| match r {
            DictReply::Keys { keys, cursor } => Some(KeyResponse { keys, cursor }),
            _ => None,
        })
    }

    fn drop(&mut self, b: Resource<BucketRes>) -> wasmtime::Result<()> {
        self.table.delete(b)?;
        Ok(())
    }
}

impl wasi::keyvalue::atomics::Host for ComponentState {
    fn increment(
        &mut self,
        b: Resource<BucketRes>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, KvError>> {
        let reply = ask(self, &b, |dict| DictRequest::Increment { dict, key, delta })?;
        kv(reply, |r| match r {
            DictReply::Number(n) => Some(n),
            _ => None,
        })
    }
}

impl wasi::keyvalue::batch::Host for ComponentState {
    fn get_many(
        &mut self,
        b: Resource<BucketRes>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, KvError>> {
        let reply = ask(self, &b, |dict| DictRequest::GetMany { dict, keys })?;
        kv(reply, |r| match r {
            DictReply::Many(entries) => Some(entries),
            _ => None,
        })
    }

    fn set_many(
        &mut self,
        b: Resource<BucketRes>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        let reply = ask(self, &b, |dict| DictRequest::SetMany {
            dict,
            entries: key_values,
        })?;
        kv(reply, |r| matches!(r, DictReply::Done).then_some(()))
    }

    fn delete_many(
        &mut self,
        b: Resource<BucketRes>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        let reply = ask(self, &b, |dict| DictRequest::DeleteMany { dict, keys })?;
        kv(reply, |r| matches!(r, DictReply::Done).then_some(()))
    }
}
