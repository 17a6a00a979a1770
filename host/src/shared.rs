//! State shared between tasks: Python's `Value`, `Array`, `Lock`, `Queue`, `Pipe` and
//! `Manager().dict()`, across worker processes, reachable by a task only under a name granted
//! to it.
//!
//! A pool makes its objects by name ([`crate::Pool::value`], [`crate::Pool::lock`],
//! [`crate::Pool::queue`], ...); the handles it returns are the host's own way in
//! (`counter.get()`, `queue.put(&item)`), and they are what a task is granted
//! ([`crate::Grants::shared`], [`crate::Grants::shared_as`]). A task reaches them through the
//! WIT interfaces of `wasmpool:shared` (`wit/deps/wasmpool-shared/`) and `wasi:keyvalue` for the
//! dicts; a name that was not granted to its call is `not-granted` (`access-denied` for a
//! dict), whether or not the pool has an object of that name.
//!
//! Where each kind lives, and what an operation costs:
//! - Locks, values and arrays are in the pool's shared-memory region (`shared/region.rs`), mapped by
//!   the host and every local worker: an operation is an atomic instruction (a lock, a
//!   compare-and-swap; a contended lock sleeps on a futex), with no message.
//! - Queues and pipes are rings in the same region (`shared/ring.rs`): a put or a get copies the item
//!   in or out under the ring's lock, and a waiter spins on the ring's change counter, then
//!   sleeps on it as a futex.
//! - Dicts are the host's (`shared/served.rs`): an operation is one request over the worker's
//!   shared-state socket, answered by the host's thread for that worker.
//! - A worker behind a launcher (ssh, srun, kubectl) maps nothing: each of its operations, on
//!   any kind, is one request over its link, run on the region by the host
//!   (`shared/remote.rs`): a round trip of the link each, slower than shared memory by as
//!   much.
//!
//! Failures: a lock held by a task that fails (a trap, a timeout, fuel) is released by its
//! worker when the call ends; one held by a worker that dies is released by the host when it
//! reaps the worker. Either way the next holder's guard says `abandoned`. A queue item goes to
//! one `get` at the most, also when the getter's worker is killed mid-answer.
//!
//! Threat model: the objects of a pool are shared by all its tasks; a task that escaped
//! wasmtime could reach every object of its pool (its worker maps the whole region). Tenants
//! that must not touch each other's state need separate pools.

pub(crate) mod numbers;
pub(crate) mod region;
pub(crate) mod remote;
pub(crate) mod ring;
pub(crate) mod served;

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::wire::SharedFailure;
use numbers::Number;
use region::{LOCK_BYTES, REGION_BYTES, Region};
use ring::{RING_HEADER, Ring};
use served::Dict;

/// What went wrong with an operation on a shared object, from the host's side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SharedError {
    /// The wait ran out.
    #[error("the wait ran out")]
    Timeout,
    /// The queue or pipe is closed and holds nothing more.
    #[error("closed, and nothing more is left in it")]
    Closed,
    /// A bounded queue had no room.
    #[error("the queue is full")]
    Full,
    /// An index past the end of an array.
    #[error("index {index} is past the end of an array of {len}")]
    OutOfRange {
        /// The index asked for.
        index: u32,
        /// The array's length.
        len: u32,
    },
    /// An item that is not the JSON of the type asked for, or a value that cannot be JSON.
    #[error("not the JSON of the type asked for: {0}")]
    Json(String),
    /// The pool is closed.
    #[error("the pool is closed")]
    PoolClosed,
}

impl From<SharedFailure> for SharedError {
    fn from(failure: SharedFailure) -> Self {
        match failure {
            SharedFailure::Timeout => SharedError::Timeout,
            SharedFailure::Closed => SharedError::Closed,
            SharedFailure::Full => SharedError::Full,
            SharedFailure::Gone => SharedError::PoolClosed,
            SharedFailure::Other(detail) => SharedError::Json(detail),
        }
    }
}

/// Where a granted object is: what a grant carries to the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Object {
    Lock {
        at: u64,
    },
    Value {
        at: u64,
    },
    FloatValue {
        at: u64,
    },
    Array {
        at: u64,
        len: u32,
    },
    FloatArray {
        at: u64,
        len: u32,
    },
    /// A ring of `capacity` bytes holding `max_items` at most (0: as many as fit).
    Queue {
        at: u64,
        capacity: u64,
        max_items: u64,
    },
    /// One end of a pipe: the ring of what comes to it, and the ring of what it sends.
    PipeEnd {
        inbox: u64,
        outbox: u64,
        capacity: u64,
    },
    Dict {
        id: u64,
    },
}

