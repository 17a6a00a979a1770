//! One worker process, host side: starting it from its [`WorkerCommand`], the handshake,
//! sending it chunks, reading their outcomes, noticing its death, reaping it.
//!
//! Invariants: every child has exactly one owner, the thread that started it (a driver, or a
//! [`crate::Process`]'s thread), which reaps it (`Drop` kills and waits); a child gets
//! `PR_SET_PDEATHSIG`, so it dies with that thread, or with the whole host even on SIGKILL; a
//! child's stderr is drained on its own thread, so a noisy worker cannot block on a full pipe,
//! and the owner joins that thread when it reaps the child, so the worker's last words are in
//! the error that reports its death.

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::engine::Metering;
use crate::error::{Error, ExitCause, TaskError};
use crate::limits::{Resolved, kill_grace};
use crate::shared::SharedObjects;
use crate::shared_code::CodeFile;
use crate::spin;
use crate::wire::{
    self, Code, EngineInfo, HostMsg, LinkSettings, MAX_FRAME_BYTES, ModuleId, PROTOCOL_VERSION,
    RunRef, WASMPOOL_VERSION, WireError, WorkerMsg, WorkerSettings,
};

use super::job::{Gather, Job};
use super::link::{LinkReader, LinkState};
use super::outcome::Reported;
use super::worker_command::WorkerCommand;

/// The largest write buffer kept from one frame to the next.
const KEPT_BUFFER: usize = 1 << 20;
/// How often a worker that has not answered its handshake yet is reported as still starting.
const STARTUP_NOTICE: Duration = Duration::from_secs(5);
/// How many stderr lines of a worker are kept for the error that reports its death.
const STDERR_TAIL_LINES: usize = 20;
/// How long a reaped worker's stderr relay may take to read the last of the pipe. It ends as
/// soon as the pipe closes, which is when the worker is reaped, unless something else still
/// holds the pipe open (then its last lines are given up on).
const STDERR_DRAIN: Duration = Duration::from_millis(500);

/// The pid of a worker that may still be signalled: `None` once its owner has reaped it, so a
/// recycled pid is never killed by mistake.
pub(crate) type PidSlot = Arc<Mutex<Option<u32>>>;

/// Sends SIGKILL to the worker in `slot`, if it is still unreaped.
pub(crate) fn kill_slot(slot: &PidSlot) {
    if let Some(pid) = *slot.lock().unwrap_or_else(|e| e.into_inner()) {
        // SAFETY: kill(2) on a pid that is our own unreaped child (the slot is cleared before
        // reaping).
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
    /// Shared with the link thread of a launched worker, which writes heartbeats between
    /// the driver's frames (see [`crate::pool::link`]).
    stdin: Arc<Mutex<BufWriter<ChildStdin>>>,
    stdout: Stdout,
    /// A launched worker's link, shared with its link thread.
    link: Option<Arc<LinkState>>,
    /// What a launched worker's engine can run (`None`: a local worker, the host's own).
    engine: Option<EngineInfo>,
    /// The streams' extra chunks this worker's link counts for (see `cover_link`).
    covers: Option<(Arc<std::sync::atomic::AtomicUsize>, usize)>,
    /// A launched worker's own pid on its machine, and the host it runs on.
    remote: Option<(u32, String)>,
    /// The round trip of a launched worker's link, measured after its handshake (zero for a
    /// local worker).
    pub(crate) rtt: Duration,
    loaded: HashSet<(ModuleId, Metering)>,
    /// The host's end of the worker's stderr, a unix socket, over which it sends the worker
    /// code descriptors (see [`crate::shared_code`]): `None` if the worker cannot take them.
    code_socket: Option<UnixStream>,
    /// Code of at least this many bytes goes as a descriptor, when it can.
    share_code_above: usize,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Disconnects when the stderr relay thread has read the pipe to its end.
    stderr_done: crossbeam_channel::Receiver<()>,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
    /// How long an item's outcome has recently taken to arrive (a moving average)...
    pub(crate) typical_wait: Duration,
    /// ...over how many outcomes so far.
    outcomes_seen: u64,
    /// The size of the pipe to the worker, in bytes.
    pub(crate) pipe_capacity: usize,
    /// The pool's shared objects, once this worker was given them: a dead worker's locks are
    /// released through them when it is reaped.
    objects: Option<Arc<SharedObjects>>,
}

/// Where a worker's frames are read from: its pipe, or for a launched worker the link
/// thread that reads that pipe.
enum Stdout {
    Pipe(BufReader<ChildStdout>),
    Link(LinkReader),
}

impl Read for Stdout {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stdout::Pipe(pipe) => pipe.read(buf),
            Stdout::Link(link) => link.read(buf),
        }
    }
}

impl Stdout {
    /// Whether nothing is buffered on this side of the pipe.
    fn nothing_buffered(&self) -> bool {
        match self {
            Stdout::Pipe(pipe) => pipe.buffer().is_empty(),
            Stdout::Link(link) => !link.has_pending(),
        }
    }

