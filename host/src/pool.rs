//! The host side's public surface: [`Pool`] and [`PoolBuilder`].
//!
//! A pool owns N worker slots, each driven by one thread ([`driver`]) that starts the slot's
//! worker process ([`worker_process`], from its [`WorkerCommand`]) and pulls [`job::Job`]s from
//! one shared [`queue`]. Every API method turns its input into jobs (chunks of calls with
//! arguments checked against the signature), puts them on the queue, and hands back a handle
//! ([`handle`], [`imap`]) whose [`job::Sink`] receives the [`outcome`]s.

mod driver;
pub(crate) mod handle;
pub(crate) mod hosts;
pub(crate) mod imap;
pub(crate) mod job;
pub(crate) mod launcher;
pub(crate) mod link;
pub(crate) mod outcome;
pub(crate) mod output;
mod panic;
pub(crate) mod process;
pub(crate) mod queue;
mod shelf;
pub(crate) mod worker_command;
pub(crate) mod worker_process;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, TaskError};
use crate::limits::{DEFAULT_MAX_WASM_STACK, Grants, Limits, Resolved};
use crate::module::Task;
use crate::shared::SharedObjects;
use crate::values::json::{Names, results_json};
use crate::values::pack::Packer;
use crate::values::rust::args_from_serialize;
use crate::values::wire::Packed;
use crate::values::{Args, ArgsShape, Values};
use crate::wire::WorkerSettings;

use handle::{Batch, BatchShelves, MapResult, Slot, TaskFuture};
use hosts::HostHealth;
use imap::{Chunking, Imap, ImapJson, Order, StreamOptions};
use job::{Gather, Job, JobItem, PackedCalls, Sink, Spare, default_chunksize};
use launcher::Launcher;
use output::{GuestOutput, OutputSink};
use queue::{JobQueue, Refused};
use shelf::Shelf;
use worker_command::WorkerCommand;
use worker_process::{PidSlot, kill_slot};

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
    imap_chunksize: Option<usize>,
    max_chunks_in_flight: Option<usize>,
    command: Option<WorkerCommand>,
    output: Option<OutputSink>,
    /// Workers elsewhere: a launcher, the host it reaches, and how many slots there.
    remote: Vec<(Launcher, Option<String>, usize)>,
}

/// One worker slot as the pool starts it: its command, and for a slot on a remote host, what
/// the host's slots share.
struct SlotPlan {
    command: WorkerCommand,
    host: Option<Arc<HostHealth>>,
    /// The first slot of its source (the local workers, or one host), started at build.
    first: bool,
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
            .field("command", &self.command)
            .field("remote", &self.remote)
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
            imap_chunksize: None,
            max_chunks_in_flight: None,
            command: None,
            output: None,
            remote: Vec::new(),
        }
    }
}

