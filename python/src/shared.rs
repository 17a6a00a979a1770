//! Shared state between tasks (the library's `wasmpool::shared`), for the Python half's
//! `pool.Value`, `pool.Array`, `pool.Lock`, `pool.Queue`, `pool.Pipe` and `pool.dict`: one
//! native class per kind, holding the library's handle. Items and entries cross as bytes (the
//! Python half encodes and decodes JSON); every wait (a lock, a get, a put, a recv) runs with
//! the GIL released, in slices between which Ctrl-C is checked for.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat};
use wasmpool::{Grants, SharedError};

use crate::SLICE;
use crate::errors::shared_error;

/// The deadline of a wait of `timeout` seconds (`None`: no deadline).
fn deadline_of(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        Some(t) if t.is_nan() => Err(PyValueError::new_err("timeout is NaN")),
        Some(t) => Ok(Some(
            Instant::now() + Duration::from_secs_f64(t.clamp(0.0, 1e9)),
        )),
        None => Ok(None),
    }
}

/// Runs `attempt` (a wait of at most the slice it is given) with the GIL released, slice
/// after slice, until it gives something other than a wait that ran out (`ran_out` says which
/// errors are that) or `timeout` seconds pass: `Ok(None)` then. Checks for signals between
/// slices, so that Ctrl-C raises `KeyboardInterrupt`.
fn sliced<T: Send>(
    py: Python<'_>,
    timeout: Option<f64>,
    ran_out: fn(&SharedError) -> bool,
    mut attempt: impl FnMut(Duration) -> Result<T, SharedError> + Send,
) -> PyResult<Option<T>> {
    let deadline = deadline_of(timeout)?;
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        match py.detach(|| attempt(slice)) {
            Ok(v) => return Ok(Some(v)),
            Err(e) if ran_out(&e) => {}
            Err(e) => return Err(shared_error(py, e)),
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

fn is_timeout(e: &SharedError) -> bool {
    matches!(e, SharedError::Timeout)
}

fn is_full(e: &SharedError) -> bool {
    matches!(e, SharedError::Full | SharedError::Timeout)
}

/// `queue.<name>()`, as multiprocessing's queues raise it.
fn queue_exception(py: Python<'_>, name: &str) -> PyErr {
    let built = (|| -> PyResult<PyErr> {
        let cls = py.import("queue")?.getattr(name)?;
        Ok(PyErr::from_value(cls.call0()?))
    })();
    built.unwrap_or_else(|e| e)
}

fn bytes(py: Python<'_>, v: Vec<u8>) -> Py<PyBytes> {
    PyBytes::new(py, &v).unbind()
}

// ---------------------------------------------------------------------------------------------
// Values

enum ValueKind {
    Int(wasmpool::SharedValue),
    Float(wasmpool::SharedFloatValue),
}

/// A shared 64-bit integer or float.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
pub(crate) struct NativeValue {
    inner: ValueKind,
}

impl NativeValue {
    pub(crate) fn int(v: wasmpool::SharedValue) -> Self {
        NativeValue {
            inner: ValueKind::Int(v),
        }
    }
    pub(crate) fn float(v: wasmpool::SharedFloatValue) -> Self {
        NativeValue {
            inner: ValueKind::Float(v),
        }
    }
}

#[pymethods]
impl NativeValue {
    #[getter]
    fn name(&self) -> String {
        match &self.inner {
            ValueKind::Int(v) => wasmpool::Shareable::name(v).to_string(),
            ValueKind::Float(v) => wasmpool::Shareable::name(v).to_string(),
        }
    }

    #[getter]
    fn is_float(&self) -> bool {
        matches!(self.inner, ValueKind::Float(_))
    }

    fn get(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(match &self.inner {
            ValueKind::Int(v) => v.get().into_pyobject(py)?.into_any().unbind(),
            ValueKind::Float(v) => v.get().into_pyobject(py)?.into_any().unbind(),
        })
    }

    fn set(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        match &self.inner {
            ValueKind::Int(v) => v.set(int_of(value)?),
            ValueKind::Float(v) => v.set(value.extract::<f64>()?),
        }
        Ok(())
    }

    /// Adds `delta` atomically; the new value.
    fn add(&self, py: Python<'_>, delta: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Ok(match &self.inner {
            ValueKind::Int(v) => v.add(int_of(delta)?).into_pyobject(py)?.into_any().unbind(),
            ValueKind::Float(v) => v
                .add(delta.extract::<f64>()?)
                .into_pyobject(py)?
                .into_any()
                .unbind(),
        })
    }

    /// Stores `new` if the value is `expected` (integers only); the value found.
    fn compare_and_swap(&self, expected: i64, new: i64) -> PyResult<i64> {
        match &self.inner {
            ValueKind::Int(v) => Ok(v.compare_and_swap(expected, new)),
            ValueKind::Float(_) => Err(PyTypeError::new_err(
                "compare_and_swap is for integer values",
            )),
        }
    }

    /// The value's own lock.
    fn lock(&self) -> NativeLock {
        NativeLock::new(match &self.inner {
            ValueKind::Int(v) => LockOf::Value(v.clone()),
            ValueKind::Float(v) => LockOf::FloatValue(v.clone()),
        })
    }
}