impl Object {
    /// A pipe end's other end: the same two rings, turned round.
    pub(crate) fn other_end(&self) -> Option<Object> {
        match *self {
            Object::PipeEnd {
                inbox,
                outbox,
                capacity,
            } => Some(Object::PipeEnd {
                inbox: outbox,
                outbox: inbox,
                capacity,
            }),
            _ => None,
        }
    }

    /// The lock at the head of a region object.
    pub(crate) fn lock_at(&self) -> Option<u64> {
        match *self {
            Object::Lock { at }
            | Object::Value { at }
            | Object::FloatValue { at }
            | Object::Array { at, .. }
            | Object::FloatArray { at, .. }
            | Object::Queue { at, .. }
            | Object::PipeEnd { inbox: at, .. } => Some(at),
            Object::Dict { .. } => None,
        }
    }
}

/// One shared object granted to a call, under the name the task opens it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SharedGrant {
    pub(crate) name: String,
    /// The pool the object belongs to: a worker refuses another pool's.
    pub(crate) pool: u64,
    pub(crate) object: Object,
}

/// A shared object as [`crate::Grants::shared`] takes it: every handle of this module is one.
pub trait Shareable {
    /// The object's own name (a pipe's ends: `NAME.a` and `NAME.b`).
    fn name(&self) -> &str;
    /// What a grant of it carries.
    #[doc(hidden)]
    fn grant_as(&self, name: &str) -> GrantOf;
}

/// What [`Shareable::grant_as`] gives: the grant of one object, opaque to callers.
#[derive(Debug, Clone)]
pub struct GrantOf(pub(crate) SharedGrant);

/// A pool's shared objects: its region, the host-served objects, and the names in use.
#[derive(Debug)]
pub(crate) struct SharedObjects {
    id: u64,
    region: Region,
    region_file: File,
    directory: Mutex<Directory>,
    dicts: RwLock<Vec<Arc<Dict>>>,
    closing: AtomicBool,
}

#[derive(Debug, Default)]
struct Directory {
    /// The next free offset in the region.
    next: u64,
    names: HashMap<String, Object>,
    /// Every lock in the region (each object's own too): what a dead worker may have held.
    locks: Vec<u64>,
}

