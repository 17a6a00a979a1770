//! `_wasmpool`, the native half of the Python package `wasmpool`: a thin layer over the
//! library's public API, as the command line is. The Python half (`python/wasmpool/`) gives it
//! multiprocessing's and concurrent.futures' shapes; this half converts values, releases the
//! GIL while Rust waits (checking for signals between slices of the wait, so that Ctrl-C is a
//! `KeyboardInterrupt`), and turns the library's errors into the package's exception classes.
//!
//! Values: Python objects reach the library through serde ([`values::PyArg`], checked against
//! the export's signature by the library, with its messages), and results come back as JSON
//! with serde's names, which [`values::to_python`] turns into Python objects guided by the
//! export's WIT result type (bytes for `list<u8>`, tuples for tuples, WIT's names for fields
//! and cases).

mod errors;
mod shared;
mod values;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyStopIteration, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;
use serde_json::Value as Json;
use wasmpool::{Grants, Limits, WitType};

use errors::{load_error, task_error};
use values::{Owned, PyArg, to_python};

/// How long one slice of a wait lasts with the GIL released, between two checks for signals.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// Waits with the GIL released, in slices, until `ready` says so or `timeout` (seconds)
/// passes; checks for signals between slices, so that Ctrl-C raises `KeyboardInterrupt`.
/// Whether it became ready.
fn wait_released(
    py: Python<'_>,
    timeout: Option<f64>,
    ready: impl Fn(Duration) -> bool + Send + Sync,
) -> PyResult<bool> {
    let deadline = match timeout {
        Some(t) if t.is_nan() => return Err(PyValueError::new_err("timeout is NaN")),
        Some(t) => Some(Instant::now() + Duration::from_secs_f64(t.clamp(0.0, 1e9))),
        None => None,
    };
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        if py.detach(|| ready(slice)) {
            return Ok(true);
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
    }
}

/// The result type a task's value is converted with: its one result (the `ok` side of a
/// `result`, whose `err` is an error), a tuple of several, or none.
fn value_type(sig: &wasmpool::Signature) -> Option<WitType> {
    match sig.results.as_slice() {
        [] => None,
        [WitType::Result { ok, .. }] => ok.as_deref().cloned(),
        [one] => Some(one.clone()),
        many => Some(WitType::Tuple(many.to_vec())),
    }
}

/// A loaded module: validated, its exports' signatures read, compiled behind walls.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
struct Module {
    inner: wasmpool::Module,
}

#[pymethods]
impl Module {
    /// The task of the export `name`.
    fn task(&self, name: &str) -> PyResult<Task> {
        let task = self.inner.task(name).map_err(load_error)?;
        Ok(Task::new(task))
    }

    /// The task of the whole program (`wasi:cli/run`, or `_start`): `(args, stdin)` in, the
    /// exit code out.
    fn program(&self) -> PyResult<Task> {
        let task = self.inner.program().map_err(load_error)?;
        Ok(Task::new(task))
    }

