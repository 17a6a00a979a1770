//! The host side's public surface: [`Pool`] and [`PoolBuilder`].
//!
//! A pool owns N worker processes, each driven by one thread ([`supervisor::drive`]) that
//! pulls [`scheduler::Job`]s from one shared queue. Every API method turns its input into jobs
//! (chunks of calls with arguments checked against the signature), puts them on the queue,
//! and hands back a handle whose [`scheduler::Sink`] receives the outcomes.

pub(crate) mod handle;
pub(crate) mod imap;
pub(crate) mod process;
pub(crate) mod queue;
pub(crate) mod scheduler;
mod spares;
pub(crate) mod supervisor;

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, TaskError};
use crate::limits::{DEFAULT_MAX_WASM_STACK, Grants, Limits};
use crate::module::{Module, Task};
use crate::values::{self, ArgsShape};
use crate::wire::WorkerSettings;

use handle::{Batch, MapResult, Slot, TaskFuture};
use imap::Imap;
use queue::{JobQueue, Refused};
use scheduler::{Gather, Job, JobItem, Outcome, Sink, default_chunksize};
use spares::Shelf;
use supervisor::{PidSlot, WorkerProgram, kill_slot};

/// Which stream a guest wrote to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
}

/// What one task printed, handed to the pool's output handler when the task ends.
#[derive(Debug)]
pub struct GuestOutput<'a> {
    /// The task's number in its pool, counting from 0 in submission order.
    pub task: u64,
    /// The export the task called.
    pub func: &'a str,
    /// stdout or stderr.
    pub stream: Stream,
    /// What it wrote (invalid UTF-8 replaced).
    pub text: &'a str,
}

type OutputFn = dyn Fn(&GuestOutput<'_>) + Send + Sync;

/// Where guests' stdout and stderr go.
pub(crate) struct OutputSink(Arc<OutputFn>);

impl OutputSink {
    /// The default: each line on the host's stderr, prefixed by its task, `[square#3] ...`.
    fn relay_to_stderr() -> Self {
        OutputSink(Arc::new(|out: &GuestOutput<'_>| {
            let mut err = std::io::stderr().lock();
            for line in out.text.lines() {
                let _ = writeln!(err, "[{}#{}] {line}", out.func, out.task);
            }
        }))
    }
}

/// Items per worker that `imap` keeps in flight by default, whatever its chunk size: measured
/// with 1-item chunks on two workers, 2 items per worker streamed 31 k items/s, 8 gave 45 k,
/// 32 gave 60 k, 128 gave 69 k. Memory stays bounded either way.
const IMAP_ITEMS_IN_FLIGHT_PER_WORKER: usize = 64;

/// Configures and starts a [`Pool`].
///
/// # Examples
/// ```no_run
/// let pool = wasmpool::Pool::builder().workers(4).chunksize(100).build()?;
/// # Ok::<(), wasmpool::Error>(())
/// ```
pub struct PoolBuilder {
    workers: usize,
    limits: Limits,
    grants: Grants,
    max_wasm_stack: usize,
    retries: u32,
    max_tasks_per_worker: Option<u64>,
    chunksize: Option<usize>,
    imap_chunksize: usize,
    max_chunks_in_flight: Option<usize>,
    program: Option<WorkerProgram>,
    output: Option<OutputSink>,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("workers", &self.workers)
            .field("limits", &self.limits)
            .field("grants", &self.grants)
            .field("retries", &self.retries)
            .field("chunksize", &self.chunksize)
            .field("imap_chunksize", &self.imap_chunksize)
            .field("program", &self.program)
            .finish()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            workers: 0,
            limits: Limits::new(),
            grants: Grants::new(),
            max_wasm_stack: DEFAULT_MAX_WASM_STACK,
            retries: 0,
            max_tasks_per_worker: None,
            chunksize: None,
            imap_chunksize: 1,
            max_chunks_in_flight: None,
            program: None,
            output: None,
        }
    }
}