impl SharedObjects {
    pub(crate) fn new() -> Result<Arc<SharedObjects>, Error> {
        let (region, region_file) = Region::create()
            .map_err(|e| Error::Shared(format!("cannot make the shared-memory region: {e}")))?;
        let mut id = [0u8; 8];
        // SAFETY: getrandom into a buffer of 8 bytes we own.
        unsafe { libc::getrandom(id.as_mut_ptr().cast(), id.len(), 0) };
        Ok(Arc::new(SharedObjects {
            id: u64::from_ne_bytes(id),
            region,
            region_file,
            directory: Mutex::default(),
            dicts: RwLock::default(),
            closing: AtomicBool::new(false),
        }))
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The region's descriptor, which each worker maps.
    pub(crate) fn region_file(&self) -> &File {
        &self.region_file
    }

    /// The pool is closing: waits on its objects end.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn directory(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.directory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims `name` for a new object made by `make`, which gets a region slot of `bytes`
    /// (its lock and numbers) when it is a region object.
    fn add(
        &self,
        name: &str,
        bytes: Option<u64>,
        make: impl FnOnce(Option<u64>) -> Object,
    ) -> Result<Object, Error> {
        if name.is_empty() {
            return Err(Error::Shared("a shared object needs a name".into()));
        }
        let mut directory = self.directory();
        if directory.names.contains_key(name) {
            return Err(Error::Shared(format!(
                "this pool already has a shared object named `{name}`"
            )));
        }
        let at = match bytes {
            Some(bytes) => {
                let at = directory.next;
                let end = at
                    .checked_add(bytes.next_multiple_of(16))
                    .filter(|&end| end <= REGION_BYTES)
                    .ok_or_else(|| {
                        Error::Shared(format!(
                            "no room for `{name}` ({bytes} bytes): a pool's shared memory holds \
                             {} MiB in all",
                            REGION_BYTES >> 20
                        ))
                    })?;
                directory.next = end;
                Some(at)
            }
            None => None,
        };
        let object = make(at);
        directory.locks.extend(object.lock_at());
        if let Object::PipeEnd { outbox, .. } = object {
            directory.locks.push(outbox);
        }
        directory.names.insert(name.to_string(), object);
        Ok(object)
    }

    /// Whether `object` is one of this pool's, exactly as made (a pipe's second end is its
    /// first turned round): what a remote worker's request must name (see [`remote`]).
    pub(crate) fn holds(&self, object: &Object) -> bool {
        let other_end = object.other_end();
        self.directory()
            .names
            .values()
            .any(|o| o == object || Some(*o) == other_end)
    }

    /// Claims `name` for a pipe whose two directions hold `capacity` bytes each; its ends.
    fn add_pipe(&self, name: &str, capacity: u64) -> Result<(Object, Object), Error> {
        let ring = RING_HEADER + capacity;
        let a = self.add(name, Some(2 * ring), |at| {
            let at = at.expect("a region object");
            Object::PipeEnd {
                inbox: at,
                outbox: at + ring,
                capacity,
            }
        })?;
        let b = a.other_end().expect("made as a pipe end");
        Ok((a, b))
    }

    pub(crate) fn dict(&self, id: u64) -> Result<Arc<Dict>, SharedFailure> {
        find(&self.dicts, id, "dict")
    }

    /// Releases, as abandoned, the locks a dead worker held. Returns how many.
    pub(crate) fn release_locks_of(&self, pid: u32) -> usize {
        let locks = self.directory().locks.clone();
        self.region.release_all_of(pid, locks)
    }
}

fn find<T>(list: &RwLock<Vec<Arc<T>>>, id: u64, kind: &str) -> Result<Arc<T>, SharedFailure> {
    let list = list.read().unwrap_or_else(|e| e.into_inner());
    usize::try_from(id)
        .ok()
        .and_then(|i| list.get(i))
        .cloned()
        .ok_or_else(|| SharedFailure::Other(format!("no {kind} {id}")))
}

fn push<T>(list: &RwLock<Vec<Arc<T>>>, item: T) -> u64 {
    let mut list = list.write().unwrap_or_else(|e| e.into_inner());
    list.push(Arc::new(item));
    (list.len() - 1) as u64
}

/// The bytes of a queue's ring: items wait there until a get takes them.
const QUEUE_BYTES: u64 = 4 << 20;

/// The bytes of each direction of a pipe.
const PIPE_BYTES: u64 = 1 << 20;

fn host_pid() -> u32 {
    std::process::id()
}

/// The deadline of a wait of `timeout`.
fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

/// The deadline of a wait of `wait_ms` milliseconds from now, as a task's request gives it.
pub(crate) fn deadline_in_ms(wait_ms: Option<u32>) -> Option<Instant> {
    deadline(wait_ms.map(|ms| Duration::from_millis(ms.into())))
}

// ---------------------------------------------------------------------------------------------
// The pool's makers.

impl crate::Pool {
    fn objects(&self) -> &Arc<SharedObjects> {
        self.shared_objects()
    }

    /// A shared 64-bit integer named `name`, starting at `initial` (Python's
    /// `Value('q', initial)`).
    pub fn value(&self, name: &str, initial: i64) -> Result<SharedValue, Error> {
        let object = self
            .objects()
            .add(name, Some(LOCK_BYTES + 8), |at| Object::Value {
                at: at.expect("a region object"),
            })?;
        let value = SharedValue(Handle::new(self.objects(), name, object));
        value.set(initial);
        Ok(value)
    }

    /// A shared 64-bit float named `name` (Python's `Value('d', initial)`).
    pub fn float_value(&self, name: &str, initial: f64) -> Result<SharedFloatValue, Error> {
        let object = self
            .objects()
            .add(name, Some(LOCK_BYTES + 8), |at| Object::FloatValue {
                at: at.expect("a region object"),
            })?;
        let value = SharedFloatValue(Handle::new(self.objects(), name, object));
        value.set(initial);
        Ok(value)
    }