impl PoolBuilder {
    /// How many worker processes. 0 (the default) means one per available core
    /// ([`std::thread::available_parallelism`]). With workers elsewhere ([`PoolBuilder::ssh`]
    /// and the like), this is the number of local ones, as [`PoolBuilder::local`] says.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// How many local worker processes, beside the remote ones: by default one per core
    /// when there are no remote workers, and none when there are.
    pub fn local(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// `slots` workers on `host` through ssh ([`Launcher::ssh`]: `ssh -T ... host wasmpool
    /// worker`, with your `~/.ssh/config`; keys or an agent, never a password prompt).
    ///
    /// # Examples
    /// ```no_run
    /// let pool = wasmpool::Pool::builder().local(2).ssh("node1", 4).ssh("node2", 8).build()?;
    /// # Ok::<(), wasmpool::Error>(())
    /// ```
    pub fn ssh(self, host: impl Into<String>, slots: usize) -> Self {
        self.remote(Launcher::ssh(), host, slots)
    }

    /// `slots` workers on Slurm node `node`, one job step each ([`Launcher::slurm`]).
    pub fn slurm(self, node: impl Into<String>, slots: usize) -> Self {
        self.remote(Launcher::slurm(), node, slots)
    }

    /// `slots` workers in Kubernetes pod `pod`, through `kubectl exec` ([`Launcher::kubectl`]).
    pub fn kubectl(self, pod: impl Into<String>, slots: usize) -> Self {
        self.remote(Launcher::kubectl(), pod, slots)
    }

    /// `slots` workers on `host`, reached through `launcher` (its `{host}` is `host`).
    pub fn remote(mut self, launcher: Launcher, host: impl Into<String>, slots: usize) -> Self {
        self.remote.push((launcher, Some(host.into()), slots));
        self
    }

    /// `slots` workers, each reached through `launcher`, whose template names no host (a
    /// command of your own: `Launcher::parse("ssh -p 2222 gw wasmpool worker")?`).
    pub fn launcher(mut self, launcher: Launcher, slots: usize) -> Self {
        self.remote.push((launcher, None, slots));
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

    /// Items per chunk for the streams (`imap`, `imap_unordered`, `imap_json`). By default
    /// the pool sizes them by how long items take: one item per chunk at first, so that a few
    /// slow items spread over all the workers at once, then as many as take about two
    /// milliseconds, so that tiny items still travel thousands to a round trip.
    pub fn imap_chunksize(mut self, n: usize) -> Self {
        self.imap_chunksize = Some(n.max(1));
        self
    }

    /// How many chunks a stream keeps queued or running at most (default: 3 per worker when
    /// the pool sizes the chunks; with a fixed [`PoolBuilder::imap_chunksize`], 2 per worker,
    /// and with small chunks as many as make 64 items per worker).
    pub fn max_chunks_in_flight(mut self, n: usize) -> Self {
        self.max_chunks_in_flight = Some(n.max(1));
        self
    }

    /// How each worker is started (default: [`WorkerCommand::default_command`]: this very
    /// executable, unless [`crate::set_worker_command`] named another). The program must serve
    /// wasmpool's worker protocol, as `wasmpool worker` does; see [`WorkerCommand`].
    pub fn worker_command(mut self, command: WorkerCommand) -> Self {
        self.command = Some(command);
        self
    }

    /// Where guests' stdout and stderr go, one call per stream per task as each task ends. By
    /// default to the `log` facade (target `wasmpool::guest`, level info), each line prefixed
    /// by its task (`[square#3] hello`): the library itself never prints.
    ///
    /// # Examples
    /// ```no_run
    /// let pool = wasmpool::Pool::builder()
    ///     .on_output(|out| eprint!("[task {}] {}", out.task, out.text))
    ///     .build()?;
    /// # Ok::<(), wasmpool::Error>(())
    /// ```
    pub fn on_output(mut self, handler: impl Fn(&GuestOutput<'_>) + Send + Sync + 'static) -> Self {
        self.output = Some(OutputSink::new(handler));
        self
    }

    /// Starts the pool: its first worker now (this returns once it has answered its
    /// handshake, so that a worker that cannot start is this call's error), the others as
    /// work comes for them, so that a pool of many slots given a few items starts a few
    /// workers.
    ///
    /// With workers from several sources (local ones, hosts through launchers), the first
    /// worker of each starts now, in parallel: a source whose first worker cannot start is
    /// given up (with an error in the log, `wasmpool::pool`) while the others go on, and
    /// this call fails only when no source could start a worker.
    pub fn build(self) -> Result<Pool, Error> {
        self.grants.check()?;
        let local = match self.workers {
            0 if self.remote.is_empty() => {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            }
            n => n,
        };
        let mut plans = Vec::new();
        if local > 0 {
            let command = match self.command {
                Some(command) => command,
                None => WorkerCommand::default_command()?,
            };
            plans.extend((0..local).map(|i| SlotPlan {
                command: command.clone(),
                host: None,
                first: i == 0,
            }));
        }
        for (launcher, host, slots) in &self.remote {
            let name = host
                .clone()
                .unwrap_or_else(|| launcher.template().join(" "));
            let health = Arc::new(HostHealth::new(name));
            for slot in 0..*slots {
                plans.push(SlotPlan {
                    command: launcher.command(host.as_deref(), slot)?,
                    host: Some(Arc::clone(&health)),
                    first: slot == 0,
                });
            }
        }
        if plans.is_empty() {
            return Err(Error::Spawn {
                program: "worker".into(),
                detail: "the pool has no worker slot: no local worker and no remote one".into(),
            });
        }
        let workers = plans.len();
        let settings = WorkerSettings {
            max_wasm_stack: self.max_wasm_stack,
            allow_files: !self.grants.dirs.is_empty(),
            lock_down: true,
            compile_memory: None,
        };
        let shared = Arc::new(Shared {
            limits: self.limits,
            grants: Arc::new(self.grants),
            task_numbers: AtomicU64::new(0),
            settings,
            retries: self.retries,
            max_tasks_per_worker: self.max_tasks_per_worker,
            queue: JobQueue::new(),
            workers,
            drivers_left: AtomicUsize::new(workers),
            terminating: AtomicBool::new(false),
            chunk_ids: AtomicU64::new(0),
            item_nanos: AtomicU64::new(0),
            link_chunks: Arc::new(AtomicUsize::new(0)),
            output: self.output.unwrap_or_default(),
            job_items: Shelf::default(),
            packed_args: Shelf::default(),
            outcome_slots: Arc::default(),
            objects: SharedObjects::new()?,
        });
        let pool = Pool {
            shared,
            drivers: Mutex::new(Vec::new()),
            workers,
            chunksize: self.chunksize,
            imap_chunking: Chunking::new(self.imap_chunksize, self.max_chunks_in_flight, workers),
        };
        let sources = plans.iter().filter(|plan| plan.first).count();
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(sources);
        for (i, plan) in plans.into_iter().enumerate() {
            let shared = Arc::clone(&pool.shared);
            let slot = PidSlot::default();
            let driver_slot = Arc::clone(&slot);
            // The first slot of each source starts its worker now, the others when work
            // comes for them.
            let start = match plan.first {
                true => driver::Start::Now(ready_tx.clone()),
                false => driver::Start::OnDemand,
            };
            let thread = std::thread::Builder::new()
                .name(format!("wasmpool-driver-{i}"))
                .spawn(move || driver::drive(shared, plan.command, plan.host, driver_slot, start))
                .map_err(|e| Error::Spawn {
                    program: "driver thread".into(),
                    detail: e.to_string(),
                })?;
            pool.lock_drivers().push(Driver { thread, pid: slot });
        }
        drop(ready_tx);
        let mut first_error = None;
        let mut started = 0;
        for _ in 0..sources {
            match ready_rx.recv() {
                Ok(Ok(_pid)) => started += 1,
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => break,
            }
        }
        match (started, first_error) {
            (0, Some(e)) => Err(e), // dropping `pool` ends the drivers started
            (0, None) => Err(Error::Spawn {
                program: "worker".into(),
                detail: "a driver thread died during start-up".into(),
            }),
            (_, _) => Ok(pool),
        }
    }
}

/// State shared by the pool, its driver threads and the threads that feed its streams.
pub(crate) struct Shared {
    settings: WorkerSettings,
    /// The pool's shared objects (see [`crate::shared`]).
    pub(crate) objects: Arc<SharedObjects>,
    /// The pool's limits and grants, for tasks without their own.
    limits: Limits,
    grants: Arc<Grants>,
    /// The next task's number in the pool, in submission order.
    task_numbers: AtomicU64,
    retries: u32,
    max_tasks_per_worker: Option<u64>,
    queue: JobQueue,
    /// How many drivers share the queue.
    workers: usize,
    /// Drivers that have not given up (see [`Shared::driver_lost`]).
    drivers_left: AtomicUsize,
    terminating: AtomicBool,
    chunk_ids: AtomicU64,
    /// How long an item has recently taken on a worker, in nanoseconds (0: not known yet), as
    /// the drivers last saw it: what the streams size their chunks by.
    item_nanos: AtomicU64,
    /// How many more chunks the streams keep in flight so that the remote workers' links'
    /// round trips are covered (see [`worker_process::WorkerProcess::cover_link`]).
    link_chunks: Arc<AtomicUsize>,
    output: OutputSink,
    /// Emptied item vectors and packed arguments of finished chunks, and outcome slots of
    /// finished maps, for the next map (see [`shelf`]).
    job_items: Shelf<JobItem>,
    packed_args: Shelf<u8>,
    outcome_slots: Arc<BatchShelves>,
}

impl Shared {
    pub(crate) fn is_terminating(&self) -> bool {
        self.terminating.load(Ordering::Acquire)
    }

    /// Keeps a finished job's item vector, or its packed arguments' bytes, for a later one.
    pub(crate) fn recycle(&self, job: Job) {
        match job.into_spare() {
            Spare::Items(items) => self.job_items.put(items),
            Spare::Bytes(bytes) => self.packed_args.put(bytes),
        }
    }

    /// Notes how long items have recently taken on a worker.
    pub(crate) fn note_item_time(&self, time: std::time::Duration) {
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.item_nanos.store(nanos, Ordering::Relaxed);
    }

    /// How long items have recently taken on a worker, once one has been measured.
    pub(crate) fn item_time(&self) -> Option<std::time::Duration> {
        match self.item_nanos.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(std::time::Duration::from_nanos(nanos)),
        }
    }

    /// The chunks the streams add to their bound for the remote workers' links.
    pub(crate) fn link_chunks(&self) -> usize {
        self.link_chunks.load(Ordering::Relaxed)
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

    /// Fails the items whose arguments do not fit the task's signature at once, and queues
    /// the rest as one job.
    pub(crate) fn enqueue(
        &self,
        task: &Task,
        items: impl ExactSizeIterator<Item = CheckedItem>,
        sink: Arc<dyn Sink>,
        gather: Gather,
    ) {
        let first = self
            .task_numbers
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        // A chunk's items share its sink; a single submission's item (which the queue may
        // gather with others) carries its own.
        let (job_sink, item_sink) = match gather {
            Gather::No => (Some(Arc::clone(&sink)), None),
            Gather::Yes => (None, Some(Arc::clone(&sink))),
        };
        let mut job_items = self.job_items.take(items.len());
        for (n, item) in items.enumerate() {
            match item.args {
                Ok(args) => job_items.push(JobItem {
                    index: item.index,
                    task_no: first + n as u64,
                    args,
                    crashes: 0,
                    sink: item_sink.clone(),
                }),
                Err(error) => sink.deliver(item.index, Err(error)),
            }
        }
        if job_items.is_empty() {
            return;
        }
        let (limits, grants) = self.limits_and_grants(task);
        self.push(Job::new(
            task.clone(),
            job_items,
            gather,
            limits,
            grants,
            job_sink,
        ));
    }

    /// Queues a chunk of a `map` whose arguments are already checked and packed (see
    /// [`Packer`]), the first at `index` in `sink`, as one job.
    pub(crate) fn enqueue_packed(
        &self,
        task: &Task,
        index: usize,
        args: Packed,
        sink: Arc<dyn Sink>,
    ) {
        if args.len() == 0 {
            return;
        }
        let task_no = self
            .task_numbers
            .fetch_add(args.len() as u64, Ordering::Relaxed);
        let (limits, grants) = self.limits_and_grants(task);
        let calls = PackedCalls {
            index,
            task_no,
            args,
        };
        self.push(Job::packed(task.clone(), calls, limits, grants, sink));
    }

    /// The limits (the task's over the pool's, resolved) and grants a job of `task` runs with.
    fn limits_and_grants(&self, task: &Task) -> (Resolved, Arc<Grants>) {
        let grants = task
            .grants()
            .cloned()
            .unwrap_or_else(|| Arc::clone(&self.grants));
        (task.limits().or(self.limits).resolve(), grants)
    }

    /// Queues `job`, or fails all its items at once if its grants cannot be honoured or the
    /// pool takes no more work.
    fn push(&self, job: Job) {
        let grants = &job.grants;
        if !grants.dirs.is_empty() && !self.settings.allow_files {
            let detail =
                "this task is granted directories, but the pool's workers were started without \
                          file access: grant a directory on the pool (PoolBuilder::grants) too"
                    .to_string();
            return job.fail_all(|func| TaskError::Sandbox {
                func: func.to_string(),
                detail: detail.clone(),
            });
        }
        if let Some(foreign) = grants.shared.iter().find(|g| g.pool != self.objects.id()) {
            let detail = format!(
                "the shared object granted as `{}` belongs to another pool: a pool's tasks \
                 reach only that pool's objects",
                foreign.name
            );
            return job.fail_all(|func| TaskError::Sandbox {
                func: func.to_string(),
                detail: detail.clone(),
            });
        }
        match self.queue.push(job) {
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

    /// The next job for a driver that took `turn` to spin for it; `None` once the pool is
    /// closed and the queue drained.
    pub(crate) fn next_job(&self, turn: queue::SpinTurn<'_>) -> Option<Job> {
        let give_back_spares = || {
            self.job_items.clear();
            self.packed_args.clear();
            self.outcome_slots.clear();
        };
        self.queue
            .next(self.workers, turn, (shelf::IDLE, give_back_spares))
    }
}

struct Driver {
    thread: JoinHandle<()>,
    pid: PidSlot,
}

/// An argument list checked against the task's signature (or why it does not fit), with its
/// place in the caller's input, waiting to be queued.
pub(crate) struct CheckedItem {
    pub(crate) index: usize,
    pub(crate) args: Result<Values, TaskError>,
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
/// let square = wasmpool::Module::from_file("square.wasm")?.task("square")?;
/// let squares: Vec<i64> = pool.map(&square, 0..10_i64)?;
/// assert_eq!(squares[9], 81);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    drivers: Mutex<Vec<Driver>>,
    workers: usize,
    chunksize: Option<usize>,
    imap_chunking: Chunking,
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

    /// How many worker slots the pool has: how many worker processes it runs at most.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The process ids of the current workers (a replaced worker has a new pid): those that
    /// have started, as workers start when work first comes for them.
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
        self.map_async(task, items).result()
    }

    /// Maps a batch export over `items`: for `f: func(xs: list<T>) -> list<R>`, each item is
    /// a `T` and each result an `R`, as [`Pool::map`] of `func(x: T) -> R` would give them
    /// (in input order, or the first error in input order), but each chunk is one call of
    /// `f` with the chunk's items as its list. For tiny items, many times faster than one
    /// call each. A failing item fails alone, with its own error; [`Task::batched`] says what
    /// that costs, how limits apply and what else differs. An export of another shape is the
    /// [`TaskError::BadInput`] of every item, which says why, and nothing is run.
    ///
    /// # Examples
    /// ```no_run
    /// # let pool = wasmpool::Pool::new()?;
    /// // square-many: func(xs: list<s64>) -> list<s64>
    /// let square_many = wasmpool::Module::from_file("square.wasm")?.task("square-many")?;
    /// let squares: Vec<i64> = pool.map_batched(&square_many, 0..1_000_000_i64)?;
    /// assert_eq!(squares[12], 144);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map_batched<T: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>, TaskError> {
        let batched = task.batched().map_err(|e| not_batchable(task, e))?;
        self.map(&batched, items)
    }

    /// Like [`Pool::imap`] over a batch export's elements, as [`Pool::map_batched`] maps
    /// them: lazy, in input order, one outcome per item, each chunk one call of the export
    /// (use [`Pool::imap_unordered`] with [`Task::batched`] for completion order). For an
    /// export of another shape, every item's outcome is the [`TaskError::BadInput`] that says
    /// why.
    pub fn imap_batched<'a, T: Serialize + 'a, R: DeserializeOwned>(
        &'a self,
        task: &Task,
        items: impl IntoIterator<Item = T> + 'a,
    ) -> Imap<'a, R> {
        match task.batched() {
            Ok(batched) => self.imap(&batched, items),
            Err(e) => {
                let error = not_batchable(task, e);
                let input = items.into_iter().map(move |_| Err(error.clone()));
                Imap::new(self, task, Box::new(input), Order::Input)
            }
        }
    }

    /// [`Pool::map`] with an explicit chunk size (items per round trip to a worker).
    pub fn map_chunked<T: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> Result<Vec<R>, TaskError> {
        self.submit_batch(task, items, ArgsShape::Single, Some(chunksize))
            .result()
    }

    /// Like [`Pool::map`], but each item is a tuple spread over the task's parameters:
    /// `starmap(&power, [(2, 3), (3, 2)])` calls `power(2, 3)` and `power(3, 2)`.
    pub fn starmap<T: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        items: impl IntoIterator<Item = T>,
    ) -> Result<Vec<R>, TaskError> {
        self.submit_batch(task, items, ArgsShape::Spread, self.chunksize)
            .result()
    }

    /// [`Pool::starmap_async`] with an explicit chunk size (items per round trip to a
    /// worker), as [`Pool::map_chunked`] is [`Pool::map`] with one: Python's
    /// `starmap_async(f, items, chunksize)`.
    pub fn starmap_chunked_async<T: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> MapResult<R> {
        self.submit_batch(task, items, ArgsShape::Spread, Some(chunksize))
    }

    /// [`Pool::map_async`] with an explicit chunk size: Python's `map_async(f, items,
    /// chunksize)`.
    pub fn map_chunked_async<T: Serialize, R: DeserializeOwned>(
        &self,
        task: &Task,
        items: impl IntoIterator<Item = T>,
        chunksize: usize,
    ) -> MapResult<R> {
        self.submit_batch(task, items, ArgsShape::Single, Some(chunksize))
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
        let args = args_from_serialize(task.signature(), &args, ArgsShape::Spread);
        TaskFuture::new(self.submit_values(task, args.map_err(|e| e.for_task(task.name()))))
    }

    /// Calls `task` once with arguments already checked ([`Task::args_from_json`]) and waits
    /// for it; the results as JSON with WIT's names (`null` for none, the value for one, an
    /// array for several). This is the command line's `run`.
    ///
    /// # Examples
    /// ```no_run
    /// # let pool = wasmpool::Pool::new()?;
    /// let power = wasmpool::Module::from_file("power.wasm")?.task("power")?;
    /// let args = power.args_from_json(&serde_json::json!([2, 10]))?;
    /// assert_eq!(pool.apply_json(&power, args)?, serde_json::json!(1024));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply_json(&self, task: &Task, args: Args) -> Result<serde_json::Value, TaskError> {
        let slot = self.submit_values(task, task.accept(args));
        slot.wait_outcome(|outcome| match outcome {
            Ok(results) => Ok(results_json(results, Names::Wit)),
            Err(e) => Err(e.clone()),
        })
    }

