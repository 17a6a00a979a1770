//! The worker's side of shared state: the `wasmpool:shared` and `wasi:keyvalue` imports a
//! task calls (see [`crate::shared`] for what each object is and where it lives).
//!
//! The pool's region and this worker's shared-state socket arrive once, right after the
//! handshake ([`install`]). Each call's store holds what its grants allow ([`CallShared`]):
//! `open(name)` finds the name among them or answers `not-granted`, whatever the pool holds.
//! Locks, values and arrays are operated on in the mapped region; queues, pipes and dicts go to
//! the host as one request each on the socket, answered before the call goes on.
//!
//! Every wait is bounded by the call's deadline, as epochs do not interrupt a host call: a
//! wait that reaches it ends the call as an epoch interruption would, a `Timeout`. When the
//! call ends, the locks it still holds are released ([`CallShared::end`]), marked abandoned if
//! the call failed.

use std::fs::File;
use std::io::{BufReader, Write};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, Resource};

use crate::shared::numbers::{self, Number};
use crate::shared::region::Region;
use crate::shared::ring::Ring;
use crate::shared::{Object, SharedGrant};
use crate::wire::{self, DictReply, DictRequest, SharedFailure};

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

/// A lock a task opened: where its words are.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct LockRes {
    at: u64,
}

/// A held lock.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct GuardRes {
    at: u64,
    abandoned: bool,
}

/// A value (integer or float) a task opened.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct ValueRes {
    at: u64,
}

/// An array a task opened.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct ArrayRes {
    at: u64,
    len: u32,
}

/// A queue a task opened: its ring.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct RingRes {
    at: u64,
    capacity: u64,
    max_items: u64,
}

/// A pipe end a task opened: the rings it receives from and sends into.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct PipeRes {
    inbox: u64,
    outbox: u64,
    capacity: u64,
}

/// A dict a task opened: its index among the host's.
#[derive(Debug)]
#[allow(unreachable_pub)] // bindgen's modules re-export it with `pub use`.
pub struct BucketRes {
    id: u64,
}

/// This worker's shared state, from the host's `Shared` frame.
struct WorkerShared {
    pool: u64,
    region: Region,
    link: Mutex<Link>,
    pid: u32,
}

/// The shared-state socket: one request, one reply, in turn.
/// Both halves are plain files over the socket: `read` and `write`, which the worker's seccomp
/// filter allows, where a socket's own `recvfrom` and `sendto` are refused.
struct Link {
    input: BufReader<crate::spin::SpinRead<File>>,
    output: File,
    buf: Vec<u8>,
    frame: Vec<u8>,
}

static WORKER_SHARED: OnceLock<WorkerShared> = OnceLock::new();