    /// The callable exports' signatures, as WIT.
    #[getter]
    fn exports(&self) -> Vec<String> {
        self.inner
            .exports()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The export names.
    #[getter]
    fn export_names(&self) -> Vec<String> {
        self.inner
            .exports()
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// Where the module came from (its path).
    #[getter]
    fn origin(&self) -> String {
        self.inner.origin().to_string()
    }

    /// `"component"` or `"core"`.
    #[getter]
    fn kind(&self) -> String {
        format!("{:?}", self.inner.kind()).to_lowercase()
    }

    /// The module's hash, hex.
    #[getter]
    fn hash(&self) -> String {
        self.inner.hash_hex()
    }

    fn __repr__(&self) -> String {
        format!("<wasmpool.Module {}>", self.inner.origin())
    }
}

/// Loads a module file (`.wasm` or `.wat`), compiling it in a walled process.
#[pyfunction]
#[pyo3(signature = (path, *, limits=None, max_bytes=None, compile_timeout=None, compile_memory=None))]
fn load(
    py: Python<'_>,
    path: std::path::PathBuf,
    limits: Option<&LimitSpec>,
    max_bytes: Option<u64>,
    compile_timeout: Option<f64>,
    compile_memory: Option<u64>,
) -> PyResult<Module> {
    let mut loader = wasmpool::Module::loader();
    if let Some(limits) = limits {
        loader = loader.for_limits(limits.limits());
    }
    if let Some(bytes) = max_bytes {
        loader = loader.max_bytes(bytes);
    }
    if let Some(t) = compile_timeout {
        loader = loader.compile_timeout(secs(t)?);
    }
    if let Some(bytes) = compile_memory {
        loader = loader.compile_memory(bytes);
    }
    let module = py.detach(|| loader.file(&path)).map_err(load_error)?;
    Ok(Module { inner: module })
}

fn secs(t: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(t).map_err(|e| PyValueError::new_err(format!("{t} seconds: {e}")))
}

/// Remote workers as Python gives them (see `Pool` in `wasmpool/__init__.py`): a launcher
/// (a preset's name, a command line, or an argv template), the hosts and their slots, the
/// local workers beside them.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
struct RemoteSpec {
    launcher: wasmpool::Launcher,
    hosts: Vec<(String, usize)>,
    local: usize,
}

#[pymethods]
impl RemoteSpec {
    #[new]
    #[pyo3(signature = (*, launcher=None, argv=None, hosts=vec![], local=0, remote_bin=None, startup_timeout=None, link_timeout=None))]
    fn new(
        launcher: Option<String>,
        argv: Option<Vec<String>>,
        hosts: Vec<(String, usize)>,
        local: usize,
        remote_bin: Option<String>,
        startup_timeout: Option<f64>,
        link_timeout: Option<f64>,
    ) -> PyResult<RemoteSpec> {
        let mut launcher = match (argv, launcher) {
            (Some(argv), _) if argv.is_empty() => {
                return Err(PyValueError::new_err("a launcher needs a program"));
            }
            (Some(argv), _) => wasmpool::Launcher::new(argv),
            (None, Some(text)) => match wasmpool::Launcher::preset(&text) {
                Some(preset) => preset,
                None => wasmpool::Launcher::parse(&text)
                    .map_err(|e| PyValueError::new_err(e.to_string()))?,
            },
            (None, None) => wasmpool::Launcher::ssh(),
        };
        if hosts.is_empty() && launcher.names_host() {
            return Err(PyValueError::new_err(format!(
                "the launcher `{}` names a {{host}}: give hosts",
                launcher.template().join(" ")
            )));
        }
        if let Some((host, _)) = hosts.iter().find(|(_, slots)| *slots == 0) {
            return Err(PyValueError::new_err(format!(
                "host `{host}`: at least one worker"
            )));
        }
        if let Some(bin) = remote_bin {
            launcher = launcher.remote_bin(bin);
        }
        if let Some(t) = startup_timeout {
            launcher = launcher.startup_timeout(secs(t)?);
        }
        if let Some(t) = link_timeout {
            launcher = launcher.link_timeout(secs(t)?);
        }
        Ok(RemoteSpec {
            launcher,
            hosts,
            local,
        })
    }
}

impl RemoteSpec {
    /// `builder` with these workers: `local` local ones, and one launched per slot of each
    /// host (or, for a launcher that names no host, `processes` of them).
    fn apply(
        &self,
        builder: wasmpool::PoolBuilder,
        processes: Option<usize>,
    ) -> wasmpool::PoolBuilder {
        let mut builder = builder.local(self.local);
        if self.hosts.is_empty() {
            builder = builder.launcher(self.launcher.clone(), processes.unwrap_or(1).max(1));
        }
        for (host, slots) in &self.hosts {
            builder = builder.remote(self.launcher.clone(), host, *slots);
        }
        builder
    }
}

/// Limits as Python gives them: each optional.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
#[derive(Debug, Clone, Default)]
struct LimitSpec {
    timeout: Option<f64>,
    fuel: Option<u64>,
    max_memory: Option<u64>,
    max_table_elements: Option<u64>,
    max_output: Option<u64>,
    max_result: Option<u64>,
}

#[pymethods]
impl LimitSpec {
    #[new]
    #[pyo3(signature = (*, timeout=None, fuel=None, max_memory=None, max_table_elements=None, max_output=None, max_result=None))]
    fn new(
        timeout: Option<f64>,
        fuel: Option<u64>,
        max_memory: Option<u64>,
        max_table_elements: Option<u64>,
        max_output: Option<u64>,
        max_result: Option<u64>,
    ) -> PyResult<Self> {
        if let Some(t) = timeout {
            secs(t)?;
        }
        Ok(LimitSpec {
            timeout,
            fuel,
            max_memory,
            max_table_elements,
            max_output,
            max_result,
        })
    }
}

impl LimitSpec {
    fn limits(&self) -> Limits {
        let mut limits = Limits::new();
        if let Some(t) = self.timeout {
            limits = limits.timeout(Duration::from_secs_f64(t));
        }
        if let Some(f) = self.fuel {
            limits = limits.fuel(f);
        }
        if let Some(m) = self.max_memory {
            limits = limits.max_memory(m);
        }
        if let Some(t) = self.max_table_elements {
            limits = limits.max_table_elements(t);
        }
        if let Some(o) = self.max_output {
            limits = limits.max_output_bytes(o);
        }
        if let Some(r) = self.max_result {
            limits = limits.max_result_bytes(r);
        }
        limits
    }
}

/// Grants from Python: directories `(host, guest, read_only)` and environment pairs.
fn grants(dirs: Vec<(String, String, bool)>, env: Vec<(String, String)>) -> Grants {
    let mut grants = Grants::new();
    for (host, guest, read_only) in dirs {
        grants = if read_only {
            grants.read_only_dir(host, guest)
        } else {
            grants.dir(host, guest)
        };
    }
    for (k, v) in env {
        grants = grants.env(k, v);
    }
    grants
}

/// One export of one module, with its own limits and grants.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
#[derive(Clone)]
struct Task {
    inner: wasmpool::Task,
    /// What values convert to: see [`value_type`].
    result_type: Option<WitType>,
    /// The `err` type of a `result` return, for a guest error's value.
    error_type: Option<WitType>,
    params: Arc<Vec<String>>,
}

impl Task {
    fn new(inner: wasmpool::Task) -> Task {
        let sig = inner.signature();
        let error_type = match sig.results.as_slice() {
            [WitType::Result { err, .. }] => err.as_deref().cloned(),
            _ => None,
        };
        Task {
            result_type: value_type(sig),
            error_type,
            params: Arc::new(sig.params.iter().map(|(n, _)| n.clone()).collect()),
            inner,
        }
    }

    fn value(&self, py: Python<'_>, json: &Json) -> PyResult<Py<PyAny>> {
        to_python(py, json, self.result_type.as_ref())
    }

    fn outcome(
        &self,
        py: Python<'_>,
        outcome: Result<Json, wasmpool::TaskError>,
    ) -> PyResult<Py<PyAny>> {
        match outcome {
            Ok(json) => self.value(py, &json),
            Err(e) => Err(task_error(py, &e, self.error_type.as_ref())),
        }
    }

    /// The outcome as `(ok, value or exception)`, for the completer.
    fn settle(
        &self,
        py: Python<'_>,
        outcome: Result<Json, wasmpool::TaskError>,
    ) -> (bool, Py<PyAny>) {
        match self.outcome(py, outcome) {
            Ok(v) => (true, v),
            Err(e) => (false, e.into_value(py).into_any()),
        }
    }
}

#[pymethods]
impl Task {
    /// The export's name.
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_string()
    }

    /// The signature, as WIT.
    #[getter]
    fn signature(&self) -> String {
        self.inner.signature().to_string()
    }

    /// The parameters, as `(name, WIT type)` pairs.
    #[getter]
    fn params(&self) -> Vec<(String, String)> {
        self.inner
            .signature()
            .params
            .iter()
            .map(|(n, t)| (n.clone(), t.to_string()))
            .collect()
    }

    /// The results' WIT types.
    #[getter]
    fn results(&self) -> Vec<String> {
        self.inner
            .signature()
            .results
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// This task with these limits over the pool's.
    fn with_limits(&self, limits: &LimitSpec) -> Task {
        Task::new(self.inner.clone().with_limits(limits.limits()))
    }

    /// This task with these grants instead of the pool's: directories, environment pairs,
    /// and shared objects as `(name the task opens it by, native object)`.
    #[pyo3(signature = (dirs, env, shared=Vec::new()))]
    fn with_grants(
        &self,
        dirs: Vec<(String, String, bool)>,
        env: Vec<(String, String)>,
        shared: Vec<(String, Bound<'_, PyAny>)>,
    ) -> PyResult<Task> {
        let mut granted = grants(dirs, env);
        for (name, object) in &shared {
            granted = shared::grant(granted, name, object)?;
        }
        let task = self
            .inner
            .clone()
            .with_grants(granted)
            .map_err(load_error)?;
        Ok(Task::new(task))
    }

    /// This task calling the items of a chunk in one instance.
    fn with_instance_reuse(&self) -> Task {
        Task::new(self.inner.clone().with_instance_reuse())
    }

    /// Whether the task reuses its instance.
    #[getter]
    fn reuses_instance(&self) -> bool {
        self.inner.reuses_instance()
    }

    /// The batch form of a `func(xs: list<T>) -> list<R>` export: a task of its elements.
    fn batched(&self) -> PyResult<Task> {
        Ok(Task::new(self.inner.batched().map_err(load_error)?))
    }

    fn __repr__(&self) -> String {
        format!("<wasmpool.Task {}>", self.inner.signature())
    }
}

/// Points every pool, process and compile of this process at the worker binary.
#[pyfunction]
fn set_worker(program: std::path::PathBuf, args: Vec<String>) {
    wasmpool::set_worker_command(Some(wasmpool::WorkerCommand::new(program).args(args)));
}

/// The pool: worker processes and their drivers.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
struct Pool {
    inner: Arc<wasmpool::Pool>,
    /// Set by `terminate`: streams stop pulling their input.
    terminated: Arc<AtomicBool>,
}

#[pymethods]
impl Pool {
    #[new]
    #[pyo3(signature = (*, processes=None, limits=None, dirs=vec![], env=vec![], retries=0, chunksize=None, imap_chunksize=None, max_tasks_per_worker=None, max_wasm_stack=None, remote=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        processes: Option<usize>,
        limits: Option<&LimitSpec>,
        dirs: Vec<(String, String, bool)>,
        env: Vec<(String, String)>,
        retries: u32,
        chunksize: Option<usize>,
        imap_chunksize: Option<usize>,
        max_tasks_per_worker: Option<u64>,
        max_wasm_stack: Option<usize>,
        remote: Option<&RemoteSpec>,
    ) -> PyResult<Pool> {
        let builder = wasmpool::Pool::builder()
            .retries(retries)
            .grants(grants(dirs, env));
        let mut builder = match remote {
            Some(remote) => remote.apply(builder, processes),
            None => builder.workers(processes.unwrap_or(0)),
        };
        if let Some(limits) = limits {
            builder = builder.limits(limits.limits());
        }
        if let Some(n) = chunksize {
            builder = builder.chunksize(n);
        }
        if let Some(n) = imap_chunksize {
            builder = builder.imap_chunksize(n);
        }
        if let Some(n) = max_tasks_per_worker {
            builder = builder.max_tasks_per_worker(n);
        }
        if let Some(n) = max_wasm_stack {
            builder = builder.max_wasm_stack(n);
        }
        let pool = py.detach(|| builder.build()).map_err(load_error)?;
        Ok(Pool {
            inner: Arc::new(pool),
            terminated: Arc::default(),
        })
    }

    /// How many worker slots.
    #[getter]
    fn workers(&self) -> usize {
        self.inner.workers()
    }

    /// The pids of the workers running now.
    fn worker_pids(&self) -> Vec<u32> {
        self.inner.worker_pids()
    }

    /// One call; `args` is a tuple spread over the parameters, or a dict by name.
    fn submit(&self, task: &Task, args: &Bound<'_, PyAny>) -> TaskFuture {
        let future = self.inner.submit::<_, Json>(&task.inner, PyArg(args));
        TaskFuture {
            inner: future,
            task: task.clone(),
        }
    }

    /// Calls on every item of a list or tuple (each item one argument, or with `star`
    /// spread over the parameters); `chunksize` or the default.
    #[pyo3(signature = (task, items, chunksize=None, star=false))]
    fn map_async(
        &self,
        task: &Task,
        items: &Bound<'_, PyAny>,
        chunksize: Option<usize>,
        star: bool,
    ) -> PyResult<MapFuture> {
        let pool = &self.inner;
        let ints = matches!(
            task.result_type,
            Some(
                WitType::S8
                    | WitType::S16
                    | WitType::S32
                    | WitType::S64
                    | WitType::U8
                    | WitType::U16
                    | WitType::U32
            )
        );
        // `map(f, range(n))`: the numbers straight from the range, no Python int each.
        // Numbers need no Python: checked and queued with the GIL released.
        if !star && let Some(range) = int_range(items)? {
            let runner = &task.inner;
            let map = items
                .py()
                .detach(|| start_map(pool, runner, range, false, chunksize, ints));
            return Ok(MapFuture {
                inner: Arc::new(map),
                task: task.clone(),
            });
        }
        let items: Vec<Bound<'_, PyAny>> = if let Ok(list) = items.cast::<PyList>() {
            list.iter().collect()
        } else if let Ok(tuple) = items.cast::<pyo3::types::PyTuple>() {
            tuple.iter().collect()
        } else {
            items.try_iter()?.collect::<PyResult<_>>()?
        };
        let args = items.iter().map(PyArg);
        Ok(MapFuture {
            inner: Arc::new(start_map(pool, &task.inner, args, star, chunksize, ints)),
            task: task.clone(),
        })
    }

    /// A lazy stream of outcomes over any iterable, in input order or as they finish; with
    /// `star`, each item is a tuple spread over the parameters.
    #[pyo3(signature = (task, items, ordered=true, star=false))]
    fn imap(
        &self,
        task: &Task,
        items: &Bound<'_, PyAny>,
        ordered: bool,
        star: bool,
    ) -> PyResult<ImapIter> {
        let source: Py<PyAny> = items.try_iter()?.into_any().unbind();
        let (tx, rx) = crossbeam_channel::bounded::<Outcome>(4096);
        let failed: Arc<Mutex<Option<PyErr>>> = Arc::default();
        let pool = Arc::clone(&self.inner);
        let runner = task.inner.clone();
        let dropped: Arc<AtomicBool> = Arc::default();
        let feed = Feed {
            stop: [Arc::clone(&dropped), Arc::clone(&self.terminated)],
            source: Some(source),
            buffer: std::collections::VecDeque::new(),
            batch: 1,
            failed: Arc::clone(&failed),
            params: star.then(|| Arc::clone(&task.params)),
        };
        std::thread::Builder::new()
            .name("wasmpool-imap".into())
            .spawn(move || {
                let stream = if ordered {
                    pool.imap::<_, Json>(&runner, feed)
                } else {
                    pool.imap_unordered::<_, Json>(&runner, feed)
                };
                for outcome in stream {
                    if tx.send(outcome).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| PyValueError::new_err(format!("cannot start a thread: {e}")))?;
        Ok(ImapIter {
            rx,
            task: task.clone(),
            failed,
            dropped,
        })
    }

    /// Stops new submissions.
    fn close(&self) {
        self.inner.close();
    }

    /// Waits for queued work and the workers' exit (after `close`).
    fn join(&self, py: Python<'_>) -> PyResult<()> {
        let pool = Arc::clone(&self.inner);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
        std::thread::spawn(move || {
            pool.join();
            let _ = done_tx.send(());
        });
        wait_released(py, None, |slice| {
            !matches!(
                done_rx.recv_timeout(slice),
                Err(crossbeam_channel::RecvTimeoutError::Timeout)
            )
        })?;
        Ok(())
    }

    /// A shared integer (an `int` initial value) or float (a `float`) named `name`.
    fn value(&self, name: &str, initial: &Bound<'_, PyAny>) -> PyResult<shared::NativeValue> {
        if initial.is_instance_of::<pyo3::types::PyFloat>() {
            let v = self
                .inner
                .float_value(name, initial.extract()?)
                .map_err(load_error)?;
            return Ok(shared::NativeValue::float(v));
        }
        let Ok(initial) = initial.extract::<i64>() else {
            return Err(PyTypeError::new_err(format!(
                "`{name}`: a shared value is an int (64 bits) or a float, not {}",
                initial.get_type().name()?
            )));
        };
        let v = self.inner.value(name, initial).map_err(load_error)?;
        Ok(shared::NativeValue::int(v))
    }

    /// A shared array of integers (`values`, or `len` zeros) or of floats (`float_values`,
    /// or `len` zeros with `float`).
    #[pyo3(signature = (name, len=None, values=None, float_values=None, float=false))]
    fn array(
        &self,
        name: &str,
        len: Option<u32>,
        values: Option<Vec<i64>>,
        float_values: Option<Vec<f64>>,
        float: bool,
    ) -> PyResult<shared::NativeArray> {
        let pool = &self.inner;
        Ok(match (len, values, float_values) {
            (_, Some(v), _) => {
                shared::NativeArray::int(pool.array_from(name, &v).map_err(load_error)?)
            }
            (_, _, Some(v)) => {
                shared::NativeArray::float(pool.float_array_from(name, &v).map_err(load_error)?)
            }
            (Some(n), _, _) if float => {
                shared::NativeArray::float(pool.float_array(name, n).map_err(load_error)?)
            }
            (n, _, _) => {
                shared::NativeArray::int(pool.array(name, n.unwrap_or(0)).map_err(load_error)?)
            }
        })
    }

    /// A lock shared by every worker of the pool.
    fn lock(&self, name: &str) -> PyResult<shared::NativeLock> {
        let l = self.inner.lock(name).map_err(load_error)?;
        Ok(shared::NativeLock::lock(l))
    }

    /// A queue, unbounded (`maxsize` 0) or holding `maxsize` items at most.
    #[pyo3(signature = (name, maxsize=0))]
    fn queue(&self, name: &str, maxsize: usize) -> PyResult<shared::NativeQueue> {
        let q = if maxsize == 0 {
            self.inner.queue(name)
        } else {
            self.inner.queue_bounded(name, maxsize)
        }
        .map_err(load_error)?;
        Ok(shared::NativeQueue::new(q, maxsize))
    }

    /// A pipe: its two ends, `NAME.a` and `NAME.b`.
    fn pipe(&self, name: &str) -> PyResult<(shared::NativePipeEnd, shared::NativePipeEnd)> {
        let (a, b) = self.inner.pipe(name).map_err(load_error)?;
        Ok((shared::NativePipeEnd::new(a), shared::NativePipeEnd::new(b)))
    }

    /// A dictionary (the `wasi:keyvalue` bucket `name`).
    fn dict(&self, name: &str) -> PyResult<shared::NativeDict> {
        let d = self.inner.dict(name).map_err(load_error)?;
        Ok(shared::NativeDict::new(d))
    }

    /// Kills the workers; pending tasks are cancelled.
    fn terminate(&self, py: Python<'_>) {
        self.terminated.store(true, Ordering::Release);
        let pool = Arc::clone(&self.inner);
        py.detach(|| pool.terminate());
    }
}

type Outcome = Result<Json, wasmpool::TaskError>;

/// A Python `range` of 64-bit integers as a Rust iterator of them (`None` for anything else,
/// or a range past 64 bits).
fn int_range(items: &Bound<'_, PyAny>) -> PyResult<Option<impl ExactSizeIterator<Item = i64>>> {
    if !items.is_instance_of::<pyo3::types::PyRange>() {
        return Ok(None);
    }
    let get = |name: &str| items.getattr(name).and_then(|v| v.extract::<i64>());
    let (Ok(start), Ok(step), Ok(len)) = (get("start"), get("step"), items.len()) else {
        return Ok(None);
    };
    if len > 0
        && start
            .checked_add(step.saturating_mul(len as i64 - 1))
            .is_none()
    {
        return Ok(None);
    }
    Ok(Some((0..len).map(move |i| start + step * i as i64)))
}

/// The input of a stream: pulled from the Python iterator a batch at a time, with the GIL
/// taken only for that, and converted to owned values the stream's thread can serialize.
struct Feed {
    /// When either is set, the input ends: the iterator was dropped, the pool terminated.
    stop: [Arc<AtomicBool>; 2],
    source: Option<Py<PyAny>>,
    buffer: std::collections::VecDeque<Owned>,
    batch: usize,
    failed: Arc<Mutex<Option<PyErr>>>,
    /// For a star stream: the parameters' names, each tuple given by name.
    params: Option<Arc<Vec<String>>>,
}

impl Iterator for Feed {
    type Item = Owned;

    fn next(&mut self) -> Option<Owned> {
        if let Some(item) = self.buffer.pop_front() {
            return Some(item);
        }
        if self.stop.iter().any(|flag| flag.load(Ordering::Acquire)) {
            // The iterator is gone, or the pool terminated: pull no more.
            if let Some(source) = self.source.take() {
                Python::attach(|_| drop(source));
            }
            return None;
        }
        let source = self.source.as_ref()?;
        let batch = self.batch;
        self.batch = (self.batch * 2).min(1024);
        let pulled: Result<Vec<Owned>, PyErr> = Python::attach(|py| {
            let iter = source.bind(py);
            let mut out = Vec::with_capacity(batch);
            for _ in 0..batch {
                let next = next_item(iter)?;
                let Some(item) = next else { break };
                out.push(match &self.params {
                    Some(names) => Owned::star(&item, names)?,
                    None => Owned::from_py(&item)?,
                });
            }
            Ok(out)
        });
        match pulled {
            Ok(items) => {
                if items.len() < batch {
                    self.source = None;
                }
                self.buffer.extend(items);
            }
            Err(e) => {
                self.source = None;
                *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        }
        self.buffer.pop_front()
    }
}

/// The next item of a Python iterator, `None` at its end.
fn next_item<'py>(iter: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    match iter.call_method0("__next__") {
        Ok(item) => Ok(Some(item)),
        Err(e) if e.is_instance_of::<PyStopIteration>(iter.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The Python side of a stream.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
struct ImapIter {
    rx: crossbeam_channel::Receiver<Outcome>,
    task: Task,
    failed: Arc<Mutex<Option<PyErr>>>,
    /// Set when this iterator goes: its stream stops pulling the input.
    dropped: Arc<AtomicBool>,
}

impl Drop for ImapIter {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Release);
    }
}

#[pymethods]
impl ImapIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.next(py, None)
    }

    /// The next outcome, waiting at most `timeout` seconds (multiprocessing's
    /// `IMapIterator.next(timeout)`): a `TimeoutError` past it.
    #[pyo3(signature = (timeout=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Py<PyAny>>> {
        let outcome = match self.rx.try_recv() {
            Ok(outcome) => Some(outcome),
            Err(crossbeam_channel::TryRecvError::Disconnected) => None,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                let got: Mutex<Option<Option<Outcome>>> = Mutex::new(None);
                let ready =
                    wait_released(py, timeout, |slice| match self.rx.recv_timeout(slice) {
                        Ok(outcome) => {
                            *got.lock().unwrap_or_else(|e| e.into_inner()) = Some(Some(outcome));
                            true
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                            *got.lock().unwrap_or_else(|e| e.into_inner()) = Some(None);
                            true
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => false,
                    })?;
                if !ready {
                    return Err(errors::timeout_error(py));
                }
                got.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .flatten()
            }
        };
        match outcome {
            Some(outcome) => self.task.outcome(py, outcome).map(Some),
            None => {
                let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner()).take();
                match failed {
                    Some(e) => Err(e),
                    None => Err(PyStopIteration::new_err(())),
                }
            }
        }
    }
}