/// An integer, refusing a float (which would lose its fraction silently).
fn int_of(value: &Bound<'_, PyAny>) -> PyResult<i64> {
    if value.is_instance_of::<PyFloat>() {
        return Err(PyTypeError::new_err(
            "an integer value takes an int, not a float",
        ));
    }
    value.extract::<i64>()
}

// ---------------------------------------------------------------------------------------------
// Arrays

enum ArrayKind {
    Int(wasmpool::SharedArray),
    Float(wasmpool::SharedFloatArray),
}

/// A shared array of 64-bit integers or floats.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
pub(crate) struct NativeArray {
    inner: ArrayKind,
}

impl NativeArray {
    pub(crate) fn int(a: wasmpool::SharedArray) -> Self {
        NativeArray {
            inner: ArrayKind::Int(a),
        }
    }
    pub(crate) fn float(a: wasmpool::SharedFloatArray) -> Self {
        NativeArray {
            inner: ArrayKind::Float(a),
        }
    }
}

fn index_error(e: SharedError) -> PyErr {
    PyIndexError::new_err(e.to_string())
}

#[pymethods]
impl NativeArray {
    #[getter]
    fn name(&self) -> String {
        match &self.inner {
            ArrayKind::Int(a) => wasmpool::Shareable::name(a).to_string(),
            ArrayKind::Float(a) => wasmpool::Shareable::name(a).to_string(),
        }
    }

    #[getter]
    fn is_float(&self) -> bool {
        matches!(self.inner, ArrayKind::Float(_))
    }

    fn __len__(&self) -> usize {
        match &self.inner {
            ArrayKind::Int(a) => a.len() as usize,
            ArrayKind::Float(a) => a.len() as usize,
        }
    }

    fn get(&self, py: Python<'_>, index: u32) -> PyResult<Py<PyAny>> {
        Ok(match &self.inner {
            ArrayKind::Int(a) => a
                .get(index)
                .map_err(index_error)?
                .into_pyobject(py)?
                .into_any()
                .unbind(),
            ArrayKind::Float(a) => a
                .get(index)
                .map_err(index_error)?
                .into_pyobject(py)?
                .into_any()
                .unbind(),
        })
    }

    fn set(&self, index: u32, value: &Bound<'_, PyAny>) -> PyResult<()> {
        match &self.inner {
            ArrayKind::Int(a) => a.set(index, int_of(value)?),
            ArrayKind::Float(a) => a.set(index, value.extract::<f64>()?),
        }
        .map_err(index_error)
    }