    /// Spins briefly for bytes (see [`crate::spin`]); a link only looks.
    fn spin_until_readable(&self) -> bool {
        match self {
            Stdout::Pipe(pipe) => spin::spin_until_readable(pipe.get_ref()),
            Stdout::Link(link) => link.has_pending(),
        }
    }

    /// Waits up to `timeout` for bytes, or the end of the stream.
    fn wait_readable(&mut self, timeout: Duration) -> bool {
        match self {
            Stdout::Pipe(pipe) => {
                !pipe.buffer().is_empty() || wait_readable(pipe.get_ref(), timeout)
            }
            Stdout::Link(link) => link.wait_readable(timeout),
        }
    }
}

/// How a worker ended, and its last words.
#[derive(Debug)]
pub(crate) struct Lost {
    pub(crate) cause: ExitCause,
    pub(crate) stderr_tail: String,
    /// What the host saw that ended it: its pipe closing, a frame it could not read...
    pub(crate) detail: String,
}

/// A chunk stopped before all its items were reported.
#[derive(Debug)]
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
                detail: self.lost.detail,
                stderr_tail: self.lost.stderr_tail,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// The worker died, or broke the protocol.
    Crashed,
    /// The worker did not answer within the running item's timeout plus a grace period,
    /// and was killed.
    Overran,
}

/// Why a chunk could not be sent.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Its frame (or its module's) would be larger than a frame may be: the caller's to mend
    /// (fewer items per chunk, smaller arguments). Nothing was written; the worker is fine.
    TooLarge {
        /// The frame's size.
        bytes: usize,
        /// Whether it was the module's code, not the chunk, that did not fit.
        module: bool,
    },
    /// The worker is gone.
    Lost(Interrupted),
}

impl SendError {
    /// The error of a task whose chunk (or module, with `module`) took `bytes`, more than a
    /// frame may: its arguments are the caller's to mend; a module that large cannot be sent.
    pub(crate) fn too_large(func: &str, bytes: usize, module: bool) -> TaskError {
        let func = func.to_string();
        let limit = MAX_FRAME_BYTES;
        if module {
            TaskError::Internal {
                func,
                detail: format!(
                    "the module is too large to send to a worker: {bytes} bytes, over the \
                     {limit}-byte limit of a frame"
                ),
            }
        } else {
            TaskError::ArgsTooLarge {
                func,
                size: bytes as u64,
                limit: limit as u64,
            }
        }
    }
}

/// A failure inside [`WorkerProcess::send_chunk`], before it is decided what it means.
pub(crate) enum SendFault {
    TooLarge { bytes: usize, module: bool },
    Broken(String),
}

impl From<WireError> for SendFault {
    fn from(e: WireError) -> Self {
        match e {
            WireError::TooLarge(bytes) => SendFault::TooLarge {
                bytes,
                module: false,
            },
            other => SendFault::Broken(format!("the host could not write to it: {other}")),
        }
    }
}

impl From<std::io::Error> for SendFault {
    fn from(e: std::io::Error) -> Self {
        SendFault::Broken(format!("the host could not write to it: {e}"))
    }
}