/// One submitted call.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
struct TaskFuture {
    inner: wasmpool::TaskFuture<Json>,
    task: Task,
}

#[pymethods]
impl TaskFuture {
    /// Waits until the call ends or `timeout` seconds pass; whether it ended.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if self.inner.done() {
            return Ok(true);
        }
        wait_released(py, timeout, |slice| self.inner.wait_timeout(slice))
    }

    /// The value, or the task's exception raised; waits for it.
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.wait(py, None)?;
        let outcome = self.inner.result();
        self.task.outcome(py, outcome)
    }

    /// `(ok, value or exception)` once the call ended; waits for it.
    fn outcome(&self, py: Python<'_>) -> PyResult<(bool, Py<PyAny>)> {
        self.wait(py, None)?;
        let outcome = self.inner.result();
        Ok(self.task.settle(py, outcome))
    }

    fn done(&self) -> bool {
        self.inner.done()
    }

    fn successful(&self) -> Option<bool> {
        self.inner.successful()
    }

    fn running(&self) -> bool {
        self.inner.running()
    }

    fn cancel(&self) -> bool {
        self.inner.cancel()
    }

    fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }
}

/// A map in flight: its values as JSON, or, for an export returning an integer that fits
/// an `i64`, as `i64`s straight (a million results convert in half the time).
enum Map {
    Json(wasmpool::MapResult<Json>),
    Int(wasmpool::MapResult<i64>),
}

