//! Worker processes, host side: starting one ([`WorkerProcess::spawn`]), talking to it, noticing
//! its death, reaping it. Each worker has one owner, a driver thread ([`drive`]), which pulls
//! jobs from the pool's queue, runs them on its worker and replaces the worker when it dies.
//!
//! Invariants: every child is reaped by its owner (`Drop` kills and waits); a child's stderr is
//! drained on its own thread, so a noisy worker cannot block on a full pipe; a child gets
//! `PR_SET_PDEATHSIG`, so it dies with the thread that started it, which is the driver thread
//! that owns it (or the whole host, even on SIGKILL).

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, ExitCause, TaskError};
use crate::limits::{Resolved, kill_grace};
use crate::spin;
use crate::wire::{
    self, Code, HostMsg, Metering, ModuleId, PROTOCOL_VERSION, RunRef, WireError, WorkerMsg,
    WorkerSettings,
};

use super::scheduler::{Gather, Job, JobItem, Reported};
use super::{OutputSink, Shared};

/// How long a new worker may take to answer the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Items that usually finish within this get the next chunk sent ahead of their turn (see
/// [`WorkerProcess::is_quick`]).
const AHEAD_LIMIT: Duration = Duration::from_millis(1);
/// How many stderr lines of a worker are kept for the error that reports its death.
const STDERR_TAIL_LINES: usize = 20;

/// The program a worker runs as, and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct WorkerProgram {
    pub(crate) program: std::path::PathBuf,
    pub(crate) args: Vec<String>,
}

impl WorkerProgram {
    /// This very executable: the constructor in [`crate::worker`] makes it a worker.
    pub(crate) fn current_exe() -> Result<Self, Error> {
        crate::worker::ensure_worker_hook_linked();
        let program = std::env::current_exe().map_err(|e| Error::Spawn {
            program: "(current executable)".into(),
            detail: e.to_string(),
        })?;
        Ok(WorkerProgram {
            program,
            args: Vec::new(),
        })
    }
}

/// The pid of a worker that may still be signalled: `None` once its owner has reaped it, so a
/// recycled pid is never killed by mistake.
pub(crate) type PidSlot = Arc<Mutex<Option<u32>>>;