/// Takes the region's descriptor and the shared-state socket the host sent just before its
/// `Shared` frame, and maps the region.
pub(crate) fn install(pool: u64) -> Result<(), String> {
    let mut fds = crate::shared_code::receive_descriptors(2, "shared state")?;
    let socket = File::from(fds.pop().expect("two"));
    let region_file = File::from(fds.pop().expect("two"));
    let region = Region::map(&region_file).map_err(|e| e.to_string())?;
    drop(region_file);
    let output = socket.try_clone().map_err(|e| e.to_string())?;
    let shared = WorkerShared {
        pool,
        region,
        link: Mutex::new(Link {
            input: BufReader::new(crate::spin::SpinRead(socket)),
            output,
            buf: Vec::new(),
            frame: Vec::new(),
        }),
        pid: std::process::id(),
    };
    WORKER_SHARED
        .set(shared)
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
    held: Vec<u64>,
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
            for at in self.held.drain(..) {
                shared.region.release(at, shared.pid, failed);
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

/// The region, which a granted object implies was installed.
fn shared() -> wasmtime::Result<&'static WorkerShared> {
    WORKER_SHARED.get().ok_or_else(|| {
        wasmtime::Error::msg("this worker has no shared state (it runs behind a launcher)")
    })
}

/// Sends `request` to the host and waits for its answer.
fn ask(request: &DictRequest) -> wasmtime::Result<DictReply> {
    let shared = shared()?;
    let mut link = shared.link.lock().unwrap_or_else(|e| e.into_inner());
    let link = &mut *link;
    wire::encode_frame(request, &mut link.frame)?;
    link.output.write_all(&link.frame)?;
    match wire::read_frame::<DictReply>(&mut link.input, &mut link.buf)? {
        Some(reply) => Ok(reply),
        None => Err(wasmtime::Error::msg(
            "the host closed the shared-state socket",
        )),
    }
}

/// The end of a call whose wait reached its deadline: what an epoch interruption gives.
fn timed_out() -> wasmtime::Error {
    wasmtime::Trap::Interrupt.into()
}

/// A served object's failure as the contract's error; a wait that ran into the deadline ends
/// the call.
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

    fn acquire(
        &mut self,
        at: u64,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Resource<GuardRes>, SharedErr>> {
        let shared = shared()?;
        let call = &self.shared;
        let deadline = call
            .wait_ms(timeout_ms)
            .map(|ms| Instant::now() + Duration::from_millis(ms.into()));
        match shared.region.acquire(at, shared.pid, deadline) {
            Ok(abandoned) => {
                self.shared.held.push(at);
                Ok(Ok(self.table.push(GuardRes { at, abandoned })?))
            }
            Err(_) if self.shared.past_deadline() => Err(timed_out()),
            Err(_) => Ok(Err(SharedErr::Timeout)),
        }
    }

    fn value_word(
        &self,
        at: u64,
        index: u32,
    ) -> wasmtime::Result<&'static std::sync::atomic::AtomicU64> {
        numbers::element(&shared()?.region, at, index)
            .ok_or_else(|| wasmtime::Error::msg("a shared object outside the region"))
    }

    /// Where an array is, if `count` numbers from `start` fit in it; else the contract's
    /// `out-of-range` error, naming the first index past its end.
    fn array_at(
        &self,
        a: &Resource<ArrayRes>,
        start: u32,
        count: u64,
    ) -> wasmtime::Result<Result<u64, SharedErr>> {
        let &ArrayRes { at, len } = self.table.get(a)?;
        Ok(match numbers::out_of_range(start, count, len) {
            Some(index) => Err(SharedErr::OutOfRange(index)),
            None => Ok(at),
        })
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
        if let Some(i) = self.shared.held.iter().position(|&at| at == guard.at) {
            self.shared.held.swap_remove(i);
            let shared = shared()?;
            shared.region.release(guard.at, shared.pid, false);
        }
        Ok(())
    }
}

impl self::wasmpool::shared::lock::HostLock for ComponentState {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<LockRes>, SharedErr>> {
        self.open_granted(&name, |o| match o {
            Object::Lock { at } => Some(LockRes { at }),
            _ => None,
        })
    }

    fn acquire(
        &mut self,
        lock: Resource<LockRes>,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Resource<GuardRes>, SharedErr>> {
        let at = self.table.get(&lock)?.at;
        ComponentState::acquire(self, at, timeout_ms)
    }

    fn drop(&mut self, lock: Resource<LockRes>) -> wasmtime::Result<()> {
        self.table.delete(lock)?;
        Ok(())
    }
}

impl self::wasmpool::shared::value::Host for ComponentState {}

impl self::wasmpool::shared::value::HostValue for ComponentState {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<ValueRes>, SharedErr>> {
        self.open_granted(&name, |o| match o {
            Object::Value { at } => Some(ValueRes { at }),
            _ => None,
        })
    }

    fn get(&mut self, v: Resource<ValueRes>) -> wasmtime::Result<i64> {
        let at = self.table.get(&v)?.at;
        Ok(i64::load(self.value_word(at, 0)?))
    }

    fn set(&mut self, v: Resource<ValueRes>, new: i64) -> wasmtime::Result<()> {
        let at = self.table.get(&v)?.at;
        new.store(self.value_word(at, 0)?);
        Ok(())
    }

    fn add(&mut self, v: Resource<ValueRes>, delta: i64) -> wasmtime::Result<i64> {
        let at = self.table.get(&v)?.at;
        Ok(i64::add(self.value_word(at, 0)?, delta))
    }

    fn compare_and_swap(
        &mut self,
        v: Resource<ValueRes>,
        expected: i64,
        new: i64,
    ) -> wasmtime::Result<i64> {
        let at = self.table.get(&v)?.at;
        Ok(numbers::compare_and_swap(
            self.value_word(at, 0)?,
            expected,
            new,
        ))
    }