impl PoolBuilder {
    /// How many worker processes. 0 (the default) means one per available core
    /// ([`std::thread::available_parallelism`]).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Limits for every task (see [`Limits`]); a task's own limits
    /// ([`Task::with_limits`]) take precedence.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// What every task may reach (see [`Grants`]; nothing by default); a task's own grants
    /// ([`Task::with_grants`]) replace these. Granted directories must exist.
    pub fn grants(mut self, grants: Grants) -> Self {
        self.grants = grants;
        self
    }

    /// The wasm stack size of every worker, in bytes (default
    /// [`DEFAULT_MAX_WASM_STACK`]); overflowing it is [`TaskError::StackOverflow`].
    pub fn max_wasm_stack(mut self, bytes: usize) -> Self {
        self.max_wasm_stack = bytes.max(64 << 10);
        self
    }

    /// How many times a task whose worker died is run again on a new worker before it fails
    /// with [`TaskError::WorkerCrashed`] (default 0: no retry, as a task that crashes its
    /// worker once may well do it again).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Replaces each worker process with a fresh one after it has run `n` tasks (Python's
    /// `maxtasksperchild`). By default workers live as long as the pool: every task already
    /// runs in a fresh wasm instance.
    pub fn max_tasks_per_worker(mut self, n: u64) -> Self {
        self.max_tasks_per_worker = Some(n.max(1));
        self
    }

    /// Items per chunk for `map`, `map_async` and `starmap`. By default Python's heuristic:
    /// `ceil(len / (4 * workers))`, about four chunks per worker.
    pub fn chunksize(mut self, n: usize) -> Self {
        self.chunksize = Some(n.max(1));
        self
    }

    /// Items per chunk for `imap` and `imap_unordered` (default 1, as in Python).
    pub fn imap_chunksize(mut self, n: usize) -> Self {
        self.imap_chunksize = n.max(1);
        self
    }

    /// How many chunks `imap` keeps in flight at most (default: 2 per worker, and with small
    /// chunks as many as make 64 items per worker: with one or two items each, a worker would
    /// sit idle through every round trip).
    pub fn max_chunks_in_flight(mut self, n: usize) -> Self {
        self.max_chunks_in_flight = Some(n.max(1));
        self
    }

    /// Runs workers as `program args...` instead of this executable. The program must enter
    /// wasmpool's worker loop: the `wasmpool` binary does with `wasmpool worker`.
    pub fn worker_command(mut self, program: impl AsRef<Path>, args: &[&str]) -> Self {
        self.program = Some(WorkerProgram {
            program: program.as_ref().to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
        });
        self
    }