/// Starts a map (`star`: a starmap) of `items`.
fn start_map<T: serde::Serialize>(
    pool: &wasmpool::Pool,
    task: &wasmpool::Task,
    items: impl IntoIterator<Item = T>,
    star: bool,
    chunksize: Option<usize>,
    ints: bool,
) -> Map {
    fn start<T: serde::Serialize, R: serde::de::DeserializeOwned>(
        pool: &wasmpool::Pool,
        task: &wasmpool::Task,
        items: impl IntoIterator<Item = T>,
        star: bool,
        chunksize: Option<usize>,
    ) -> wasmpool::MapResult<R> {
        match (star, chunksize) {
            (false, None) => pool.map_async(task, items),
            (false, Some(n)) => pool.map_chunked_async(task, items, n.max(1)),
            (true, None) => pool.starmap_async(task, items),
            (true, Some(n)) => pool.starmap_chunked_async(task, items, n.max(1)),
        }
    }
    if ints {
        Map::Int(start(pool, task, items, star, chunksize))
    } else {
        Map::Json(start(pool, task, items, star, chunksize))
    }
}

impl Map {
    fn done(&self) -> bool {
        match self {
            Map::Json(m) => m.done(),
            Map::Int(m) => m.done(),
        }
    }

    fn successful(&self) -> Option<bool> {
        match self {
            Map::Json(m) => m.successful(),
            Map::Int(m) => m.successful(),
        }
    }