    fn lock(
        &mut self,
        v: Resource<ValueRes>,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Resource<GuardRes>, SharedErr>> {
        let at = self.table.get(&v)?.at;
        self.acquire(at, timeout_ms)
    }

    fn drop(&mut self, v: Resource<ValueRes>) -> wasmtime::Result<()> {
        self.table.delete(v)?;
        Ok(())
    }
}

impl self::wasmpool::shared::value::HostFloatValue for ComponentState {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<ValueRes>, SharedErr>> {
        self.open_granted(&name, |o| match o {
            Object::FloatValue { at } => Some(ValueRes { at }),
            _ => None,
        })
    }

    fn get(&mut self, v: Resource<ValueRes>) -> wasmtime::Result<f64> {
        let at = self.table.get(&v)?.at;
        Ok(f64::load(self.value_word(at, 0)?))
    }

    fn set(&mut self, v: Resource<ValueRes>, new: f64) -> wasmtime::Result<()> {
        let at = self.table.get(&v)?.at;
        new.store(self.value_word(at, 0)?);
        Ok(())
    }

    fn add(&mut self, v: Resource<ValueRes>, delta: f64) -> wasmtime::Result<f64> {
        let at = self.table.get(&v)?.at;
        Ok(f64::add(self.value_word(at, 0)?, delta))
    }