    /// Where guests' stdout and stderr go. By default each line goes to this process's stderr,
    /// prefixed by its task (`[square#3] hello`).
    pub fn on_output(mut self, handler: impl Fn(&GuestOutput<'_>) + Send + Sync + 'static) -> Self {
        self.output = Some(OutputSink(Arc::new(handler)));
        self
    }

    /// Starts the workers; returns once every one has answered its handshake.
    pub fn build(self) -> Result<Pool, Error> {
        self.grants.check()?;
        let workers = match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let program = match self.program {
            Some(p) => p,
            None => WorkerProgram::current_exe()?,
        };
        let shared = Arc::new(Shared {
            program,
            settings: WorkerSettings {
                max_wasm_stack: self.max_wasm_stack,
                allow_files: !self.grants.dirs.is_empty(),
                lock_down: true,
            },
            retries: self.retries,
            max_tasks_per_worker: self.max_tasks_per_worker,
            queue: JobQueue::new(),
            workers,
            drivers_left: AtomicUsize::new(workers),
            terminating: AtomicBool::new(false),
            chunk_ids: AtomicU64::new(0),
            output: self.output.unwrap_or_else(OutputSink::relay_to_stderr),
            job_items: Shelf::default(),
            outcome_slots: Arc::default(),
        });
        let pool = Pool {
            shared,
            limits: self.limits,
            grants: Arc::new(self.grants),
            drivers: Mutex::new(Vec::new()),
            task_numbers: AtomicU64::new(0),
            workers,
            chunksize: self.chunksize,
            imap_chunksize: self.imap_chunksize,
            max_chunks_in_flight: self.max_chunks_in_flight.unwrap_or_else(|| {
                (2 * workers).max(IMAP_ITEMS_IN_FLIGHT_PER_WORKER * workers / self.imap_chunksize)
            }),
        };
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
        for i in 0..workers {
            let shared = Arc::clone(&pool.shared);
            let slot = PidSlot::default();
            let ready = ready_tx.clone();
            let driver_slot = Arc::clone(&slot);
            let thread = std::thread::Builder::new()
                .name(format!("wasmpool-driver-{i}"))
                .spawn(move || supervisor::drive(shared, driver_slot, ready))
                .map_err(|e| Error::Spawn {
                    program: "driver thread".into(),
                    detail: e.to_string(),
                })?;
            pool.lock_drivers().push(Driver { thread, pid: slot });
        }
        drop(ready_tx);
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(_pid)) => {}
                Ok(Err(e)) => return Err(e), // dropping `pool` ends the workers already started
                Err(_) => {
                    return Err(Error::Spawn {
                        program: "worker".into(),
                        detail: "a driver thread died during start-up".into(),
                    });
                }
            }
        }
        Ok(pool)
    }
}

/// State shared by the pool and its driver threads.
pub(crate) struct Shared {
    program: WorkerProgram,
    settings: WorkerSettings,
    retries: u32,
    max_tasks_per_worker: Option<u64>,
    queue: JobQueue,
    /// How many drivers share the queue.
    workers: usize,
    /// Drivers that have not given up (see [`Shared::driver_lost`]).
    drivers_left: AtomicUsize,
    terminating: AtomicBool,
    chunk_ids: AtomicU64,
    output: OutputSink,
    /// Emptied item vectors of finished chunks, and outcome slots of finished maps, for the
    /// next map (see [`spares`]).
    job_items: Shelf<JobItem>,
    outcome_slots: Arc<Shelf<Option<Outcome>>>,
}

impl Shared {
    pub(crate) fn is_terminating(&self) -> bool {
        self.terminating.load(Ordering::Acquire)
    }

    /// Keeps a finished job's item vector for a later one.
    pub(crate) fn recycle(&self, items: Vec<JobItem>) {
        self.job_items.put(items);
    }

    pub(crate) fn next_chunk_id(&self) -> u64 {
        self.chunk_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// A driver gives up, as it could not start a worker (`detail` says why). The pool goes on
    /// with the others; when it was the last, every queued task fails with `detail`, and so
    /// does every task submitted later, instead of waiting for a worker that will never come.
    pub(crate) fn driver_lost(&self, detail: &str) {
        if self.drivers_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            for job in self.queue.abandon(detail.to_string()) {
                job.fail_all(|func| TaskError::Internal {
                    func: func.to_string(),
                    detail: detail.to_string(),
                });
            }
        }
    }

    /// The next job for a driver that took `turn` to spin for it; `None` once the pool is
    /// closed and the queue drained.
    pub(crate) fn next_job(&self, turn: queue::SpinTurn<'_>) -> Option<Job> {
        let give_back_spares = || {
            self.job_items.clear();
            self.outcome_slots.clear();
        };
        self.queue
            .next(self.workers, turn, (spares::IDLE, give_back_spares))
    }
}

struct Driver {
    thread: JoinHandle<()>,
    pid: PidSlot,
}

/// An argument list checked against the task's signature (or why it does not fit), with its
/// place in the caller's input, waiting to be queued.
pub(crate) struct PreparedItem {
    pub(crate) index: usize,
    pub(crate) args: Result<values::Values, String>,
}