    /// A shared array of `len` 64-bit integers, all 0 (Python's `Array('q', len)`).
    pub fn array(&self, name: &str, len: u32) -> Result<SharedArray, Error> {
        let object = self
            .objects()
            .add(name, Some(LOCK_BYTES + 8 * u64::from(len)), |at| {
                Object::Array {
                    at: at.expect("a region object"),
                    len,
                }
            })?;
        Ok(SharedArray(Handle::new(self.objects(), name, object)))
    }

    /// A shared array holding `values` (Python's `Array('q', values)`).
    pub fn array_from(&self, name: &str, values: &[i64]) -> Result<SharedArray, Error> {
        let len = u32::try_from(values.len()).map_err(|_| {
            Error::Shared(format!("`{name}`: an array holds 2^32 - 1 numbers at most"))
        })?;
        let array = self.array(name, len)?;
        array.write(0, values).expect("in range");
        Ok(array)
    }

    /// A shared array of `len` 64-bit floats, all 0.0 (Python's `Array('d', len)`).
    pub fn float_array(&self, name: &str, len: u32) -> Result<SharedFloatArray, Error> {
        let object = self
            .objects()
            .add(name, Some(LOCK_BYTES + 8 * u64::from(len)), |at| {
                Object::FloatArray {
                    at: at.expect("a region object"),
                    len,
                }
            })?;
        Ok(SharedFloatArray(Handle::new(self.objects(), name, object)))
    }

    /// A shared float array holding `values`.
    pub fn float_array_from(&self, name: &str, values: &[f64]) -> Result<SharedFloatArray, Error> {
        let len = u32::try_from(values.len()).map_err(|_| {
            Error::Shared(format!("`{name}`: an array holds 2^32 - 1 numbers at most"))
        })?;
        let array = self.float_array(name, len)?;
        array.write(0, values).expect("in range");
        Ok(array)
    }

    /// A lock shared by every worker of the pool (Python's `Lock()`).
    pub fn lock(&self, name: &str) -> Result<SharedLock, Error> {
        let object = self
            .objects()
            .add(name, Some(LOCK_BYTES), |at| Object::Lock {
                at: at.expect("a region object"),
            })?;
        Ok(SharedLock(Handle::new(self.objects(), name, object)))
    }

    /// An unbounded first-in first-out queue (Python's `Queue()`).
    pub fn queue(&self, name: &str) -> Result<SharedQueue, Error> {
        self.make_queue(name, None)
    }

    /// A queue that holds `capacity` items at most (Python's `Queue(maxsize)`): a put waits
    /// for room.
    pub fn queue_bounded(&self, name: &str, capacity: usize) -> Result<SharedQueue, Error> {
        if capacity == 0 {
            return Err(Error::Shared(format!(
                "`{name}`: a queue's capacity is at least 1"
            )));
        }
        self.make_queue(name, Some(capacity))
    }

    fn make_queue(&self, name: &str, max_items: Option<usize>) -> Result<SharedQueue, Error> {
        let objects = self.objects();
        let object = objects.add(name, Some(RING_HEADER + QUEUE_BYTES), |at| Object::Queue {
            at: at.expect("a region object"),
            capacity: QUEUE_BYTES,
            max_items: max_items.map_or(0, |n| n as u64),
        })?;
        Ok(SharedQueue(Handle::new(objects, name, object)))
    }

    /// A two-ended channel (Python's `Pipe()`): its ends, granted by default as `NAME.a` and
    /// `NAME.b`.
    pub fn pipe(&self, name: &str) -> Result<(PipeEnd, PipeEnd), Error> {
        let objects = self.objects();
        let (a, b) = objects.add_pipe(name, PIPE_BYTES)?;
        Ok((
            PipeEnd(Handle::new(objects, &format!("{name}.a"), a)),
            PipeEnd(Handle::new(objects, &format!("{name}.b"), b)),
        ))
    }