    fn lock(
        &mut self,
        v: Resource<ValueRes>,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Resource<GuardRes>, SharedErr>> {
        let at = self.table.get(&v)?.at;
        self.acquire(at, timeout_ms)
    }

    fn drop(&mut self, v: Resource<ValueRes>) -> wasmtime::Result<()> {
        self.table.delete(v)?;
        Ok(())
    }
}

/// The integer and float arrays' methods, which differ only in how a number is a word.
macro_rules! array_host {
    ($trait:ident, $kind:ident, $num:ty) => {
        impl self::wasmpool::shared::value::$trait for ComponentState {
            fn open(
                &mut self,
                name: String,
            ) -> wasmtime::Result<Result<Resource<ArrayRes>, SharedErr>> {
                self.open_granted(&name, |o| match o {
                    Object::$kind { at, len } => Some(ArrayRes { at, len }),
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
                let at = match self.array_at(&a, index, 1)? {
                    Ok(at) => at,
                    Err(e) => return Ok(Err(e)),
                };
                let word = self.value_word(at, index)?;
                Ok(Ok(<$num>::load(word)))
            }

            fn set(
                &mut self,
                a: Resource<ArrayRes>,
                index: u32,
                v: $num,
            ) -> wasmtime::Result<Result<(), SharedErr>> {
                let at = match self.array_at(&a, index, 1)? {
                    Ok(at) => at,
                    Err(e) => return Ok(Err(e)),
                };
                let word = self.value_word(at, index)?;
                v.store(word);
                Ok(Ok(()))
            }

            fn add(
                &mut self,
                a: Resource<ArrayRes>,
                index: u32,
                delta: $num,
            ) -> wasmtime::Result<Result<$num, SharedErr>> {
                let at = match self.array_at(&a, index, 1)? {
                    Ok(at) => at,
                    Err(e) => return Ok(Err(e)),
                };
                let word = self.value_word(at, index)?;
                Ok(Ok(<$num>::add(word, delta)))
            }

            fn read(
                &mut self,
                a: Resource<ArrayRes>,
                start: u32,
                count: u32,
            ) -> wasmtime::Result<Result<Vec<$num>, SharedErr>> {
                let at = match self.array_at(&a, start, count.into())? {
                    Ok(at) => at,
                    Err(e) => return Ok(Err(e)),
                };
                let mut out = Vec::with_capacity(count as usize);
                for i in start..start + count {
                    out.push(<$num>::load(self.value_word(at, i)?));
                }
                Ok(Ok(out))
            }

            fn write(
                &mut self,
                a: Resource<ArrayRes>,
                start: u32,
                values: Vec<$num>,
            ) -> wasmtime::Result<Result<(), SharedErr>> {
                let at = match self.array_at(&a, start, values.len() as u64)? {
                    Ok(at) => at,
                    Err(e) => return Ok(Err(e)),
                };
                for (i, v) in values.into_iter().enumerate() {
                    v.store(self.value_word(at, start + i as u32)?);
                }
                Ok(Ok(()))
            }

            fn lock(
                &mut self,
                a: Resource<ArrayRes>,
                timeout_ms: Option<u32>,
            ) -> wasmtime::Result<Result<Resource<GuardRes>, SharedErr>> {
                let at = self.table.get(&a)?.at;
                self.acquire(at, timeout_ms)
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

impl ComponentState {
    /// The ring at `at`, which a grant placed inside the region.
    fn ring(&self, at: u64, capacity: u64, max_items: u64) -> wasmtime::Result<Ring<'static>> {
        Ring::new(&shared()?.region, at, capacity, max_items)
            .ok_or_else(|| wasmtime::Error::msg("a shared queue outside the region"))
    }

    /// How long a wait of `timeout_ms` may go on, as a deadline.
    fn deadline(&self, timeout_ms: Option<u32>) -> Option<Instant> {
        self.shared
            .wait_ms(timeout_ms)
            .map(|ms| Instant::now() + Duration::from_millis(ms.into()))
    }

    /// A ring's failure as the contract's error; a wait that ran into the deadline ends the
    /// call.
    fn ring_result<T>(
        &self,
        result: Result<T, SharedFailure>,
    ) -> wasmtime::Result<Result<T, SharedErr>> {
        match result {
            Ok(value) => Ok(Ok(value)),
            Err(failure) => Ok(Err(served_error(&self.shared, failure)?)),
        }
    }

    fn queue_ring(&self, q: &Resource<RingRes>) -> wasmtime::Result<Ring<'static>> {
        let &RingRes {
            at,
            capacity,
            max_items,
        } = self.table.get(q)?;
        self.ring(at, capacity, max_items)
    }

    /// A pipe end's inbox, or (`outbox`) the ring it sends into.
    fn pipe_ring(&self, c: &Resource<PipeRes>, outbox: bool) -> wasmtime::Result<Ring<'static>> {
        let &PipeRes {
            inbox,
            outbox: out,
            capacity,
        } = self.table.get(c)?;
        self.ring(if outbox { out } else { inbox }, capacity, 0)
    }

    fn dict_id(&self, b: &Resource<BucketRes>) -> wasmtime::Result<u64> {
        Ok(self.table.get(b)?.id)
    }
}

/// A worker's waits are wanted until they end: the host kills a worker whose pool ends.
fn always() -> bool {
    true
}

impl self::wasmpool::shared::queue::Host for ComponentState {}

impl self::wasmpool::shared::queue::HostQueue for ComponentState {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<RingRes>, SharedErr>> {
        self.open_granted(&name, |o| match o {
            Object::Queue {
                at,
                capacity,
                max_items,
            } => Some(RingRes {
                at,
                capacity,
                max_items,
            }),
            _ => None,
        })
    }

    fn put(
        &mut self,
        q: Resource<RingRes>,
        item: Vec<u8>,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<(), SharedErr>> {
        let ring = self.queue_ring(&q)?;
        let put = ring.put(shared()?.pid, &item, self.deadline(timeout_ms), &always);
        self.ring_result(put)
    }

    fn get(
        &mut self,
        q: Resource<RingRes>,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Vec<u8>, SharedErr>> {
        let ring = self.queue_ring(&q)?;
        let got = ring.get(shared()?.pid, self.deadline(timeout_ms), &always);
        self.ring_result(got)
    }

    fn len(&mut self, q: Resource<RingRes>) -> wasmtime::Result<u32> {
        Ok(u32::try_from(self.queue_ring(&q)?.len()).unwrap_or(u32::MAX))
    }

    fn close(&mut self, q: Resource<RingRes>) -> wasmtime::Result<()> {
        self.queue_ring(&q)?.close();
        Ok(())
    }

    fn drop(&mut self, q: Resource<RingRes>) -> wasmtime::Result<()> {
        self.table.delete(q)?;
        Ok(())
    }
}

impl self::wasmpool::shared::pipe::Host for ComponentState {}

impl self::wasmpool::shared::pipe::HostConnection for ComponentState {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<PipeRes>, SharedErr>> {
        self.open_granted(&name, |o| match o {
            Object::PipeEnd {
                inbox,
                outbox,
                capacity,
            } => Some(PipeRes {
                inbox,
                outbox,
                capacity,
            }),
            _ => None,
        })
    }

    fn send(
        &mut self,
        c: Resource<PipeRes>,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<(), SharedErr>> {
        let ring = self.pipe_ring(&c, true)?;
        let sent = ring.put(shared()?.pid, &message, self.deadline(None), &always);
        self.ring_result(sent)
    }

    fn recv(
        &mut self,
        c: Resource<PipeRes>,
        timeout_ms: Option<u32>,
    ) -> wasmtime::Result<Result<Vec<u8>, SharedErr>> {
        let ring = self.pipe_ring(&c, false)?;
        let got = ring.get(shared()?.pid, self.deadline(timeout_ms), &always);
        self.ring_result(got)
    }

    fn poll(&mut self, c: Resource<PipeRes>, timeout_ms: Option<u32>) -> wasmtime::Result<bool> {
        let ring = self.pipe_ring(&c, false)?;
        ring.poll(self.deadline(timeout_ms), &always)
            .map_err(|failure| wasmtime::Error::msg(format!("{failure:?}")))
    }

    fn close(&mut self, c: Resource<PipeRes>) -> wasmtime::Result<()> {
        self.pipe_ring(&c, true)?.close();
        Ok(())
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

impl wasi::keyvalue::store::Host for ComponentState {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<BucketRes>, KvError>> {
        match self.shared.find(&identifier, |o| match o {
            Object::Dict { id } => Some(id),
            _ => None,
        }) {
            Some(id) => Ok(Ok(self.table.push(BucketRes { id })?)),
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
        let dict = self.dict_id(&b)?;
        kv(ask(&DictRequest::Get { dict, key })?, |r| match r {
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
        let dict = self.dict_id(&b)?;
        kv(ask(&DictRequest::Set { dict, key, value })?, |r| {
            matches!(r, DictReply::Done).then_some(())
        })
    }

    fn delete(
        &mut self,
        b: Resource<BucketRes>,
        key: String,
    ) -> wasmtime::Result<Result<(), KvError>> {
        let dict = self.dict_id(&b)?;
        kv(ask(&DictRequest::Delete { dict, key })?, |r| {
            matches!(r, DictReply::Done).then_some(())
        })
    }

    fn exists(
        &mut self,
        b: Resource<BucketRes>,
        key: String,
    ) -> wasmtime::Result<Result<bool, KvError>> {
        let dict = self.dict_id(&b)?;
        kv(ask(&DictRequest::Exists { dict, key })?, |r| match r {
            DictReply::Flag(f) => Some(f),
            _ => None,
        })
    }

    fn list_keys(
        &mut self,
        b: Resource<BucketRes>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<KeyResponse, KvError>> {
        let dict = self.dict_id(&b)?;
        kv(ask(&DictRequest::Keys { dict, cursor })?, |r| match r {
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
        let dict = self.dict_id(&b)?;
        kv(
            ask(&DictRequest::Increment { dict, key, delta })?,
            |r| match r {
                DictReply::Number(n) => Some(n),
                _ => None,
            },
        )
    }
}

impl wasi::keyvalue::batch::Host for ComponentState {
    fn get_many(
        &mut self,
        b: Resource<BucketRes>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, KvError>> {
        let dict = self.dict_id(&b)?;
        kv(ask(&DictRequest::GetMany { dict, keys })?, |r| match r {
            DictReply::Many(entries) => Some(entries),
            _ => None,
        })
    }

    fn set_many(
        &mut self,
        b: Resource<BucketRes>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        let dict = self.dict_id(&b)?;
        kv(
            ask(&DictRequest::SetMany {
                dict,
                entries: key_values,
            })?,
            |r| matches!(r, DictReply::Done).then_some(()),
        )
    }

    fn delete_many(
        &mut self,
        b: Resource<BucketRes>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        let dict = self.dict_id(&b)?;
        kv(ask(&DictRequest::DeleteMany { dict, keys })?, |r| {
            matches!(r, DictReply::Done).then_some(())
        })
    }
}