/// A pool of sandboxed worker processes running WebAssembly tasks, like Python's
/// `multiprocessing.Pool` and `ProcessPoolExecutor` in one.
///
/// Every task runs in a fresh wasm instance inside a worker process: a trap fails that task
/// alone, and a worker that dies is replaced, failing only the tasks it held
/// ([`TaskError::WorkerCrashed`]).
///
/// Shutting down: [`Pool::close`] stops new submissions and lets queued work finish;
/// [`Pool::join`] closes, then waits for the queue to drain and the workers to exit;
/// [`Pool::terminate`] kills the workers at once and cancels what is queued. Dropping a pool
/// terminates it (as Python's `with Pool() as p:` does on exit), so no worker outlives it;
/// call `join` first to let queued work finish.
///
/// # Examples
/// ```no_run
/// use wasmpool::Pool;
/// let pool = Pool::builder().workers(4).build()?;
/// let square = pool.load("square.wasm")?.task("square")?;
/// let squares: Vec<i64> = pool.map(&square, 0..10_i64)?;
/// assert_eq!(squares[9], 81);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    limits: Limits,
    grants: Arc<Grants>,
    drivers: Mutex<Vec<Driver>>,
    task_numbers: AtomicU64,
    workers: usize,
    chunksize: Option<usize>,
    imap_chunksize: usize,
    max_chunks_in_flight: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers)
            .field("pids", &self.worker_pids())
            .finish()
    }
}

impl Pool {
    /// A [`PoolBuilder`] with the defaults: one worker per core, Python's chunking.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// A pool with the defaults (`Pool::builder().build()`).
    pub fn new() -> Result<Pool, Error> {
        Pool::builder().build()
    }

    /// Loads and validates a `.wasm` module or component (see [`Module::from_file`]).
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Module, Error> {
        Module::from_file(path)
    }

    /// Loads and validates a module given as bytes (see [`Module::from_bytes`]).
    pub fn load_bytes(&self, bytes: impl Into<Vec<u8>>) -> Result<Module, Error> {
        Module::from_bytes(bytes)
    }