    fn wait_timeout(&self, timeout: Duration) -> bool {
        match self {
            Map::Json(m) => m.wait_timeout(timeout),
            Map::Int(m) => m.wait_timeout(timeout),
        }
    }

    fn wait(&self) {
        match self {
            Map::Json(m) => m.wait(),
            Map::Int(m) => m.wait(),
        }
    }

    /// The values as a list, or the first error in input order as its exception.
    fn list(&self, py: Python<'_>, task: &Task) -> PyResult<Py<PyList>> {
        let error = |e: wasmpool::TaskError| task_error(py, &e, task.error_type.as_ref());
        match self {
            Map::Int(m) => {
                let values = py.detach(|| m.result()).map_err(error)?;
                Ok(PyList::new(py, values)?.unbind())
            }
            Map::Json(m) => {
                let values = py.detach(|| m.result()).map_err(error)?;
                let ty = task.result_type.as_ref();
                let converted = values
                    .iter()
                    .map(|v| to_python(py, v, ty))
                    .collect::<PyResult<Vec<_>>>()?;
                Ok(PyList::new(py, converted)?.unbind())
            }
        }
    }
}

/// A whole map in flight.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
struct MapFuture {
    inner: Arc<Map>,
    task: Task,
}

#[pymethods]
impl MapFuture {
    /// Waits until every item ended or `timeout` seconds pass; whether they did.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if self.inner.done() {
            return Ok(true);
        }
        wait_released(py, timeout, |slice| self.inner.wait_timeout(slice))
    }

    /// The values in input order, or the first error in input order raised.
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        self.wait(py, None)?;
        self.inner.list(py, &self.task)
    }

    fn done(&self) -> bool {
        self.inner.done()
    }

    fn successful(&self) -> Option<bool> {
        self.inner.successful()
    }
}