    /// One call of `task`, queued to be gathered with its neighbours.
    fn submit_values(&self, task: &Task, args: Result<Values, TaskError>) -> Arc<Slot> {
        let slot = Slot::new(task.name());
        let item = CheckedItem { index: 0, args };
        self.shared
            .enqueue(task, std::iter::once(item), slot.clone(), Gather::Yes);
        slot
    }

    /// A lazy, ordered stream of outcomes over an iterator of any length, with a bounded
    /// number of chunks in flight: the input is read only as fast as results are consumed.
    pub fn imap<'a, T: Serialize + 'a, R: DeserializeOwned>(
        &'a self,
        task: &Task,
        items: impl IntoIterator<Item = T> + 'a,
    ) -> Imap<'a, R> {
        Imap::new(self, task, self.checked(task, items), Order::Input)
    }

    /// Like [`Pool::imap`], but yields outcomes as tasks finish, in any order.
    pub fn imap_unordered<'a, T: Serialize + 'a, R: DeserializeOwned>(
        &'a self,
        task: &Task,
        items: impl IntoIterator<Item = T> + 'a,
    ) -> Imap<'a, R> {
        Imap::new(self, task, self.checked(task, items), Order::Completion)
    }

    /// A lazy stream like [`Pool::imap`] over arguments already checked (see
    /// [`Task::args_from_json`] and [`Task::arg_from_json`]), each outcome as JSON with WIT's
    /// names and its position in the input, in `order`. An item that is already an error (a
    /// line that could not be parsed, say) is that item's outcome, in its place. The input is
    /// pulled on a thread of its own (hence `Send + 'static`), so that however slowly it
    /// comes, an outcome is yielded as soon as its task ends. This is the command line's
    /// `map`.
    ///
    /// # Examples
    /// ```no_run
    /// use wasmpool::Order;
    /// # let pool = wasmpool::Pool::new()?;
    /// let square = wasmpool::Module::from_file("square.wasm")?.task("square")?;
    /// let lines = ["3", "4", "five"];
    /// let checker = square.clone();
    /// let args = lines.into_iter().map(move |line| {
    ///     let json = serde_json::from_str(line).unwrap_or(serde_json::Value::Null);
    ///     checker.arg_from_json(&json)
    /// });
    /// for outcome in pool.imap_json(&square, args, Order::Input) {
    ///     println!("{}: {:?}", outcome.index, outcome.result);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap_json<I>(&self, task: &Task, items: I, order: Order) -> ImapJson<'_>
    where
        I: IntoIterator<Item = Result<Args, TaskError>>,
        I::IntoIter: Send + 'static,
    {
        self.imap_json_with(task, items, StreamOptions::new().order(order))
    }

    /// [`Pool::imap_json`] as `options` say: in which order, and whether each outcome carries
    /// what its call printed and its time ([`crate::JsonOutcome::captured`]).
    ///
    /// # Examples
    /// ```no_run
    /// use wasmpool::{Module, Pool, StreamOptions};
    /// let pool = Pool::builder().workers(2).build()?;
    /// let hello = Module::from_file("hello.wasm")?.task("hello")?;
    /// let names = ["Ada", "Grace"].map(|n| hello.arg_from_json(&serde_json::json!(n)));
    /// let options = StreamOptions::new().capture_output(true);
    /// for outcome in pool.imap_json_with(&hello, names, options) {
    ///     let captured = outcome.captured.unwrap_or_default();
    ///     println!("{:?} printed {:?}", outcome.result, String::from_utf8_lossy(&captured.stdout));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn imap_json_with<I>(&self, task: &Task, items: I, options: StreamOptions) -> ImapJson<'_>
    where
        I: IntoIterator<Item = Result<Args, TaskError>>,
        I::IntoIter: Send + 'static,
    {
        let checker = task.clone();
        let input = items
            .into_iter()
            .map(move |args| args.and_then(|args| checker.accept(args)));
        ImapJson::new(self, task, Box::new(input), options)
    }

    /// Each item's arguments checked against `task`'s signature, lazily.
    fn checked<'a, T: Serialize + 'a>(
        &self,
        task: &Task,
        items: impl IntoIterator<Item = T> + 'a,
    ) -> Box<dyn Iterator<Item = Result<Values, TaskError>> + 'a> {
        let checker = task.clone();
        Box::new(items.into_iter().map(move |item| {
            args_from_serialize(checker.signature(), &item, ArgsShape::Single)
                .map_err(|e| e.for_task(checker.name()))
        }))
    }

    /// Stops new submissions; queued and running tasks still finish. Later submissions fail
    /// with [`TaskError::PoolClosed`].
    pub fn close(&self) {
        self.shared.queue.close();
    }

    /// The pool's shared objects, which [`crate::shared`]'s makers add to.
    pub(crate) fn shared_objects(&self) -> &Arc<SharedObjects> {
        &self.shared.objects
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
        self.shared.objects.close();
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
        // Numbers go straight into the wire's packed form, a chunk at a time; a chunk with an
        // item the packer leaves to the general route takes that route whole.
        let packer = Packer::new(task.signature(), shape);
        let mut items = items.peekable();
        let mut queued = 0;
        let mut chunk: Vec<T> = Vec::new();
        while items.peek().is_some() {
            chunk.clear();
            chunk.extend(items.by_ref().take(chunksize));
            let first = queued;
            queued += chunk.len();
            if queued > len {
                batch.reserve_to(queued);
            }
            let packed = packer.as_ref().and_then(|p| {
                let spare = self.shared.packed_args.take(p.bytes_for(chunk.len()));
                p.pack_all(&chunk, spare)
            });
            if let Some(args) = packed {
                self.shared.enqueue_packed(task, first, args, batch.clone());
                continue;
            }
            let prepared = chunk.iter().enumerate().map(|(i, item)| CheckedItem {
                index: first + i,
                args: args_from_serialize(task.signature(), item, shape)
                    .map_err(|e| e.for_task(task.name())),
            });
            self.shared
                .enqueue(task, prepared, batch.clone(), Gather::No);
        }
        batch.seal(queued);
        MapResult::new(batch)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The error of every item of a batch map over an export that is no batch export.
fn not_batchable(task: &Task, error: Error) -> TaskError {
    TaskError::BadInput {
        func: task.name().to_string(),
        detail: error.to_string(),
        param: None,
    }
}