    /// How many worker processes the pool runs.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The process ids of the current workers (a replaced worker has a new pid).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.lock_drivers()
            .iter()
            .filter_map(|d| *d.pid.lock().unwrap_or_else(|e| e.into_inner()))
            .collect()
    }

    /// Calls `task` on every item, in parallel; the values in input order, or the first error
    /// in input order. Each item is the task's one argument (use [`Pool::starmap`] to spread
    /// tuples over several parameters).
    pub fn map<T: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>, TaskError> {
        self.map_async(task, items).get()
    }

    /// [`Pool::map`] with an explicit chunk size (items per round trip to a worker).
    pub fn map_chunked<T: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> Result<Vec<R>, TaskError> {
        self.submit_batch(task, items, ArgsShape::Single, Some(chunksize))
            .get()
    }

    /// Like [`Pool::map`], but each item is a tuple spread over the task's parameters:
    /// `starmap(&power, [(2, 3), (3, 2)])` calls `power(2, 3)` and `power(3, 2)`.
    pub fn starmap<T: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>, TaskError> {
        self.submit_batch(task, items, ArgsShape::Spread, self.chunksize)
            .get()
    }

    /// Starts a [`Pool::map`] and returns at once; the handle gives the values later.
    pub fn map_async<T: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        items: impl IntoIterator<Item = T>,
    ) -> MapResult<R> {
        self.submit_batch(task, items, ArgsShape::Single, self.chunksize)
    }

    /// Starts a [`Pool::starmap`] and returns at once.
    pub fn starmap_async<T: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        items: impl IntoIterator<Item = T>,
    ) -> MapResult<R> {
        self.submit_batch(task, items, ArgsShape::Spread, self.chunksize)
    }

    /// Calls `task` once with `args` (a tuple spread over its parameters) and waits for it.
    pub fn apply<A: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        args: A,
    ) -> Result<R, TaskError> {
        self.submit(task, args).result()
    }

    /// Starts one call and returns at once (`multiprocessing`'s `apply_async`).
    pub fn apply_async<A: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        args: A,
    ) -> TaskFuture<R> {
        self.submit(task, args)
    }

    /// Starts one call and returns a future (`concurrent.futures`' `submit`): block on it,
    /// poll it, cancel it before it starts, or `.await` it.
    pub fn submit<A: Serialize, R: DeserializeOwned>(&self, task: &Task, args: A) -> TaskFuture<R> {
        let slot = Slot::new(task.name());
        let item = PreparedItem {
            index: 0,
            args: values::args_from_serialize(task.signature(), &args, ArgsShape::Spread),
        };
        self.enqueue(task, std::iter::once(item), slot.clone(), Gather::Yes);
        TaskFuture::new(slot)
    }

    /// A lazy, ordered stream of outcomes over an iterator of any length, with a bounded
    /// number of chunks in flight: the input is read only as fast as results are consumed.
    pub fn imap<'a, T: Serialize + 'a, R: DeserializeOwned>(
        &'a self,
        task: &Task,
        items: impl IntoIterator<Item = T> + 'a,
    ) -> Imap<'a, R> {
        self.stream(task, items, ArgsShape::Single, true)
    }

    /// Like [`Pool::imap`], but yields outcomes as tasks finish, in any order.
    pub fn imap_unordered<'a, T: Serialize + 'a, R: DeserializeOwned>(
        &'a self,
        task: &Task,
        items: impl IntoIterator<Item = T> + 'a,
    ) -> Imap<'a, R> {
        self.stream(task, items, ArgsShape::Single, false)
    }

    /// Like [`Pool::imap`] with each item spread over the parameters (the CLI's `map`).
    pub fn imap_spread<'a, T: Serialize + 'a, R: DeserializeOwned>(
        &'a self,
        task: &Task,
        items: impl IntoIterator<Item = T> + 'a,
        ordered: bool,
    ) -> Imap<'a, R> {
        self.stream(task, items, ArgsShape::Spread, ordered)
    }

    /// Stops new submissions; queued and running tasks still finish. Later submissions fail
    /// with [`TaskError::PoolClosed`].
    pub fn close(&self) {
        self.shared.queue.close();
    }

    /// Closes the pool, waits for all queued work to finish and for the workers to exit.
    pub fn join(&self) {
        self.close();
        let drivers: Vec<Driver> = self.lock_drivers().drain(..).collect();
        for driver in drivers {
            let _ = driver.thread.join();
        }
    }

    /// Kills the workers at once: running tasks and queued tasks end with
    /// [`TaskError::Cancelled`]. Returns after every worker process has been reaped.
    pub fn terminate(&self) {
        self.shared.terminating.store(true, Ordering::Release);
        self.close();
        for driver in self.lock_drivers().iter() {
            kill_slot(&driver.pid);
        }
        for job in self.shared.queue.drain() {
            job.cancel();
        }
        self.join();
    }

    fn lock_drivers(&self) -> std::sync::MutexGuard<'_, Vec<Driver>> {
        self.drivers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit_batch<T: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        items: impl IntoIterator<Item = T>,
        shape: ArgsShape,
        chunksize: Option<usize>,
    ) -> MapResult<R> {
        let items = items.into_iter();
        match items.size_hint() {
            (low, Some(high)) if low == high => {
                self.submit_sized(task, items, low, shape, chunksize)
            }
            // The default chunk size needs the length: as Python does, take the whole input.
            _ => {
                let all: Vec<T> = items.collect();
                let len = all.len();
                self.submit_sized(task, all.into_iter(), len, shape, chunksize)
            }
        }
    }

    /// Checks and queues the items chunk by chunk, so that the workers start on the first
    /// chunk while the later ones are still being checked. `len` is the input's length as
    /// its size hint gives it; an input that turns out longer or shorter is taken whole.
    fn submit_sized<T: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        items: impl Iterator<Item = T>,
        len: usize,
        shape: ArgsShape,
        chunksize: Option<usize>,
    ) -> MapResult<R> {
        let batch = Batch::open(task.name(), len, &self.shared.outcome_slots);
        let chunksize = chunksize.unwrap_or_else(|| default_chunksize(len, self.workers));
        let mut items = items.peekable();
        let mut queued = 0;
        while items.peek().is_some() {
            let chunk: Vec<T> = items.by_ref().take(chunksize).collect();
            let first = queued;
            queued += chunk.len();
            if queued > len {
                batch.reserve_to(queued);
            }
            let prepared = chunk.iter().enumerate().map(|(i, item)| PreparedItem {
                index: first + i,
                args: values::args_from_serialize(task.signature(), item, shape),
            });
            self.enqueue(task, prepared, batch.clone(), Gather::No);
        }
        batch.seal(queued);
        MapResult::new(batch)
    }

    fn stream<'a, T: Serialize + 'a, R: DeserializeOwned>(
        &'a self,
        task: &Task,
        items: impl IntoIterator<Item = T> + 'a,
        shape: ArgsShape,
        ordered: bool,
    ) -> Imap<'a, R> {
        let checker = task.clone();
        let input = Box::new(
            items
                .into_iter()
                .map(move |item| values::args_from_serialize(checker.signature(), &item, shape)),
        );
        Imap::new(
            self,
            task,
            input,
            self.imap_chunksize,
            self.max_chunks_in_flight,
            ordered,
        )
    }

    /// Fails the items whose arguments do not fit the task's signature at once, and queues
    /// the rest as one job.
    pub(crate) fn enqueue(
        &self,
        task: &Task,
        items: impl ExactSizeIterator<Item = PreparedItem>,
        sink: Arc<dyn Sink>,
        gather: Gather,
    ) {
        let first = self
            .task_numbers
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        let func = task.name();
        // A chunk's items share its sink; a single submission's item (which the queue may
        // gather with others) carries its own.
        let (job_sink, item_sink) = match gather {
            Gather::No => (Some(Arc::clone(&sink)), None),
            Gather::Yes => (None, Some(Arc::clone(&sink))),
        };
        let mut job_items = self.shared.job_items.take(items.len());
        for (n, item) in items.enumerate() {
            match item.args {
                Ok(args) => job_items.push(JobItem {
                    index: item.index,
                    task_no: first + n as u64,
                    args,
                    crashes: 0,
                    sink: item_sink.clone(),
                }),
                Err(detail) => sink.deliver(
                    item.index,
                    Err(TaskError::BadInput {
                        func: func.to_string(),
                        detail,
                    }),
                ),
            }
        }
        if job_items.is_empty() {
            return;
        }
        let grants = task
            .grants()
            .cloned()
            .unwrap_or_else(|| Arc::clone(&self.grants));
        if !grants.dirs.is_empty() && !self.shared.settings.allow_files {
            let detail =
                "this task is granted directories, but the pool's workers were started without \
                          file access: grant a directory on the pool (PoolBuilder::grants) too"
                    .to_string();
            for item in job_items {
                let func = func.to_string();
                sink.deliver(
                    item.index,
                    Err(TaskError::Sandbox {
                        func,
                        detail: detail.clone(),
                    }),
                );
            }
            return;
        }
        let job = Job {
            task: task.clone(),
            items: job_items,
            gather,
            limits: task.limits().or(self.limits).resolve(),
            grants,
            sink: job_sink,
        };
        match self.shared.queue.push(job) {
            Ok(()) => {}
            Err((job, Refused::Closed)) => job.fail_all(|func| TaskError::PoolClosed {
                func: func.to_string(),
            }),
            Err((job, Refused::NoWorkers(detail))) => job.fail_all(|func| TaskError::Internal {
                func: func.to_string(),
                detail: detail.clone(),
            }),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}