    /// Adds `delta` at `index` atomically; the new number.
    fn add(&self, py: Python<'_>, index: u32, delta: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Ok(match &self.inner {
            ArrayKind::Int(a) => a
                .add(index, int_of(delta)?)
                .map_err(index_error)?
                .into_pyobject(py)?
                .into_any()
                .unbind(),
            ArrayKind::Float(a) => a
                .add(index, delta.extract::<f64>()?)
                .map_err(index_error)?
                .into_pyobject(py)?
                .into_any()
                .unbind(),
        })
    }

    fn tolist(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(match &self.inner {
            ArrayKind::Int(a) => a.to_vec().into_pyobject(py)?.into_any().unbind(),
            ArrayKind::Float(a) => a.to_vec().into_pyobject(py)?.into_any().unbind(),
        })
    }

    /// Stores `values` from `start` on.
    fn write(&self, start: u32, values: &Bound<'_, PyAny>) -> PyResult<()> {
        match &self.inner {
            ArrayKind::Int(a) => {
                let values = values
                    .try_iter()?
                    .map(|v| int_of(&v?))
                    .collect::<PyResult<Vec<i64>>>()?;
                a.write(start, &values)
            }
            ArrayKind::Float(a) => a.write(start, &values.extract::<Vec<f64>>()?),
        }
        .map_err(index_error)
    }

    /// The array's own lock.
    fn lock(&self) -> NativeLock {
        NativeLock::new(match &self.inner {
            ArrayKind::Int(a) => LockOf::Array(a.clone()),
            ArrayKind::Float(a) => LockOf::FloatArray(a.clone()),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Locks

enum LockOf {
    Lock(wasmpool::SharedLock),
    Value(wasmpool::SharedValue),
    FloatValue(wasmpool::SharedFloatValue),
    Array(wasmpool::SharedArray),
    FloatArray(wasmpool::SharedFloatArray),
}

impl LockOf {
    fn acquire(&self, timeout: Duration) -> Result<wasmpool::LockGuard, SharedError> {
        let t = Some(timeout);
        match self {
            LockOf::Lock(l) => l.acquire(t),
            LockOf::Value(v) => v.lock(t),
            LockOf::FloatValue(v) => v.lock(t),
            LockOf::Array(a) => a.lock(t),
            LockOf::FloatArray(a) => a.lock(t),
        }
    }
}

/// A shared lock, or a value's or array's own: held by the host (this process) between
/// `acquire` and `release`, which any thread may call (as with multiprocessing's `Lock`).
#[pyclass(module = "wasmpool._wasmpool", frozen)]
pub(crate) struct NativeLock {
    of: LockOf,
    guard: Mutex<Option<wasmpool::LockGuard>>,
    abandoned: AtomicBool,
}

impl NativeLock {
    fn new(of: LockOf) -> Self {
        NativeLock {
            of,
            guard: Mutex::new(None),
            abandoned: AtomicBool::new(false),
        }
    }

    pub(crate) fn lock(l: wasmpool::SharedLock) -> Self {
        Self::new(LockOf::Lock(l))
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<wasmpool::LockGuard>> {
        self.guard.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl NativeLock {
    #[getter]
    fn name(&self) -> String {
        match &self.of {
            LockOf::Lock(l) => wasmpool::Shareable::name(l).to_string(),
            LockOf::Value(v) => wasmpool::Shareable::name(v).to_string(),
            LockOf::FloatValue(v) => wasmpool::Shareable::name(v).to_string(),
            LockOf::Array(a) => wasmpool::Shareable::name(a).to_string(),
            LockOf::FloatArray(a) => wasmpool::Shareable::name(a).to_string(),
        }
    }

    /// Whether this is an object's own lock (not grantable by itself).
    #[getter]
    fn is_own(&self) -> bool {
        !matches!(self.of, LockOf::Lock(_))
    }

    /// Waits for the lock, at most `timeout` seconds (`None`: as long as it takes); whether
    /// it was acquired.
    #[pyo3(signature = (timeout=None))]
    fn acquire(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let got = sliced(py, timeout, is_timeout, |slice| self.of.acquire(slice))?;
        let Some(guard) = got else {
            return Ok(false);
        };
        self.abandoned.store(guard.abandoned(), Ordering::Release);
        if let Some(stale) = self.slot().replace(guard) {
            // Cannot happen (the lock was free, so no guard of it was held); dropping the
            // stale guard would release the lock just taken.
            std::mem::forget(stale);
        }
        Ok(true)
    }

    /// Releases the lock; `ValueError` if this process does not hold it.
    fn release(&self) -> PyResult<()> {
        match self.slot().take() {
            Some(guard) => {
                drop(guard);
                Ok(())
            }
            None => Err(PyValueError::new_err("release of an unlocked lock")),
        }
    }

    /// Whether the last `acquire` found the lock abandoned by a holder that failed or died.
    #[getter]
    fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::Acquire)
    }

    /// Whether anyone holds the lock now (a `Lock`'s); for an object's own lock, whether this
    /// process holds it.
    fn locked(&self) -> bool {
        match &self.of {
            LockOf::Lock(l) => l.is_held(),
            _ => self.slot().is_some(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Queues and pipes

/// A first-in first-out queue of byte strings.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
pub(crate) struct NativeQueue {
    inner: wasmpool::SharedQueue,
    maxsize: usize,
}

impl NativeQueue {
    pub(crate) fn new(inner: wasmpool::SharedQueue, maxsize: usize) -> Self {
        NativeQueue { inner, maxsize }
    }
}

#[pymethods]
impl NativeQueue {
    #[getter]
    fn name(&self) -> String {
        wasmpool::Shareable::name(&self.inner).to_string()
    }

    #[getter]
    fn maxsize(&self) -> usize {
        self.maxsize
    }

    /// Appends `item`, waiting at most `timeout` seconds for room (`queue.Full` then).
    #[pyo3(signature = (item, timeout=None))]
    fn put(&self, py: Python<'_>, item: &[u8], timeout: Option<f64>) -> PyResult<()> {
        let item = item.to_vec();
        let q = &self.inner;
        let put = sliced(py, timeout, is_full, |slice| {
            q.put_bytes_timeout(&item, slice)
        });
        match put {
            Ok(Some(())) => Ok(()),
            Ok(None) => Err(queue_exception(py, "Full")),
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyEOFError>(py) => Err(
                crate::errors::closed_error(py, "the queue is closed: no more puts"),
            ),
            Err(e) => Err(e),
        }
    }

    /// Takes the first item, waiting at most `timeout` seconds (`queue.Empty` then).
    #[pyo3(signature = (timeout=None))]
    fn get(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyBytes>> {
        let q = &self.inner;
        match sliced(py, timeout, is_timeout, |slice| q.get_bytes_timeout(slice))? {
            Some(item) => Ok(bytes(py, item)),
            None => Err(queue_exception(py, "Empty")),
        }
    }

    fn qsize(&self) -> usize {
        self.inner.len()
    }

    fn close(&self) {
        self.inner.close();
    }

    /// A copy of the items waiting now, in order.
    fn items(&self, py: Python<'_>) -> Vec<Py<PyBytes>> {
        self.inner
            .items()
            .into_iter()
            .map(|i| bytes(py, i))
            .collect()
    }
}

/// One end of a pipe.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
pub(crate) struct NativePipeEnd {
    inner: wasmpool::PipeEnd,
}

impl NativePipeEnd {
    pub(crate) fn new(inner: wasmpool::PipeEnd) -> Self {
        NativePipeEnd { inner }
    }
}

#[pymethods]
impl NativePipeEnd {
    #[getter]
    fn name(&self) -> String {
        wasmpool::Shareable::name(&self.inner).to_string()
    }

    /// Sends `message` to the other end (waiting, the GIL released, for room if the other
    /// end is 1 MiB behind).
    fn send(&self, py: Python<'_>, message: &[u8]) -> PyResult<()> {
        let message = message.to_vec();
        let end = &self.inner;
        py.detach(|| end.send_bytes(&message))
            .map_err(|e| shared_error(py, e))
    }

    /// Receives a message, waiting at most `timeout` seconds (`multiprocessing.TimeoutError`
    /// then); `Closed` once the other end closed and everything it sent was received.
    #[pyo3(signature = (timeout=None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyBytes>> {
        let end = &self.inner;
        match sliced(py, timeout, is_timeout, |slice| {
            end.recv_bytes_timeout(slice)
        })? {
            Some(message) => Ok(bytes(py, message)),
            None => Err(crate::errors::timeout_error(py)),
        }
    }

    fn close(&self) {
        self.inner.close();
    }
}

// ---------------------------------------------------------------------------------------------
// Dicts

/// A dictionary of byte strings by key (the `wasi:keyvalue` bucket of its name).
#[pyclass(module = "wasmpool._wasmpool", frozen)]
pub(crate) struct NativeDict {
    inner: wasmpool::SharedDict,
}

impl NativeDict {
    pub(crate) fn new(inner: wasmpool::SharedDict) -> Self {
        NativeDict { inner }
    }
}

#[pymethods]
impl NativeDict {
    #[getter]
    fn name(&self) -> String {
        wasmpool::Shareable::name(&self.inner).to_string()
    }

    fn get(&self, py: Python<'_>, key: &str) -> Option<Py<PyBytes>> {
        self.inner.get_bytes(key).map(|v| bytes(py, v))
    }

    fn set(&self, key: &str, value: &[u8]) {
        self.inner.set_bytes(key, value.to_vec());
    }

    /// Removes `key`; whether it was there.
    fn delete(&self, key: &str) -> bool {
        let was = self.inner.get_bytes(key).is_some();
        self.inner.delete(key);
        was
    }

    /// Every entry, sorted by key.
    fn entries(&self, py: Python<'_>) -> Vec<(String, Py<PyBytes>)> {
        let mut entries = self.inner.entries();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
            .into_iter()
            .map(|(k, v)| (k, bytes(py, v)))
            .collect()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Grants

/// `grants` with `object` (a native shared object) granted under `name`.
pub(crate) fn grant(grants: Grants, name: &str, object: &Bound<'_, PyAny>) -> PyResult<Grants> {
    if let Ok(v) = object.cast::<NativeValue>() {
        return Ok(match &v.get().inner {
            ValueKind::Int(v) => grants.shared_as(name, v),
            ValueKind::Float(v) => grants.shared_as(name, v),
        });
    }
    if let Ok(a) = object.cast::<NativeArray>() {
        return Ok(match &a.get().inner {
            ArrayKind::Int(a) => grants.shared_as(name, a),
            ArrayKind::Float(a) => grants.shared_as(name, a),
        });
    }
    if let Ok(l) = object.cast::<NativeLock>() {
        return match &l.get().of {
            LockOf::Lock(l) => Ok(grants.shared_as(name, l)),
            _ => Err(PyTypeError::new_err(format!(
                "`{name}`: an object's own lock (get_lock()) goes with the object: grant the \
                 value or array itself"
            ))),
        };
    }
    if let Ok(q) = object.cast::<NativeQueue>() {
        return Ok(grants.shared_as(name, &q.get().inner));
    }
    if let Ok(p) = object.cast::<NativePipeEnd>() {
        return Ok(grants.shared_as(name, &p.get().inner));
    }
    if let Ok(d) = object.cast::<NativeDict>() {
        return Ok(grants.shared_as(name, &d.get().inner));
    }
    Err(PyTypeError::new_err(format!(
        "`{name}`: not a shared object of a pool (pool.Value, pool.Array, pool.Lock, \
         pool.Queue, pool.Pipe, pool.dict), but {}",
        object.get_type().name()?
    )))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeValue>()?;
    m.add_class::<NativeArray>()?;
    m.add_class::<NativeLock>()?;
    m.add_class::<NativeQueue>()?;
    m.add_class::<NativePipeEnd>()?;
    m.add_class::<NativeDict>()?;
    Ok(())
}