    /// A dictionary of byte strings by key (Python's `Manager().dict()`), which tasks reach
    /// as the `wasi:keyvalue` bucket `name`.
    pub fn dict(&self, name: &str) -> Result<SharedDict, Error> {
        let objects = self.objects();
        let mut made = None;
        let object = objects.add(name, None, |_| {
            let id = push(&objects.dicts, Dict::default());
            made = Some(id);
            Object::Dict { id }
        })?;
        let dict = objects.dict(made.expect("made")).expect("just made");
        Ok(SharedDict {
            handle: Handle::new(objects, name, object),
            dict,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The handles.

/// What every handle holds: its pool's objects, its name and where it is.
#[derive(Clone)]
struct Handle {
    objects: Arc<SharedObjects>,
    name: String,
    object: Object,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("object", &self.object)
            .finish()
    }
}

impl Handle {
    fn new(objects: &Arc<SharedObjects>, name: &str, object: Object) -> Handle {
        Handle {
            objects: Arc::clone(objects),
            name: name.to_string(),
            object,
        }
    }

    fn region(&self) -> &Region {
        &self.objects.region
    }

    /// The 64-bit word of element `index` (0 for a value).
    fn word(&self, index: u32) -> &std::sync::atomic::AtomicU64 {
        let at = self.object.lock_at().expect("a region object");
        numbers::element(self.region(), at, index).expect("inside the region: the host placed it")
    }

    fn lock_guard(&self, timeout: Option<Duration>) -> Result<LockGuard, SharedError> {
        let at = self.object.lock_at().expect("a region object");
        let abandoned = self
            .region()
            .acquire(at, host_pid(), deadline(timeout))
            .map_err(|_| SharedError::Timeout)?;
        Ok(LockGuard {
            objects: Arc::clone(&self.objects),
            at,
            abandoned,
        })
    }

    fn grant(&self, name: &str) -> GrantOf {
        GrantOf(SharedGrant {
            name: name.to_string(),
            pool: self.objects.id,
            object: self.object,
        })
    }
}

macro_rules! shareable {
    ($($ty:ident),*) => {$(
        impl Shareable for $ty {
            fn name(&self) -> &str {
                &self.handle().name
            }
            fn grant_as(&self, name: &str) -> GrantOf {
                self.handle().grant(name)
            }
        }
    )*};
}

/// Holding a [`SharedLock`] (or an object's own lock): dropping it releases the lock.
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    objects: Arc<SharedObjects>,
    at: u64,
    abandoned: bool,
}

impl LockGuard {
    /// Whether the previous holder failed or died while holding the lock: what it protected
    /// may be half updated.
    pub fn abandoned(&self) -> bool {
        self.abandoned
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.objects.region.release(self.at, host_pid(), false);
    }
}

/// A lock shared by all the workers of a pool: see [`crate::Pool::lock`].
#[derive(Debug, Clone)]
pub struct SharedLock(Handle);

impl SharedLock {
    fn handle(&self) -> &Handle {
        &self.0
    }

    /// Waits for the lock (at most `timeout`; `None`: as long as it takes).
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<LockGuard, SharedError> {
        self.0.lock_guard(timeout)
    }

    /// Whether anyone holds the lock now.
    pub fn is_held(&self) -> bool {
        let at = self.0.object.lock_at().expect("a region object");
        self.0.region().is_held(at)
    }
}

/// A shared 64-bit integer: see [`crate::Pool::value`].
#[derive(Debug, Clone)]
pub struct SharedValue(Handle);

impl SharedValue {
    fn handle(&self) -> &Handle {
        &self.0
    }

    /// The value now.
    pub fn get(&self) -> i64 {
        i64::load(self.0.word(0))
    }

    /// Stores `v`.
    pub fn set(&self, v: i64) {
        v.store(self.0.word(0));
    }

    /// Adds `delta` atomically; returns the new value.
    pub fn add(&self, delta: i64) -> i64 {
        i64::add(self.0.word(0), delta)
    }

    /// Stores `new` if the value is `expected`; returns the value found.
    pub fn compare_and_swap(&self, expected: i64, new: i64) -> i64 {
        numbers::compare_and_swap(self.0.word(0), expected, new)
    }

    /// This value's own lock (Python's `get_lock()`), for updates of several steps.
    pub fn lock(&self, timeout: Option<Duration>) -> Result<LockGuard, SharedError> {
        self.0.lock_guard(timeout)
    }
}

/// A shared 64-bit float: see [`crate::Pool::float_value`].
#[derive(Debug, Clone)]
pub struct SharedFloatValue(Handle);

impl SharedFloatValue {
    fn handle(&self) -> &Handle {
        &self.0
    }

    /// The value now.
    pub fn get(&self) -> f64 {
        f64::load(self.0.word(0))
    }

    /// Stores `v`.
    pub fn set(&self, v: f64) {
        v.store(self.0.word(0));
    }

    /// Adds `delta` atomically (a compare-and-swap loop); returns the new value.
    pub fn add(&self, delta: f64) -> f64 {
        f64::add(self.0.word(0), delta)
    }

    /// This value's own lock.
    pub fn lock(&self, timeout: Option<Duration>) -> Result<LockGuard, SharedError> {
        self.0.lock_guard(timeout)
    }
}

macro_rules! array_methods {
    ($ty:ident, $num:ty) => {
        impl $ty {
            fn handle(&self) -> &Handle {
                &self.0
            }

            /// How many numbers it holds.
            pub fn len(&self) -> u32 {
                match self.0.object {
                    Object::Array { len, .. } | Object::FloatArray { len, .. } => len,
                    _ => 0,
                }
            }

            /// Whether it holds no numbers.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            fn check(&self, start: u32, count: usize) -> Result<(), SharedError> {
                match numbers::out_of_range(start, count as u64, self.len()) {
                    None => Ok(()),
                    Some(index) => Err(SharedError::OutOfRange {
                        index,
                        len: self.len(),
                    }),
                }
            }

            /// The number at `index`.
            pub fn get(&self, index: u32) -> Result<$num, SharedError> {
                self.check(index, 1)?;
                Ok(<$num>::load(self.0.word(index)))
            }

            /// Stores `v` at `index`.
            pub fn set(&self, index: u32, v: $num) -> Result<(), SharedError> {
                self.check(index, 1)?;
                v.store(self.0.word(index));
                Ok(())
            }

            /// Adds `delta` at `index` atomically; returns the new number.
            pub fn add(&self, index: u32, delta: $num) -> Result<$num, SharedError> {
                self.check(index, 1)?;
                Ok(<$num>::add(self.0.word(index), delta))
            }

            /// All its numbers, each read atomically (the whole is not a snapshot unless the
            /// array's lock is held).
            pub fn to_vec(&self) -> Vec<$num> {
                (0..self.len())
                    .map(|i| <$num>::load(self.0.word(i)))
                    .collect()
            }

            /// Stores `values` from `start` on.
            pub fn write(&self, start: u32, values: &[$num]) -> Result<(), SharedError> {
                self.check(start, values.len())?;
                for (i, &v) in values.iter().enumerate() {
                    v.store(self.0.word(start + i as u32));
                }
                Ok(())
            }

            /// This array's own lock.
            pub fn lock(&self, timeout: Option<Duration>) -> Result<LockGuard, SharedError> {
                self.0.lock_guard(timeout)
            }
        }
    };
}

/// A shared array of 64-bit integers: see [`crate::Pool::array`].
#[derive(Debug, Clone)]
pub struct SharedArray(Handle);

array_methods!(SharedArray, i64);

/// A shared array of 64-bit floats: see [`crate::Pool::float_array`].
#[derive(Debug, Clone)]
pub struct SharedFloatArray(Handle);

array_methods!(SharedFloatArray, f64);

/// A first-in first-out queue between tasks and the host: see [`crate::Pool::queue`]. Items
/// are byte strings; the typed methods carry serde values as JSON.
#[derive(Debug, Clone)]
pub struct SharedQueue(Handle);

impl Handle {
    /// The ring of a queue, or (`outbox`) the ring a pipe end sends into, else its inbox.
    fn ring(&self, outbox: bool) -> Ring<'_> {
        Ring::of(&self.objects.region, self.object, outbox)
            .expect("only queues and pipes, placed by the host, have rings")
    }