/// Sends SIGKILL to the worker in `slot`, if it is still unreaped.
pub(crate) fn kill_slot(slot: &PidSlot) {
    if let Some(pid) = *slot.lock().unwrap_or_else(|e| e.into_inner()) {
        // SAFETY: kill(2) on a pid that is our own unreaped child (the slot is cleared before reaping).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// One worker process and its pipes.
pub(crate) struct WorkerProcess {
    child: Child,
    pid: u32,
    slot: PidSlot,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    loaded: HashSet<(ModuleId, Metering)>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
    /// How long an item's outcome has recently taken to arrive (a moving average)...
    typical_wait: Duration,
    /// ...over how many outcomes so far.
    outcomes_seen: u64,
    /// The size of the pipe to the worker, in bytes.
    pipe_capacity: usize,
}

/// How a worker ended, and its last words.
pub(crate) struct Lost {
    pub(crate) cause: ExitCause,
    pub(crate) stderr_tail: String,
    pub(crate) detail: String,
}

/// A chunk stopped before all its items were reported.
pub(crate) struct Interrupted {
    /// The index in the job of the item that was running.
    pub(crate) at: usize,
    /// Why.
    pub(crate) why: Why,
    /// The worker, now reaped.
    pub(crate) lost: Lost,
}

impl Interrupted {
    /// The error of the task that was running: a timeout, or a crash after `attempts` tries.
    pub(crate) fn error(
        self,
        func: String,
        pid: u32,
        limits: &Resolved,
        attempts: u32,
    ) -> TaskError {
        match self.why {
            Why::Overran => TaskError::Timeout {
                func,
                limit: limits.timeout.unwrap_or_default(),
            },
            Why::Crashed => TaskError::WorkerCrashed {
                func,
                pid,
                cause: self.lost.cause,
                attempts,
                stderr_tail: self.lost.stderr_tail,
            },
        }
    }
}

pub(crate) enum Why {
    /// The worker died, or broke the protocol.
    Crashed,
    /// The worker did not answer within the running item's timeout plus a grace period,
    /// and was killed.
    Overran,
}

impl WorkerProcess {
    /// Starts a worker and completes the handshake.
    pub(crate) fn spawn(
        program: &WorkerProgram,
        settings: WorkerSettings,
        slot: PidSlot,
    ) -> Result<WorkerProcess, Error> {
        let spawn_error = |detail: String| Error::Spawn {
            program: program.program.display().to_string(),
            detail,
        };
        let mut command = Command::new(&program.program);
        // An empty environment, a process group of its own (a Ctrl-C at the terminal reaches
        // the host, which ends the workers itself), and the walls of `walls::child_walls`.
        command
            .args(&program.args)
            .env_clear()
            .env(crate::worker::WORKER_ENV, "1")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: child_walls makes only async-signal-safe calls.
        unsafe {
            command.pre_exec(move || crate::walls::child_walls(parent));
        }
        let mut child = command.spawn().map_err(|e| spawn_error(e.to_string()))?;
        let pid = child.id();
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let tail = Arc::clone(&stderr_tail);
        thread::Builder::new()
            .name(format!("wasmpool-stderr-{pid}"))
            .spawn(move || relay_stderr(pid, stderr, tail))
            .map_err(|e| spawn_error(e.to_string()))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        // SAFETY: fcntl on a pipe descriptor we own.
        let pipe_capacity = unsafe { libc::fcntl(stdin.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let mut worker = WorkerProcess {
            stdin: BufWriter::new(stdin),
            stdout: BufReader::with_capacity(
                1 << 16,
                child.stdout.take().expect("stdout is piped"),
            ),
            child,
            pid,
            slot,
            loaded: HashSet::new(),
            stderr_tail,
            read_buf: Vec::new(),
            write_buf: Vec::new(),
            typical_wait: Duration::ZERO,
            outcomes_seen: 0,
            pipe_capacity: usize::try_from(pipe_capacity).unwrap_or(4096),
        };
        worker.handshake(settings).map_err(|detail| {
            let lost = worker.reap();
            let tail = lost.stderr_tail;
            Error::Handshake(format!(
                "worker {pid} ({}): {detail}; it {}{}",
                program.program.display(),
                lost.cause,
                if tail.is_empty() {
                    String::new()
                } else {
                    format!("; its stderr:\n{tail}")
                }
            ))
        })?;
        Ok(worker)
    }

    fn handshake(&mut self, settings: WorkerSettings) -> Result<(), String> {
        let hello = HostMsg::Hello {
            version: PROTOCOL_VERSION,
            settings,
        };
        wire::write_frame(&mut self.stdin, &hello).map_err(|e| e.to_string())?;
        if !wait_readable(self.stdout.get_ref(), HANDSHAKE_TIMEOUT) {
            return Err(format!(
                "no answer to the handshake within {HANDSHAKE_TIMEOUT:?}"
            ));
        }
        match wire::read_frame::<WorkerMsg>(&mut self.stdout, &mut self.read_buf) {
            Ok(Some(WorkerMsg::Ready { version, .. })) if version == PROTOCOL_VERSION => Ok(()),
            Ok(Some(WorkerMsg::Ready { version, .. })) => Err(format!(
                "it speaks protocol version {version}, this host {PROTOCOL_VERSION}"
            )),
            Ok(Some(WorkerMsg::Refused { reason })) => Err(format!("it refused: {reason}")),
            Ok(Some(other)) => Err(format!("unexpected first message {other:?}")),
            Ok(None) => {
                Err("it closed its pipe without answering (is it a wasmpool worker?)".into())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Runs one job's items: [`WorkerProcess::send`], then [`WorkerProcess::collect`].
    pub(crate) fn run(
        &mut self,
        job: &Job,
        chunk_id: u64,
        deliver: impl FnMut(usize, Reported),
    ) -> Result<(), Interrupted> {
        self.send(job, chunk_id)?;
        self.collect(job, chunk_id, deliver)
    }

    /// Sends one job's items as a chunk (loading its module first if this worker has not
    /// seen it). The worker runs chunks in the order they were sent.
    pub(crate) fn send(&mut self, job: &Job, chunk_id: u64) -> Result<(), Interrupted> {
        self.send_chunk(job, chunk_id, None)
            .and_then(|_| self.flush())
            .map_err(|why| Interrupted {
                at: 0,
                why,
                lost: self.reap(),
            })
    }

    /// Whether this worker's items have been finishing quickly (within [`AHEAD_LIMIT`] each,
    /// recently): only then is a chunk sent ahead of its turn. For longer items the round trip
    /// it saves is noise, while a chunk sent ahead can no longer be cancelled and would wait
    /// behind a slow item while another worker idles.
    pub(crate) fn is_quick(&self) -> bool {
        self.outcomes_seen > 0 && self.typical_wait <= AHEAD_LIMIT
    }

    /// Whether this worker already has the job's module, so that the job can be sent while
    /// another chunk runs (a `Load` waits for its answer, which must not interleave).
    pub(crate) fn has_loaded(&self, job: &Job) -> bool {
        let metering = Metering::for_limits(&job.limits);
        self.loaded.contains(&(job.task.module().id(), metering))
    }

    /// Reads a sent job's outcomes, handing each frame of them to `deliver` with the index of
    /// its first item as it arrives. Stops at the first item whose worker dies, or does not
    /// answer within the item's timeout plus a grace period (the worker is then killed).
    pub(crate) fn collect(
        &mut self,
        job: &Job,
        chunk_id: u64,
        mut deliver: impl FnMut(usize, Reported),
    ) -> Result<(), Interrupted> {
        let mut next = 0;
        let result = (|| {
            let mut progress = Instant::now();
            while next < job.items.len() {
                let fd = self.stdout.get_ref();
                // Spin for the answer only when answers usually come within the spin: for
                // long items, spinning would only take a core from the workers.
                let spin = self.typical_wait <= spin::SPIN;
                if self.stdout.buffer().is_empty()
                    && !(spin && spin::spin_until_readable(fd))
                    && let Some(timeout) = job.limits.timeout
                {
                    let deadline = progress + timeout + kill_grace(timeout);
                    let left = deadline.saturating_duration_since(Instant::now());
                    if !wait_readable(fd, left) {
                        return Err(Why::Overran);
                    }
                }
                let left = job.items.len() - next;
                let reported = match wire::read_frame::<WorkerMsg>(
                    &mut self.stdout,
                    &mut self.read_buf,
                ) {
                    Ok(Some(WorkerMsg::Outcomes {
                        chunk_id: id,
                        first,
                        outcomes,
                    })) if id == chunk_id && first as usize == next && outcomes.len() <= left => {
                        Reported::Outcomes(outcomes)
                    }
                    Ok(Some(WorkerMsg::Results {
                        chunk_id: id,
                        first,
                        results,
                    })) if id == chunk_id && first as usize == next && results.len() <= left => {
                        results.check().map_err(|e| {
                            log::error!(target: "wasmpool::pool", "worker {}: {e}", self.pid);
                            Why::Crashed
                        })?;
                        Reported::Results(results)
                    }
                    Ok(other) => {
                        log::error!(target: "wasmpool::pool", "worker {}: unexpected reply {other:?}", self.pid);
                        return Err(Why::Crashed);
                    }
                    Err(e) => {
                        log::debug!(target: "wasmpool::pool", "worker {}: {e}", self.pid);
                        return Err(Why::Crashed);
                    }
                };
                let waited = progress.elapsed() / reported.len().max(1) as u32;
                self.typical_wait = (self.typical_wait * 3 + waited) / 4;
                self.outcomes_seen += reported.len() as u64;
                let first = next;
                next += reported.len();
                deliver(first, reported);
                progress = Instant::now();
            }
            Ok(())
        })();
        result.map_err(|why| Interrupted {
            at: next,
            why,
            lost: self.reap(),
        })
    }

    /// Writes the job as a chunk (after its module, if needed), without flushing it. With
    /// `room`, only if its frame takes at most that many bytes: ahead of its turn, a write
    /// that blocked while the worker blocks writing outcomes the host is not reading would
    /// deadlock both. The frame's size, or `None` if it did not fit.
    fn send_chunk(
        &mut self,
        job: &Job,
        chunk_id: u64,
        room: Option<usize>,
    ) -> Result<Option<usize>, Why> {
        let module = job.task.module();
        let result = (|| -> Result<Option<usize>, WireError> {
            let metering = Metering::for_limits(&job.limits);
            if !self.loaded.contains(&(module.id(), metering)) {
                // The host's compiled code when it has it; the worker compiles otherwise.
                let code = match module.code(metering) {
                    Ok(code) => Code::Precompiled(code.to_vec()),
                    Err(_) => Code::Wasm(module.bytes().to_vec()),
                };
                let load = HostMsg::Load {
                    id: module.id(),
                    kind: module.kind(),
                    code,
                    metering,
                };
                wire::encode_frame(&load, &mut self.write_buf)?;
                self.stdin.write_all(&self.write_buf)?;
                self.stdin.flush()?;
                match wire::read_frame::<WorkerMsg>(&mut self.stdout, &mut self.read_buf)? {
                    Some(WorkerMsg::Loaded { id }) if id == module.id() => {}
                    other => {
                        let detail = format!("expected Loaded, got {other:?}");
                        return Err(WireError::Io(std::io::Error::other(detail)));
                    }
                }
                self.loaded.insert((module.id(), metering));
            }
            let id = module.id();
            let chunk = RunRef {
                chunk_id,
                module: &id,
                func: job.task.name(),
                items: ArgsOf(&job.items),
                limits: &job.limits,
                grants: &job.grants,
                // Only the items of one caller's chunk may share an instance; gathered
                // single submissions come from separate calls.
                reuse_instance: job.task.reuses_instance() && job.gather == Gather::No,
            };
            wire::encode_frame(&chunk, &mut self.write_buf)?;
            if room.is_some_and(|room| self.write_buf.len() > room) {
                return Ok(None);
            }
            self.stdin.write_all(&self.write_buf)?;
            Ok(Some(self.write_buf.len()))
        })();
        result.map_err(|_| Why::Crashed)
    }

    /// Sends what was written to the worker.
    fn flush(&mut self) -> Result<(), Why> {
        self.stdin.flush().map_err(|_| Why::Crashed)
    }

    /// Clears the pid slot before the child is reaped, so nobody signals a recycled pid; a
    /// slot that already names a replacement worker is left alone.
    fn release_slot(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if *slot == Some(self.pid) {
            *slot = None;
        }
    }

    /// Kills (if needed) and reaps the worker; says how it ended.
    fn reap(&mut self) -> Lost {
        self.release_slot();
        let _ = self.child.kill();
        let cause = match self.child.wait() {
            Ok(status) => match (status.signal(), status.code()) {
                (Some(sig), _) => ExitCause::Signal(sig),
                (None, Some(code)) => ExitCause::Code(code),
                _ => ExitCause::Unknown,
            },
            Err(_) => ExitCause::Unknown,
        };
        // Let the stderr relay catch the dying words before they are read.
        thread::sleep(Duration::from_millis(5));
        let tail = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        Lost {
            cause,
            stderr_tail: tail.iter().cloned().collect::<Vec<_>>().join("\n"),
            detail: String::new(),
        }
    }

    /// Asks the worker to exit, and reaps it (killing it if it does not exit promptly).
    pub(crate) fn shutdown(mut self) {
        let _ = wire::write_frame(&mut self.stdin, &HostMsg::Shutdown);
        // A worker exits within a millisecond or so: poll finely at first, up to a second.
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut pause = Duration::from_micros(100);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        // Drop kills and reaps whatever is left.
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.release_slot();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The arguments of a job's items, serialized as the [`crate::wire::Chunk`]'s `items`.
struct ArgsOf<'a>(&'a [JobItem]);

impl serde::Serialize for ArgsOf<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        wire::Items::serialize_from(self.0.iter().map(|item| item.args.as_slice()), serializer)
    }
}

/// Copies a worker's stderr lines to the log and keeps the last few for error reports.
fn relay_stderr(pid: u32, stderr: std::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        log::warn!(target: "wasmpool::worker", "worker {pid}: {line}");
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Waits until `fd` has data to read (or is closed), for at most `timeout`.
pub(crate) fn wait_readable(fd: &impl AsRawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd on the stack.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            return n > 0;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// A job a driver has taken from the queue, and the chunk id it was sent under to the
/// current worker (`None`: not sent yet, or sent to a worker that has since died).
struct Held {
    job: Job,
    sent: Option<u64>,
    /// The size of its frame, when it was sent ahead of its turn.
    ahead_bytes: usize,
}

/// How many chunks a driver sends ahead of the running one, at most: enough for the worker
/// to go on through a driver's wake-up (tens of microseconds) when items take a few.
const MAX_AHEAD: usize = 8;
/// About how much work a driver sends ahead beyond the first chunk: enough to cover a
/// wake-up, little enough that the last chunks still spread over the workers.
const AHEAD_WORK: Duration = Duration::from_micros(200);

/// A driver thread's life: start a worker, then run jobs from the queue on it, replacing it
/// whenever it dies or has run its quota of tasks, until the queue is closed and empty or the
/// pool is terminated.
///
/// While a chunk of quick items runs, the driver sends the next one ahead when the queue
/// holds work for every driver, so that the worker goes from chunk to chunk without waiting
/// for a round trip to the host (for tasks of a few microseconds, that wait was most of the
/// time).
pub(crate) fn drive(
    shared: Arc<Shared>,
    slot: PidSlot,
    ready: crossbeam_channel::Sender<Result<u32, Error>>,
) {
    let mut worker = match WorkerProcess::spawn(&shared.program, shared.settings, Arc::clone(&slot))
    {
        Ok(w) => {
            let _ = ready.send(Ok(w.pid()));
            w
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    drop(ready);
    let mut ran_here = 0u64;
    // The running chunk, and those sent ahead.
    let mut held: VecDeque<Held> = VecDeque::new();
    // Taken before the last outcome this driver holds is handed out (see `JobQueue::next`).
    let mut turn = None;
    loop {
        if shared.is_terminating() {
            for h in held.drain(..) {
                h.job.cancel();
            }
        }
        if held.is_empty() {
            let turn = turn.take().unwrap_or_else(|| shared.queue.take_spin_turn());
            match shared.next_job(turn) {
                Some(job) => {
                    if let Some(job) = prepare(&shared, job) {
                        held.push_back(Held {
                            job,
                            sent: None,
                            ahead_bytes: 0,
                        });
                    }
                    continue;
                }
                None => break,
            }
        }
        let front = held.front_mut().expect("not empty");
        let sent = match front.sent {
            Some(id) => Ok(id),
            None => {
                let id = shared.next_chunk_id();
                let sent = worker.send(&front.job, id).map(|()| id);
                front.sent = sent.as_ref().ok().copied();
                sent
            }
        };
        let result = sent.and_then(|id| {
            if shared.max_tasks_per_worker.is_none() && worker.is_quick() {
                send_ahead(&shared, &mut worker, &mut held);
            }
            // A driver whose last held chunk ends goes idle right after handing out its
            // outcomes, unless it is to replace its worker first.
            let last_held = held.len() == 1 && shared.max_tasks_per_worker.is_none();
            let job = &held.front().expect("not empty").job;
            worker.collect(job, id, |first, reported| {
                for (i, stdout, stderr) in reported.output() {
                    let item = &job.items[first + i];
                    let name = job.task.name();
                    shared.output.relay(item.task_no, name, stdout, stderr);
                }
                if last_held && first + reported.len() == job.items.len() {
                    turn = Some(shared.queue.take_spin_turn());
                }
                reported.deliver(job, first, shared.settings.max_wasm_stack);
            })
        });
        match result {
            Ok(()) => {
                let done = held.pop_front().expect("not empty");
                ran_here += done.job.items.len() as u64;
                shared.recycle(done.job.items);
                if shared
                    .max_tasks_per_worker
                    .is_some_and(|max| ran_here >= max)
                {
                    worker.shutdown();
                    match respawn(&shared, &slot) {
                        Ok(w) => worker = w,
                        Err(e) => {
                            shared.driver_lost(&format!("no worker process could be started: {e}"));
                            return;
                        }
                    }
                    ran_here = 0;
                }
            }
            Err(stop) => {
                // The worker is gone: nothing held was sent to the next one.
                for h in held.iter_mut() {
                    h.sent = None;
                    h.ahead_bytes = 0;
                }
                let front = held.front_mut().expect("not empty");
                if !settle(&shared, &mut front.job, stop, worker.pid()) {
                    for h in held.drain(..) {
                        h.job.cancel();
                    }
                    return;
                }
                if front.job.items.is_empty() {
                    held.pop_front();
                }
                ran_here = 0;
                match respawn(&shared, &slot) {
                    Ok(w) => worker = w,
                    Err(e) => {
                        let detail = format!("no worker process could be started: {e}");
                        for h in held.drain(..) {
                            h.job.fail_all(|func| TaskError::Internal {
                                func: func.to_string(),
                                detail: detail.clone(),
                            });
                        }
                        shared.driver_lost(&detail);
                        return;
                    }
                }
            }
        }
    }
    worker.shutdown();
}

/// Readies a job taken from the queue: cancelled items are dropped, the others can no longer
/// be cancelled. `None` if nothing is left to run.
fn prepare(shared: &Shared, mut job: Job) -> Option<Job> {
    if shared.is_terminating() {
        job.cancel();
        return None;
    }
    // Only single submissions can be cancelled (see `Gather::No`).
    if job.gather == Gather::Yes {
        let items = std::mem::take(&mut job.items);
        job.items = items
            .into_iter()
            .filter(|item| !job.sink_of(item).is_cancelled(item.index))
            .collect();
        for item in &job.items {
            job.sink_of(item).start(item.index);
        }
    }
    (!job.items.is_empty()).then_some(job)
}

/// Takes more jobs from the queue while it holds at least as many per driver as this driver
/// holds (see [`super::queue::JobQueue::next_ahead`]), and sends them behind the running one
/// in one write: one chunk, then more while what is ahead is less than [`AHEAD_WORK`]
/// (by the worker's recent pace), up to [`MAX_AHEAD`] chunks, as long as the worker has their
/// module and all that is ahead fits in half the pipe. The first job that cannot be sent now stays
/// held, unsent, with none behind it: chunks are sent in the order they are collected.
fn send_ahead(shared: &Shared, worker: &mut WorkerProcess, held: &mut VecDeque<Held>) {
    if held.back().is_some_and(|h| h.sent.is_none()) {
        return;
    }
    let mut in_pipe: usize = held.iter().map(|h| h.ahead_bytes).sum();
    let items_ahead: usize = held.iter().skip(1).map(|h| h.job.items.len()).sum();
    let mut work_ahead = worker.typical_wait.saturating_mul(items_ahead as u32);
    let mut wrote = false;
    while held.len() == 1 || (held.len() <= MAX_AHEAD && work_ahead < AHEAD_WORK) {
        let Some(job) = shared
            .queue
            .next_ahead(shared.workers, held.len())
            .and_then(|job| prepare(shared, job))
        else {
            break;
        };
        let mut ahead = Held {
            job,
            sent: None,
            ahead_bytes: 0,
        };
        let room = (worker.pipe_capacity / 2).saturating_sub(in_pipe);
        if worker.has_loaded(&ahead.job) {
            let id = shared.next_chunk_id();
            // A failed send means the worker died: collecting the running chunk will tell.
            if let Ok(Some(bytes)) = worker.send_chunk(&ahead.job, id, Some(room)) {
                ahead.sent = Some(id);
                ahead.ahead_bytes = bytes;
                in_pipe += bytes;
                work_ahead += worker
                    .typical_wait
                    .saturating_mul(ahead.job.items.len() as u32);
                wrote = true;
            }
        }
        let sent = ahead.sent.is_some();
        held.push_back(ahead);
        if !sent {
            break;
        }
    }
    if wrote {
        let _ = worker.flush();
    }
}

/// Settles the item an interrupted chunk was running (a timeout, a crash, or a retry) and
/// leaves the items after it in `job`, to run on the next worker. `false` when the pool is
/// terminating: the caller cancels what it holds and stops.
fn settle(shared: &Shared, job: &mut Job, stop: Interrupted, pid: u32) -> bool {
    let mut rest = job.items.split_off(stop.at);
    let mut item = rest.remove(0);
    let func = job.task.name().to_string();
    if shared.is_terminating() {
        job.deliver(&item, Err(TaskError::Cancelled { func }));
        job.items = rest;
        return false;
    }
    match stop.why {
        Why::Overran => {
            log::warn!(target: "wasmpool::pool", "worker {pid} did not stop `{func}` at its timeout: killed");
            let error = stop.error(func, pid, &job.limits, item.crashes + 1);
            job.deliver(&item, Err(error));
        }
        Why::Crashed if item.crashes < shared.retries => {
            log::warn!(target: "wasmpool::pool", "worker {pid} {} running `{func}`: retrying it", stop.lost.cause);
            item.crashes += 1;
            rest.insert(0, item);
        }
        Why::Crashed => {
            log::warn!(target: "wasmpool::pool", "worker {pid} {} running `{func}` ({})", stop.lost.cause, stop.lost.detail);
            let error = stop.error(func, pid, &job.limits, item.crashes + 1);
            job.deliver(&item, Err(error));
        }
    }
    job.items = rest;
    true
}

/// Starts a replacement worker, retrying a few times with a pause.
fn respawn(shared: &Shared, slot: &PidSlot) -> Result<WorkerProcess, Error> {
    let mut last = Error::Closed;
    for attempt in 0..5u32 {
        if shared.is_terminating() {
            return Err(Error::Closed);
        }
        match WorkerProcess::spawn(&shared.program, shared.settings, Arc::clone(slot)) {
            Ok(w) => return Ok(w),
            Err(e) => {
                log::error!(target: "wasmpool::pool", "cannot start a replacement worker: {e}");
                last = e;
                thread::sleep(Duration::from_millis(50 << attempt));
            }
        }
    }
    Err(last)
}

impl OutputSink {
    /// Hands what a guest printed to the pool's output handler.
    pub(crate) fn relay(&self, task_no: u64, func: &str, stdout: &[u8], stderr: &[u8]) {
        for (stream, bytes) in [
            (super::Stream::Stdout, stdout),
            (super::Stream::Stderr, stderr),
        ] {
            if !bytes.is_empty() {
                let text = String::from_utf8_lossy(bytes);
                (self.0)(&super::GuestOutput {
                    task: task_no,
                    func,
                    stream,
                    text: &text,
                });
            }
        }
    }
}
