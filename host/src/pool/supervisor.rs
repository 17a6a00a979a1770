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
use std::time::Duration;

use crate::error::{Error, ExitCause, TaskError};
use crate::wire::{
    self, Chunk, HostMsg, ItemOutcome, ModuleId, PROTOCOL_VERSION, WireError, WorkerMsg,
};

use super::scheduler::{self, Job};
use super::{OutputSink, Shared};

/// How long a new worker may take to answer the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
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
    loaded: HashSet<ModuleId>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
}

/// The worker died or broke the protocol while running a chunk.
pub(crate) struct Lost {
    pub(crate) cause: ExitCause,
    pub(crate) stderr_tail: String,
    pub(crate) detail: String,
}

impl WorkerProcess {
    /// Starts a worker and completes the handshake.
    pub(crate) fn spawn(program: &WorkerProgram, slot: PidSlot) -> Result<WorkerProcess, Error> {
        let spawn_error = |detail: String| Error::Spawn {
            program: program.program.display().to_string(),
            detail,
        };
        let mut command = Command::new(&program.program);
        command
            .args(&program.args)
            .env(crate::worker::WORKER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
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
        let mut worker = WorkerProcess {
            stdin: BufWriter::new(child.stdin.take().expect("stdin is piped")),
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
        };
        worker.handshake().map_err(|detail| {
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

    fn handshake(&mut self) -> Result<(), String> {
        wire::write_frame(
            &mut self.stdin,
            &HostMsg::Hello {
                version: PROTOCOL_VERSION,
            },
        )
        .map_err(|e| e.to_string())?;
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

    /// Runs one job's items (loading its module first if this worker has not seen it) and
    /// returns the raw outcome of each, in order.
    pub(crate) fn run(&mut self, job: &Job, chunk_id: u64) -> Result<Vec<ItemOutcome>, Lost> {
        let module = job.task.module();
        let result = (|| -> Result<Vec<ItemOutcome>, WireError> {
            if !self.loaded.contains(&module.id()) {
                let load = HostMsg::Load {
                    id: module.id(),
                    kind: module.kind(),
                    bytes: module.bytes().to_vec(),
                };
                wire::encode_frame(&load, &mut self.write_buf)?;
                self.stdin.write_all(&self.write_buf)?;
                self.loaded.insert(module.id());
            }
            let chunk = HostMsg::Run(Chunk {
                chunk_id,
                module: module.id(),
                func: job.task.name().to_string(),
                items: job.items.iter().map(|item| item.args.clone()).collect(),
            });
            wire::encode_frame(&chunk, &mut self.write_buf)?;
            self.stdin.write_all(&self.write_buf)?;
            self.stdin.flush()?;
            match wire::read_frame::<WorkerMsg>(&mut self.stdout, &mut self.read_buf)? {
                Some(WorkerMsg::Done {
                    chunk_id: id,
                    outcomes,
                }) if id == chunk_id && outcomes.len() == job.items.len() => Ok(outcomes),
                Some(other) => Err(WireError::Io(std::io::Error::other(format!(
                    "unexpected reply {other:?}"
                )))),
                None => Err(WireError::Truncated),
            }
        })();
        result.map_err(|e| {
            let mut lost = self.reap();
            lost.detail = e.to_string();
            lost
        })
    }

    /// Kills (if needed) and reaps the worker; says how it ended.
    fn reap(&mut self) -> Lost {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
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
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        // Drop kills and reaps whatever is left.
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// A driver thread's life: start a worker, then run jobs from the queue on it, replacing it
/// whenever it dies, until the queue is closed and empty or the pool is terminated.
pub(crate) fn drive(
    shared: Arc<Shared>,
    slot: PidSlot,
    ready: crossbeam_channel::Sender<Result<u32, Error>>,
) {
    let mut worker = match WorkerProcess::spawn(&shared.program, Arc::clone(&slot)) {
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
    while let Ok(mut job) = shared.queue_rx.recv() {
        if shared.is_terminating() {
            job.fail_all(|func| TaskError::Cancelled {
                func: func.to_string(),
            });
            continue;
        }
        job.items.retain(|item| !job.sink.is_cancelled(item.index));
        if job.items.is_empty() {
            continue;
        }
        for item in &job.items {
            job.sink.start(item.index);
        }
        let chunk_id = shared.next_chunk_id();
        match worker.run(&job, chunk_id) {
            Ok(outcomes) => {
                for (item, raw) in job.items.iter().zip(outcomes) {
                    shared
                        .output
                        .relay(item.task_no, job.task.name(), &raw.stdout, &raw.stderr);
                    job.sink
                        .deliver(item.index, scheduler::finish(&job.task, raw));
                }
            }
            Err(lost) => {
                let pid = worker.pid();
                let terminating = shared.is_terminating();
                job.fail_all(|func| {
                    if terminating {
                        TaskError::Cancelled {
                            func: func.to_string(),
                        }
                    } else {
                        TaskError::WorkerCrashed {
                            func: func.to_string(),
                            pid,
                            cause: lost.cause,
                            stderr_tail: lost.stderr_tail.clone(),
                        }
                    }
                });
                if terminating {
                    return;
                }
                log::warn!(target: "wasmpool::pool", "worker {pid} lost ({}; {}); starting a new one", lost.cause, lost.detail);
                match respawn(&shared, &slot) {
                    Some(w) => worker = w,
                    None => return,
                }
            }
        }
    }
    worker.shutdown();
}

/// Starts a replacement worker, retrying a few times with a pause; `None` when the pool is
/// terminating or the program cannot be started at all any more.
fn respawn(shared: &Shared, slot: &PidSlot) -> Option<WorkerProcess> {
    for attempt in 0..5u32 {
        if shared.is_terminating() {
            return None;
        }
        match WorkerProcess::spawn(&shared.program, Arc::clone(slot)) {
            Ok(w) => return Some(w),
            Err(e) => {
                log::error!(target: "wasmpool::pool", "cannot start a replacement worker: {e}");
                thread::sleep(Duration::from_millis(50 << attempt));
            }
        }
    }
    None
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