    fn still_open(&self) -> impl Fn() -> bool + '_ {
        || !self.objects.closing()
    }
}

fn to_json<T: Serialize + ?Sized>(item: &T) -> Result<Vec<u8>, SharedError> {
    serde_json::to_vec(item).map_err(|e| SharedError::Json(e.to_string()))
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SharedError> {
    serde_json::from_slice(bytes).map_err(|e| SharedError::Json(e.to_string()))
}

impl SharedQueue {
    fn handle(&self) -> &Handle {
        &self.0
    }

    /// Appends `item` as JSON, waiting for room in a bounded (or full) queue.
    pub fn put<T: Serialize + ?Sized>(&self, item: &T) -> Result<(), SharedError> {
        self.put_bytes(to_json(item)?)
    }

    /// Appends `item`, waiting for room in a bounded (or full) queue.
    pub fn put_bytes(&self, item: impl AsRef<[u8]>) -> Result<(), SharedError> {
        let h = &self.0;
        Ok(h.ring(false)
            .put(host_pid(), item.as_ref(), None, &h.still_open())?)
    }

    /// Appends `item`, waiting at most `timeout` for room (`Full` if there was none).
    pub fn put_bytes_timeout(
        &self,
        item: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<(), SharedError> {
        let h = &self.0;
        Ok(h.ring(false).put(
            host_pid(),
            item.as_ref(),
            deadline(Some(timeout)),
            &h.still_open(),
        )?)
    }

    /// Takes the first item, as JSON of `T`, waiting at most `timeout`.
    pub fn get_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T, SharedError> {
        from_json(&self.get_bytes_timeout(timeout)?)
    }

    /// Takes the first item, waiting at most `timeout`: `Timeout` if none came, `Closed` once
    /// the queue is closed and empty.
    pub fn get_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, SharedError> {
        let h = &self.0;
        Ok(h.ring(false)
            .get(host_pid(), deadline(Some(timeout)), &h.still_open())?)
    }

    /// How many items wait now.
    pub fn len(&self) -> usize {
        self.0.ring(false).len() as usize
    }

    /// Whether no item waits now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No more puts: gets take what is left, then see `Closed`.
    pub fn close(&self) {
        self.0.ring(false).close();
    }

    /// A copy of the items waiting now, in order.
    pub fn items(&self) -> Vec<Vec<u8>> {
        self.0.ring(false).snapshot(host_pid())
    }
}

/// One end of a pipe: see [`crate::Pool::pipe`].
#[derive(Debug, Clone)]
pub struct PipeEnd(Handle);

impl PipeEnd {
    fn handle(&self) -> &Handle {
        &self.0
    }

    /// Sends `message` as JSON to the other end.
    pub fn send<T: Serialize + ?Sized>(&self, message: &T) -> Result<(), SharedError> {
        self.send_bytes(to_json(message)?)
    }

    /// Sends `message` to the other end (waiting for room if the other end is behind).
    pub fn send_bytes(&self, message: impl AsRef<[u8]>) -> Result<(), SharedError> {
        let h = &self.0;
        Ok(h.ring(true)
            .put(host_pid(), message.as_ref(), None, &h.still_open())?)
    }

    /// Receives a message as JSON of `T`, waiting at most `timeout`.
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T, SharedError> {
        from_json(&self.recv_bytes_timeout(timeout)?)
    }

    /// Receives a message, waiting at most `timeout`: `Closed` once the other end closed and
    /// everything it sent was received.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, SharedError> {
        let h = &self.0;
        Ok(h.ring(false)
            .get(host_pid(), deadline(Some(timeout)), &h.still_open())?)
    }

    /// This end sends no more.
    pub fn close(&self) {
        self.0.ring(true).close();
    }
}

/// A dictionary shared by the tasks and the host: see [`crate::Pool::dict`]. Values are byte
/// strings; the typed methods carry serde values as JSON.
#[derive(Debug, Clone)]
pub struct SharedDict {
    handle: Handle,
    dict: Arc<Dict>,
}

impl SharedDict {
    fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The value under `key`, as JSON of `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SharedError> {
        self.get_bytes(key)
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| SharedError::Json(e.to_string()))
            })
            .transpose()
    }

    /// The value under `key`.
    pub fn get_bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.dict.lock().get(key).cloned()
    }

    /// Stores `value` as JSON under `key`.
    pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), SharedError> {
        let bytes = serde_json::to_vec(value).map_err(|e| SharedError::Json(e.to_string()))?;
        self.set_bytes(key, bytes);
        Ok(())
    }

    /// Stores `value` under `key`.
    pub fn set_bytes(&self, key: &str, value: impl Into<Vec<u8>>) {
        self.dict.lock().insert(key.to_string(), value.into());
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) {
        self.dict.lock().remove(key);
    }

    /// Every entry, by key.
    pub fn entries(&self) -> Vec<(String, Vec<u8>)> {
        self.dict
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.dict.lock().len()
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

shareable!(
    SharedLock,
    SharedValue,
    SharedFloatValue,
    SharedArray,
    SharedFloatArray,
    SharedQueue,
    PipeEnd,
    SharedDict
);