impl WorkerProcess {
    /// Starts a worker from `command` and completes the handshake.
    pub(crate) fn spawn(
        command: &WorkerCommand,
        settings: WorkerSettings,
        slot: PidSlot,
        objects: Option<&Arc<SharedObjects>>,
    ) -> Result<WorkerProcess, Error> {
        let spawn_error = |detail: String| Error::Spawn {
            program: command.describe(),
            detail,
        };
        let launched = command.link();
        let mut process = Command::new(command.program());
        // An empty environment but for the worker switch, which names this host (the worker
        // raises its walls first thing, `walls::first_walls`, and checks it is still our
        // child), and a process group of its own (a Ctrl-C at the terminal reaches the host,
        // which ends the workers itself). No code runs between fork and exec, so the standard
        // library starts it with `posix_spawn`.
        // Its stderr is a unix socket rather than a pipe: the worker writes its last words to
        // it as to a pipe, and the host sends it code descriptors the other way (see
        // `crate::shared_code`). Both ends are close-on-exec here; the child's is its fd 2.
        let (code_socket, worker_end) = UnixStream::pair()
            .map_err(|e| spawn_error(format!("no socket for its stderr: {e}")))?;
        let stderr = code_socket
            .try_clone()
            .map_err(|e| spawn_error(format!("no socket for its stderr: {e}")))?;
        process.args(command.arguments());
        // A launcher (ssh, srun, kubectl) keeps the host's environment, which it needs; the
        // worker it reaches clears its own (see `worker::worker_main`).
        if launched.is_none() {
            process
                .env_clear()
                .env(crate::worker::WORKER_ENV, std::process::id().to_string());
        }
        process
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::os::fd::OwnedFd::from(worker_end)));
        let spawned = process.spawn();
        // Our copy of the worker's end goes now, so that its stderr ends when the worker does.
        drop(process);
        let mut child = spawned.map_err(|e| spawn_error(e.to_string()))?;
        let pid = child.id();
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr_tail);
        let (done_tx, stderr_done) = crossbeam_channel::bounded(0);
        thread::Builder::new()
            .name(format!("wasmpool-stderr-{pid}"))
            .spawn(move || {
                relay_stderr(pid, stderr, tail);
                drop(done_tx);
            })
            .map_err(|e| spawn_error(e.to_string()))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        // SAFETY: fcntl on a pipe descriptor we own.
        let pipe_capacity = unsafe { libc::fcntl(stdin.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let stdin = Arc::new(Mutex::new(BufWriter::new(stdin)));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (stdout, link) = match launched {
            Some(config) => {
                let (reader, state) =
                    super::link::start(stdout, Arc::clone(&stdin), pid, Arc::clone(&slot), config)
                        .map_err(|e| spawn_error(format!("cannot start its link thread: {e}")))?;
                (Stdout::Link(reader), Some(state))
            }
            None => (
                Stdout::Pipe(BufReader::with_capacity(1 << 16, stdout)),
                None,
            ),
        };
        let mut worker = WorkerProcess {
            stdin,
            stdout,
            link,
            engine: None,
            covers: None,
            remote: None,
            rtt: Duration::ZERO,
            child,
            pid,
            slot,
            loaded: HashSet::new(),
            // A launcher's stderr is not the worker's: no descriptor can reach the worker.
            code_socket: launched.is_none().then_some(code_socket),
            share_code_above: command.code_sharing_threshold(),
            stderr_tail,
            stderr_done,
            read_buf: Vec::new(),
            write_buf: Vec::new(),
            typical_wait: Duration::ZERO,
            outcomes_seen: 0,
            pipe_capacity: usize::try_from(pipe_capacity).unwrap_or(4096),
            objects: None,
        };
        worker.handshake(settings, command).map_err(|detail| {
            let lost = worker.reap(detail.clone());
            let tail = lost.stderr_tail;
            let detail = lost.detail;
            Error::Handshake(format!(
                "worker {pid} (`{}`): {detail}; it {}{}",
                command.describe(),
                lost.cause,
                if tail.is_empty() {
                    String::new()
                } else {
                    format!("; its stderr:\n{tail}")
                }
            ))
        })?;
        if let Some(objects) = objects {
            worker.share_objects(objects).map_err(|detail| {
                let lost = worker.reap(detail.clone());
                Error::Handshake(format!("worker {pid}: {detail}; it {}", lost.cause))
            })?;
        }
        Ok(worker)
    }

    /// Gives the worker the pool's shared state (see [`crate::shared`]). A local worker gets
    /// the region's descriptor and its end of a new shared-state socket, on its stderr, then
    /// the `Shared` frame that announces them, and a thread that serves its dict requests. A
    /// worker behind a launcher, which cannot receive descriptors, gets the frame alone: its
    /// tasks' every use of an object is then a request over its link, which the link thread
    /// serves (see [`crate::shared::remote`]).
    fn share_objects(&mut self, objects: &Arc<SharedObjects>) -> Result<(), String> {
        let pool = objects.id();
        match (&self.code_socket, &self.link) {
            (Some(code_socket), _) => {
                let (host_end, worker_end) =
                    UnixStream::pair().map_err(|e| format!("no shared-state socket: {e}"))?;
                crate::shared_code::send_descriptors(
                    code_socket,
                    &[objects.region_file().as_raw_fd(), worker_end.as_raw_fd()],
                )
                .map_err(|e| format!("cannot send it the shared state: {e}"))?;
                drop(worker_end);
                let shared = HostMsg::Shared {
                    pool,
                    over_link: false,
                };
                wire::write_frame(&mut *self.stdin(), &shared).map_err(|e| e.to_string())?;
                let served = Arc::clone(objects);
                thread::Builder::new()
                    .name(format!("wasmpool-shared-{}", self.pid))
                    .spawn(move || crate::shared::served::serve(served, host_end))
                    .map_err(|e| format!("cannot start its shared-state thread: {e}"))?;
            }
            (None, Some(link)) => {
                link.serve_shared(objects);
                let shared = HostMsg::Shared {
                    pool,
                    over_link: true,
                };
                wire::write_frame(&mut *self.stdin(), &shared).map_err(|e| e.to_string())?;
            }
            // A local worker that cannot take descriptors (a custom worker command whose
            // stderr is not ours): its tasks' shared objects are out of its reach.
            (None, None) => return Ok(()),
        }
        self.objects = Some(Arc::clone(objects));
        Ok(())
    }

    /// The writer to the worker, locked (a launched worker's link thread shares it).
    fn stdin(&self) -> MutexGuard<'_, BufWriter<ChildStdin>> {
        self.stdin.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the worker's first frame up to the command's start-up deadline, saying in
    /// the log every few seconds that it is still starting, with its launcher's last words
    /// (`srun: job 12 queued and waiting for resources`): a worker that waits is reported as
    /// waiting, not left to look hung.
    fn wait_for_start(&mut self, command: &WorkerCommand) -> Result<(), String> {
        let started = Instant::now();
        let deadline = command.startup();
        loop {
            let waited = started.elapsed();
            let step = STARTUP_NOTICE.min(deadline.saturating_sub(waited));
            if self.stdout.wait_readable(step) {
                return Ok(());
            }
            let waited = started.elapsed();
            let said = self.last_stderr_line();
            let said = if said.is_empty() {
                "it has said nothing yet".to_string()
            } else {
                format!("it last said: {said}")
            };
            if waited >= deadline {
                return Err(format!(
                    "no answer to the handshake within {deadline:?}, the start-up deadline                      (still starting? {said})"
                ));
            }
            log::warn!(target: "wasmpool::worker", "worker {} (`{}`) is still starting after {:.0?}: {said}", self.pid, command.describe(), waited);
        }
    }

    /// The last line the worker (or its launcher) wrote to stderr.
    fn last_stderr_line(&self) -> String {
        let tail = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.back().cloned().unwrap_or_default()
    }

    fn handshake(
        &mut self,
        settings: WorkerSettings,
        command: &WorkerCommand,
    ) -> Result<(), String> {
        let link = command.link().map(|link| LinkSettings {
            heartbeat_ms: u32::try_from(link.heartbeat.as_millis()).unwrap_or(u32::MAX),
            silence_ms: u32::try_from(link.silence.as_millis()).unwrap_or(u32::MAX),
        });
        let hello = HostMsg::Hello {
            version: PROTOCOL_VERSION,
            settings,
            wasmpool: WASMPOOL_VERSION.into(),
            link,
        };
        wire::write_frame(&mut *self.stdin(), &hello).map_err(|e| e.to_string())?;
        self.wait_for_start(command)?;
        match wire::read_frame::<WorkerMsg>(&mut self.stdout, &mut self.read_buf) {
            Ok(Some(WorkerMsg::Ready {
                version,
                pid,
                descriptors,
                wasmpool,
                engine,
            })) if version == PROTOCOL_VERSION => {
                // Descriptors only to a worker that can take them on the socket this host
                // made: its own child, not a launcher's (which would never read them).
                if !(descriptors && pid == self.pid) {
                    self.code_socket = None;
                }
                if wasmpool != WASMPOOL_VERSION {
                    log::warn!(target: "wasmpool::worker", "worker {} (`{}`) is wasmpool {wasmpool}, this host {WASMPOOL_VERSION}: they speak the same protocol", self.pid, command.describe());
                }
                if link.is_some() {
                    let host = command.host().unwrap_or("?").to_string();
                    if let Some(engine) = &engine {
                        log::debug!(target: "wasmpool::worker", "worker {} on {host} (pid {pid} there): {}, host's compiled code {}", self.pid, engine.target, if compatible(engine, Metering::Plain) { "runs there" } else { "does not run there: it compiles for itself" });
                    }
                    self.remote = Some((pid, host));
                    self.engine = engine;
                    self.measure_round_trip(command)?;
                }
                Ok(())
            }
            Ok(Some(WorkerMsg::Ready { version, .. })) => Err(format!(
                "it speaks protocol version {version}, this host {PROTOCOL_VERSION}"
            )),
            Ok(Some(WorkerMsg::Refused { reason })) => Err(format!("it refused: {reason}")),
            Ok(Some(other)) => Err(format!("unexpected first message {other:?}")),
            Ok(None) if command.link().is_some() => Err(format!(
                "its launcher ended before a worker answered (is `{}` right, and a wasmpool \
                 worker at its end?)",
                command.describe()
            )),
            Ok(None) => {
                Err("it closed its pipe without answering (is it a wasmpool worker?)".into())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Measures a launched worker's round trip: a `Ping`, answered at once.
    fn measure_round_trip(&mut self, command: &WorkerCommand) -> Result<(), String> {
        let mut best = Duration::MAX;
        for n in 0..3 {
            let sent = Instant::now();
            wire::write_frame(&mut *self.stdin(), &HostMsg::Ping(n)).map_err(|e| e.to_string())?;
            if !self.stdout.wait_readable(command.startup()) {
                return Err(format!(
                    "no answer to a ping within {:?}",
                    command.startup()
                ));
            }
            match wire::read_frame::<WorkerMsg>(&mut self.stdout, &mut self.read_buf) {
                Ok(Some(WorkerMsg::Pong(m))) if m == n => best = best.min(sent.elapsed()),
                Ok(Some(other)) => {
                    return Err(format!("it answered a ping with {}", describe(&other)));
                }
                Ok(None) => return Err("its pipe closed after its handshake".into()),
                Err(e) => return Err(e.to_string()),
            }
        }
        self.rtt = best;
        Ok(())
    }

    /// Counts this remote worker's link in `chunks`, the streams' extra chunks in flight
    /// (enough to cover its round trip), for as long as the worker lives.
    pub(crate) fn cover_link(&mut self, chunks: &Arc<std::sync::atomic::AtomicUsize>) {
        if self.link.is_some() && self.covers.is_none() {
            let n = super::imap::chunks_to_cover(self.rtt);
            chunks.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            self.covers = Some((Arc::clone(chunks), n));
        }
    }

    /// Whether this is a worker behind a launcher.
    pub(crate) fn is_launched(&self) -> bool {
        self.link.is_some()
    }

    /// Whether a launched worker's link has been given up (its launcher is being killed).
    pub(crate) fn link_lost(&self) -> bool {
        self.link.as_ref().is_some_and(|link| link.lost().is_some())
    }

    /// Whether a launched worker is known to be gone already: its link given up, or its
    /// launcher's stdout closed (a worker that died while its driver was idle is replaced
    /// before a chunk is sent to it, so that no chunk is charged with its death).
    pub(crate) fn is_gone(&mut self) -> bool {
        // Not `try_wait`: the child is reaped only by `reap`, after its pid slot is cleared.
        let ended = match &mut self.stdout {
            Stdout::Link(link) => link.ended(),
            Stdout::Pipe(_) => false,
        };
        self.link_lost() || ended
    }

    /// Names the worker for messages: its pid, and for a launched worker its host and pid
    /// there.
    pub(crate) fn name(&self) -> String {
        match &self.remote {
            Some((pid, host)) => format!("worker {} (on {host}, pid {pid} there)", self.pid),
            None => format!("worker {}", self.pid),
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
        deliver: impl FnMut(usize, Reported, Duration),
    ) -> Result<(), SendError> {
        self.send(job, chunk_id)?;
        self.collect(job, chunk_id, deliver)
            .map_err(SendError::Lost)
    }

    /// Sends one job's items as a chunk (loading its module first if this worker has not
    /// seen it). The worker runs chunks in the order they were sent.
    pub(crate) fn send(&mut self, job: &Job, chunk_id: u64) -> Result<(), SendError> {
        match self.send_chunk(job, chunk_id, None).map(|_| ()) {
            Ok(()) => self.flush().map_err(SendError::Lost),
            Err(SendFault::TooLarge { bytes, module }) => {
                Err(SendError::TooLarge { bytes, module })
            }
            Err(SendFault::Broken(detail)) => Err(SendError::Lost(Interrupted {
                at: 0,
                why: Why::Crashed,
                lost: self.reap(detail),
            })),
        }
    }

    /// Whether this worker's items have been finishing within `limit` each, recently.
    pub(crate) fn is_quick(&self, limit: Duration) -> bool {
        self.outcomes_seen > 0 && self.typical_wait <= limit
    }

    /// Whether this worker already has the job's module, so that the job can be sent while
    /// another chunk runs (a `Load` waits for its answer, which must not interleave).
    pub(crate) fn has_loaded(&self, job: &Job) -> bool {
        self.loaded
            .contains(&(job.task.module().id(), job.limits.metering))
    }

    /// Reads a sent job's outcomes, handing each frame of them to `deliver` with the index of
    /// its first item, and the time it took over its items, as it arrives. Stops at the first item whose worker dies, or does not
    /// answer within the item's timeout plus a grace period (the worker is then killed).
    pub(crate) fn collect(
        &mut self,
        job: &Job,
        chunk_id: u64,
        mut deliver: impl FnMut(usize, Reported, Duration),
    ) -> Result<(), Interrupted> {
        let mut next = 0;
        let result = (|| {
            let mut progress = Instant::now();
            while next < job.len() {
                // Spin for the answer only when answers usually come within the spin: for
                // long items, spinning would only take a core from the workers.
                let spin = self.typical_wait <= spin::SPIN;
                if self.stdout.nothing_buffered()
                    && !(spin && self.stdout.spin_until_readable())
                    && let Some(timeout) = job.limits.timeout
                {
                    // A batch chunk's next outcomes may wait for several calls, each with its
                    // own timeout (see `Job::calls_per_report`).
                    let calls = job.calls_per_report();
                    let deadline = progress + timeout * calls + kill_grace(timeout) + self.rtt * 2;
                    let left = deadline.saturating_duration_since(Instant::now());
                    if !self.stdout.wait_readable(left) {
                        let detail = format!(
                            "the host killed it: no answer within {}the {timeout:?} timeout and \
                             {:?} of grace",
                            if calls == 1 {
                                String::new()
                            } else {
                                format!("{calls} times ")
                            },
                            kill_grace(timeout)
                        );
                        return Err((Why::Overran, detail));
                    }
                }
                let left = job.len() - next;
                let reported = self
                    .read_outcomes(chunk_id, next, left)
                    .map_err(|detail| (Why::Crashed, detail))?;
                // A remote worker's first outcomes of a chunk come a round trip after it was
                // sent: the time its items took is the rest.
                let mut waited = progress.elapsed();
                if next == 0 && self.link.is_some() {
                    waited = waited.saturating_sub(self.rtt);
                }
                let waited = waited / reported.len().max(1) as u32;
                self.typical_wait = (self.typical_wait * 3 + waited) / 4;
                self.outcomes_seen += reported.len() as u64;
                let first = next;
                next += reported.len();
                deliver(first, reported, waited);
                progress = Instant::now();
            }
            Ok(())
        })();
        result.map_err(|(why, detail)| Interrupted {
            at: next,
            why,
            lost: self.reap(detail),
        })
    }

    /// Reads the next frame of outcomes of chunk `chunk_id`, which must start at item `next`
    /// and report at most `left` items; anything else is the worker breaking the protocol,
    /// and the error says what the host saw.
    fn read_outcomes(
        &mut self,
        chunk_id: u64,
        next: usize,
        left: usize,
    ) -> Result<Reported, String> {
        let fits = |id: u64, first: u32, len: usize| {
            id == chunk_id && first as usize == next && len <= left
        };
        match wire::read_frame::<WorkerMsg>(&mut self.stdout, &mut self.read_buf) {
            Ok(Some(WorkerMsg::Outcomes {
                chunk_id: id,
                first,
                outcomes,
            })) if fits(id, first, outcomes.len()) => Ok(Reported::Outcomes(outcomes)),
            Ok(Some(WorkerMsg::Results {
                chunk_id: id,
                first,
                results,
            })) if fits(id, first, results.len()) => match results.check() {
                Ok(()) => Ok(Reported::Results(results)),
                Err(e) => Err(format!(
                    "the host killed it: it sent packed results that do not decode: {e}"
                )),
            },
            Ok(None) => Err("its pipe closed".into()),
            Ok(Some(other)) => Err(format!(
                "the host killed it: it answered item {next} of chunk {chunk_id} with {}",
                describe(&other)
            )),
            Err(WireError::Truncated) => Err("its pipe closed in the middle of a frame".into()),
            Err(e) => Err(format!(
                "the host killed it: it sent a frame that cannot be read ({e})"
            )),
        }
    }

    /// Writes the job as a chunk (after its module, if needed), without flushing it. With
    /// `room`, only if its frame takes at most that many bytes: ahead of its turn, a write
    /// that blocked while the worker blocks writing outcomes the host is not reading would
    /// deadlock both. The frame's size, or `None` if it did not fit.
    pub(crate) fn send_chunk(
        &mut self,
        job: &Job,
        chunk_id: u64,
        room: Option<usize>,
    ) -> Result<Option<usize>, SendFault> {
        let module = job.task.module();
        let metering = job.limits.metering;
        if !self.loaded.contains(&(module.id(), metering)) {
            self.load(job)?;
        }
        let id = module.id();
        let chunk = RunRef {
            chunk_id,
            module: &id,
            func: job.task.name(),
            items: ArgsOf(job),
            limits: &job.limits,
            grants: &job.grants,
            // Only the items of one caller's chunk may share an instance; gathered single
            // submissions come from separate calls.
            reuse_instance: job.task.reuses_instance() && job.gather == Gather::No,
            program: job.task.is_program(),
            batch: job.task.is_batched(),
        };
        wire::encode_frame(&chunk, &mut self.write_buf)?;
        if room.is_some_and(|room| self.write_buf.len() > room) {
            return Ok(None);
        }
        self.stdin().write_all(&self.write_buf)?;
        Ok(Some(self.write_buf.len()))
    }

    /// Sends the job's module for its metering variant and waits for the worker to have it:
    /// the host's compiled code when it has it, as a descriptor the worker maps (large code,
    /// to a worker that can take one: see [`crate::shared_code`]) or in the frame (if it fits),
    /// else the wasm for the worker to compile.
    fn load(&mut self, job: &Job) -> Result<(), SendFault> {
        let module = job.task.module();
        let metering = job.limits.metering;
        let load = |code| HostMsg::Load {
            id: module.id(),
            kind: module.kind(),
            code,
            metering,
        };
        let compiled = match module.code(metering) {
            // A worker elsewhere whose engine cannot run the host's code compiles for itself.
            Ok(_)
                if self
                    .engine
                    .as_ref()
                    .is_some_and(|e| !compatible(e, metering)) =>
            {
                false
            }
            Ok(code) if self.sends_descriptor(&code) => {
                wire::encode_frame(
                    &load(Code::Descriptor {
                        len: code.len() as u64,
                    }),
                    &mut self.write_buf,
                )?;
                true
            }
            Ok(code) => {
                let bytes = code.bytes().map_err(|e| {
                    SendFault::Broken(format!("the host cannot read its code: {e}"))
                })?;
                match wire::encode_frame(
                    &load(Code::Precompiled(bytes.to_vec())),
                    &mut self.write_buf,
                ) {
                    Ok(()) => true,
                    // Compiled code larger than a frame: the wasm, smaller, for the worker to
                    // compile.
                    Err(WireError::TooLarge(_)) => false,
                    Err(other) => return Err(other.into()),
                }
            }
            // The host could not compile it for this variant: the worker tries, and reports
            // why not with each call.
            Err(_) => false,
        };
        if !compiled {
            let wasm = load(Code::Wasm(module.bytes().to_vec()));
            wire::encode_frame(&wasm, &mut self.write_buf).map_err(|e| match e {
                WireError::TooLarge(bytes) => SendFault::TooLarge {
                    bytes,
                    module: true,
                },
                other => SendFault::from(other),
            })?;
        }
        {
            let mut stdin = self.stdin();
            stdin.write_all(&self.write_buf)?;
            stdin.flush()?;
        }
        // A frame of megabytes of code is not kept for the next chunk's.
        if self.write_buf.capacity() > KEPT_BUFFER {
            self.write_buf = Vec::new();
        }
        match wire::read_frame::<WorkerMsg>(&mut self.stdout, &mut self.read_buf) {
            Ok(Some(WorkerMsg::Loaded { id })) if id == module.id() => {
                self.loaded.insert((module.id(), metering));
                Ok(())
            }
            Ok(None) => Err(SendFault::Broken(
                "its pipe closed while it loaded a module".into(),
            )),
            Ok(Some(other)) => Err(SendFault::Broken(format!(
                "the host killed it: it answered a module's Load with {}",
                describe(&other)
            ))),
            Err(e) => Err(SendFault::Broken(format!(
                "the host killed it: its answer to a module's Load cannot be read ({e})"
            ))),
        }
    }

    /// Whether `code` goes to this worker as a descriptor: it is large enough, in a file, and
    /// the worker can take one; if so, the descriptor has been sent, ahead of the frame that
    /// announces it (a descriptor that cannot be sent leaves the bytes to go in the frame).
    fn sends_descriptor(&mut self, code: &CodeFile) -> bool {
        let (Some(socket), Some(file)) = (&self.code_socket, code.file()) else {
            return false;
        };
        if code.len() < self.share_code_above {
            return false;
        }
        match crate::shared_code::send(socket, file) {
            Ok(()) => true,
            Err(e) => {
                log::debug!(target: "wasmpool::worker", "worker {}: cannot send it a code descriptor ({e}); sending the code", self.pid);
                self.code_socket = None;
                false
            }
        }
    }

    /// Sends what was written to the worker.
    pub(crate) fn flush(&mut self) -> Result<(), Interrupted> {
        let flushed = self.stdin().flush();
        flushed.map_err(|e| Interrupted {
            at: 0,
            why: Why::Crashed,
            lost: self.reap(format!("the host could not write to it: {e}")),
        })
    }

    /// Sends what was written ahead of its turn; a failure is left for the read of the
    /// running chunk's outcomes to find, as the worker's death.
    pub(crate) fn flush_ahead(&mut self) {
        let _ = self.stdin().flush();
    }

    /// Clears the pid slot before the child is reaped, so nobody signals a recycled pid; a
    /// slot that already names a replacement worker is left alone.
    fn release_slot(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if *slot == Some(self.pid) {
            *slot = None;
        }
    }

    /// Kills (if needed) and reaps the worker, waits for the last of its stderr, and says how
    /// it ended; `detail` is what the host saw.
    pub(crate) fn reap(&mut self, detail: String) -> Lost {
        // A link given up says why better than what the driver saw next (its pipe closing).
        let mut detail = match self.link.as_ref().and_then(|link| link.lost()) {
            Some(why) => why,
            None => detail,
        };
        if let Some((pid, host)) = &self.remote {
            detail = format!("{detail} (its worker ran on {host}, pid {pid} there)");
        }
        if let Some(link) = &self.link {
            link.stop();
        }
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
        // A dead worker releases no lock it held: the host does, marking each abandoned.
        if let Some(objects) = &self.objects {
            let released = objects.release_locks_of(self.pid);
            if released > 0 {
                log::debug!("worker {}: released {released} locks it held", self.pid);
            }
        }
        // The relay reads until the pipe closes, which it has now that the worker is gone:
        // join it, so its dying words are read before they are reported.
        let _ = self.stderr_done.recv_timeout(STDERR_DRAIN);
        let tail = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        Lost {
            cause,
            stderr_tail: tail.iter().cloned().collect::<Vec<_>>().join("\n"),
            detail,
        }
    }

    /// Asks a compiling worker to compile `wasm` for `metering` and waits up to `timeout` for
    /// its answer: the compiled code, or the module's compile error (`Ok(Err(..))`), or how
    /// the worker failed (it overran and was killed, or it died: see [`Lost`]).
    pub(crate) fn compile(
        &mut self,
        kind: crate::wire::ModuleKind,
        metering: Metering,
        wasm: &[u8],
        timeout: Duration,
    ) -> Result<Result<crate::wire::Compiled, String>, (Why, Lost)> {
        let request = HostMsg::Compile {
            kind,
            metering,
            wasm: wasm.to_vec(),
        };
        let sent = wire::write_frame(&mut *self.stdin(), &request);
        if let Err(e) = sent {
            let lost = self.reap(format!("the host could not write to it: {e}"));
            return Err((Why::Crashed, lost));
        }
        if !self.stdout.wait_readable(timeout) {
            let lost = self.reap(format!("the host killed it after {timeout:?}"));
            return Err((Why::Overran, lost));
        }
        match wire::read_frame::<WorkerMsg>(&mut self.stdout, &mut self.read_buf) {
            Ok(Some(WorkerMsg::Compiled(compiled))) => Ok(compiled),
            Ok(None) | Err(WireError::Truncated) => {
                Err((Why::Crashed, self.reap("it died while compiling".into())))
            }
            Ok(Some(other)) => {
                let detail = format!("the host killed it: it answered with {}", describe(&other));
                Err((Why::Crashed, self.reap(detail)))
            }
            Err(e) => {
                let detail = format!("the host killed it: its answer cannot be read ({e})");
                Err((Why::Crashed, self.reap(detail)))
            }
        }
    }

    /// Asks the worker to exit, and reaps it (killing it if it does not exit promptly).
    pub(crate) fn shutdown(mut self) {
        let _ = wire::write_frame(&mut *self.stdin(), &HostMsg::Shutdown);
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
        if let Some((chunks, n)) = self.covers.take() {
            chunks.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(link) = &self.link {
            link.stop();
        }
        self.release_slot();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A worker's message, named for an error report (never its whole contents: a frame of
/// outcomes can be large).
fn describe(msg: &WorkerMsg) -> String {
    match msg {
        WorkerMsg::Ready { .. } => "a second Ready".into(),
        WorkerMsg::Heartbeat => "a heartbeat".into(),
        WorkerMsg::Pong(_) => "a Pong".into(),
        // A local worker's requests go on its socket; a launched one's, to its link thread.
        WorkerMsg::Shared(_) => "a shared-state request outside its link".into(),
        WorkerMsg::Refused { reason } => format!("a refusal ({reason})"),
        WorkerMsg::Loaded { .. } => "a Loaded".into(),
        WorkerMsg::Compiled(_) => "a Compiled".into(),
        WorkerMsg::Outcomes {
            chunk_id,
            first,
            outcomes,
        } => format!(
            "{} outcomes of chunk {chunk_id} from item {first}",
            outcomes.len()
        ),
        WorkerMsg::Results {
            chunk_id,
            first,
            results,
        } => format!(
            "{} results of chunk {chunk_id} from item {first}",
            results.len()
        ),
    }
}

/// Whether code the host compiled for `metering` runs on the engine a remote worker reported.
fn compatible(engine: &EngineInfo, metering: Metering) -> bool {
    static HOST: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    let host = HOST.get_or_init(|| crate::engine::compat_digests(true).unwrap_or_default());
    host.get(metering.index())
        .is_some_and(|ours| engine.compat.get(metering.index()) == Some(ours))
}

/// The arguments of a job's items, serialized as the [`crate::wire::Chunk`]'s `items`.
struct ArgsOf<'a>(&'a Job);

impl serde::Serialize for ArgsOf<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_args(serializer)
    }
}

/// Copies a worker's stderr lines to the log and keeps the last few for error reports.
fn relay_stderr(pid: u32, stderr: UnixStream, tail: Arc<Mutex<VecDeque<String>>>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiled code goes to a remote worker only for the variants its engine can run.
    #[test]
    fn code_goes_only_to_an_engine_that_can_run_it() {
        let ours = crate::engine::compat_digests(true).unwrap();
        let same = EngineInfo {
            compat: ours.clone(),
            target: "here".into(),
        };
        assert!(compatible(&same, Metering::Plain));
        assert!(compatible(&same, Metering::EpochsAndFuel));
        let mut theirs = ours;
        theirs[Metering::Epochs.index()] = [0; 32];
        let other = EngineInfo {
            compat: theirs,
            target: "another machine".into(),
        };
        assert!(compatible(&other, Metering::Plain));
        assert!(!compatible(&other, Metering::Epochs));
        let none = EngineInfo {
            compat: Vec::new(),
            target: String::new(),
        };
        assert!(!compatible(&none, Metering::Plain));
    }
}