/// A wake-up that names its future to the completer.
struct Notify {
    id: u64,
    tx: crossbeam_channel::Sender<u64>,
}

impl Wake for Notify {
    fn wake(self: Arc<Self>) {
        let _ = self.tx.send(self.id);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.tx.send(self.id);
    }
}

/// Hands ended calls to a Python thread that completes their `concurrent.futures.Future`s
/// (or calls an `AsyncResult`'s callbacks): each watched future's waker sends its id on a
/// channel, and [`Completer::next`] gives back, for each, the key it was watched with and
/// its outcome.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
struct Completer {
    tx: crossbeam_channel::Sender<u64>,
    rx: crossbeam_channel::Receiver<u64>,
    next_id: AtomicU64,
    watched: Mutex<HashMap<u64, Watched>>,
}

enum Watched {
    One(wasmpool::TaskFuture<Json>, Task, Py<PyAny>),
    Map(Arc<Map>, Task, Py<PyAny>),
}

/// An ended call as the completer hands it over: its key, whether it succeeded, and its
/// value or exception.
type Settled = (Py<PyAny>, bool, Py<PyAny>);

/// How long the completer gathers ended calls behind the first, at most.
const GATHER_FOR: Duration = Duration::from_millis(1);
/// The quiet gap that ends a gathering: no call ended for this long.
const GATHER_GAP: Duration = Duration::from_micros(40);

/// The id that ends the completer's thread.
const STOP: u64 = u64::MAX;

#[pymethods]
impl Completer {
    #[new]
    fn new() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Completer {
            tx,
            rx,
            next_id: AtomicU64::new(0),
            watched: Mutex::new(HashMap::new()),
        }
    }

    /// Watches a call: `key` comes back from `next` once it ended.
    fn watch(&self, future: &TaskFuture, key: Py<PyAny>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut fut = future.inner.clone();
        self.watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Watched::One(fut.clone(), future.task.clone(), key));
        let waker = Waker::from(Arc::new(Notify {
            id,
            tx: self.tx.clone(),
        }));
        let mut cx = Context::from_waker(&waker);
        if std::pin::Pin::new(&mut fut).poll(&mut cx).is_ready() {
            let _ = self.tx.send(id);
        }
    }

    /// Watches a map: `key` comes back once every item ended. (A thread waits on it: maps
    /// have no waker.)
    fn watch_map(&self, future: &MapFuture, key: Py<PyAny>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                Watched::Map(Arc::clone(&future.inner), future.task.clone(), key),
            );
        let map = Arc::clone(&future.inner);
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            map.wait();
            let _ = tx.send(id);
        });
    }

    /// The keys of the calls watched that have not ended yet.
    fn pending(&self, py: Python<'_>) -> Vec<Py<PyAny>> {
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        watched
            .values()
            .map(|w| match w {
                Watched::One(_, _, key) | Watched::Map(_, _, key) => key.clone_ref(py),
            })
            .collect()
    }

    /// Ends the thread that calls `next`.
    fn stop(&self) {
        let _ = self.tx.send(STOP);
    }

    /// The calls that ended, as `(key, ok, value or exception)`, waiting at most `timeout`
    /// seconds for the first; `None` once stopped.
    fn next(&self, py: Python<'_>, timeout: f64) -> PyResult<Option<Vec<Settled>>> {
        let first = py.detach(|| {
            self.rx
                .recv_timeout(Duration::from_secs_f64(timeout.max(0.0)))
        });
        let Ok(first) = first else {
            return Ok(Some(Vec::new()));
        };
        // Gather what ends close behind the first (while calls end every few microseconds,
        // for up to a millisecond) before taking the GIL: one switch of the GIL per batch
        // rather than per call, which would stall a thread that is submitting.
        let ids = py.detach(|| {
            let mut ids = vec![first];
            let until = Instant::now() + GATHER_FOR;
            while ids.len() < 4096 && first != STOP {
                match self.rx.recv_timeout(GATHER_GAP) {
                    Ok(id) => {
                        ids.push(id);
                        if id == STOP || Instant::now() >= until {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            ids
        });
        let mut stopped = false;
        let mut done = Vec::with_capacity(ids.len());
        for id in ids {
            if id == STOP {
                stopped = true;
                continue;
            }
            let watched = self
                .watched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            match watched {
                Some(Watched::One(fut, task, key)) => {
                    let (ok, value) = task.settle(py, fut.result());
                    done.push((key, ok, value));
                }
                Some(Watched::Map(map, task, key)) => {
                    let settled = match map.list(py, &task) {
                        Ok(list) => (true, list.into_any()),
                        Err(e) => (false, e.into_value(py).into_any()),
                    };
                    done.push((key, settled.0, settled.1));
                }
                // Woken twice: already settled.
                None => {}
            }
        }
        if stopped && done.is_empty() {
            return Ok(None);
        }
        if stopped {
            let _ = self.tx.send(STOP);
        }
        Ok(Some(done))
    }
}

/// One task in a worker process of its own.
#[pyclass(module = "wasmpool._wasmpool", frozen)]
struct Process {
    inner: Mutex<wasmpool::Process>,
    task: Task,
}

#[pymethods]
impl Process {
    #[new]
    fn new(task: &Task, args: &Bound<'_, PyAny>) -> PyResult<Process> {
        let process = wasmpool::Process::new(&task.inner, PyArg(args))
            .map_err(|e| task_error(args.py(), &e, task.error_type.as_ref()))?;
        Ok(Process {
            inner: Mutex::new(process),
            task: task.clone(),
        })
    }

    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let mut process = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let process: &mut wasmpool::Process = &mut process;
        py.detach(|| process.start()).map_err(load_error)
    }

    /// Waits for the task to end, at most `timeout` seconds.
    #[pyo3(signature = (timeout=None))]
    fn join(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        wait_released(py, timeout, |slice| {
            let mut process = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            process.join_timeout(slice)
        })?;
        Ok(())
    }

    fn is_alive(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_alive()
    }

    fn kill(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).kill();
    }

    #[getter]
    fn pid(&self) -> Option<u32> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).pid()
    }

    #[getter]
    fn exitcode(&self) -> Option<i32> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .exitcode()
    }

    /// `None` while the task runs; then `(ok, value or exception)`.
    fn outcome(&self, py: Python<'_>) -> Option<(bool, Py<PyAny>)> {
        let outcome = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .result::<Json>()?;
        Some(self.task.settle(py, outcome))
    }
}

/// Checks `args` against `task`'s parameters as a call would, without running it: the
/// `BadInput` a call would raise, raised (for tests and for callers that validate early).
#[pyfunction]
fn check_args(py: Python<'_>, task: &Task, args: &Bound<'_, PyAny>) -> PyResult<()> {
    let owned = Owned::from_py(args)?;
    let json = serde_json::to_value(&owned).map_err(|e| PyTypeError::new_err(e.to_string()))?;
    task.inner
        .args_from_json(&json)
        .map(|_| ())
        .map_err(|e| task_error(py, &e, None))
}

#[pymodule]
fn _wasmpool(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Module>()?;
    m.add_class::<Task>()?;
    m.add_class::<LimitSpec>()?;
    m.add_class::<Pool>()?;
    m.add_class::<RemoteSpec>()?;
    m.add_class::<TaskFuture>()?;
    m.add_class::<MapFuture>()?;
    m.add_class::<ImapIter>()?;
    m.add_class::<Completer>()?;
    m.add_class::<Process>()?;
    shared::register(m)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(set_worker, m)?)?;
    m.add_function(wrap_pyfunction!(check_args, m)?)?;
    Ok(())
}
