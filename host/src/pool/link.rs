//! The host's end of a link to a worker behind a launcher (ssh, srun, kubectl): one thread per
//! such worker reads everything the launcher's stdout carries as it comes, whatever the
//! driver is doing, so that the link's liveness is known at all times.
//!
//! The thread drops the worker's heartbeats, hands every other frame to the driver
//! ([`LinkReader`], read as the pipe would be), sends the host's heartbeats (never blocking:
//! a heartbeat that cannot be written at once is skipped, the driver's own frames say as
//! much), and when nothing at all has come from the worker for the link's silence (a killed
//! or stopped ssh client, a crashed node, a partition that sends no FIN), says why in the
//! [`LinkState`] and kills the launcher, which ends every wait on it: the driver finds the
//! worker lost within a few seconds, not at a TCP or Slurm timeout.
//!
//! The worker's shared-state requests ([`WorkerMsg::Shared`](crate::wire::WorkerMsg)) come
//! on the same stream, while the driver waits for the very task that makes them: the thread
//! hands them to a server thread of the worker's own (`crate::shared::remote`), which writes
//! each answer to the worker's stdin.

use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::process::{ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::shared::SharedObjects;
use crate::wire::{
    self, FrameQueue, HostMsg, MAX_FRAME_BYTES, SharedFailure, SharedReply, SharedRequest,
    WORKER_SHARED_TAG, WorkerMsg,
};

use super::worker_process::PidSlot;

/// How a worker behind a launcher keeps its link (see [`crate::WorkerCommand::heartbeat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkConfig {
    /// How often each side sends a heartbeat.
    pub(crate) heartbeat: Duration,
    /// How long without a frame before a side gives the link up.
    pub(crate) silence: Duration,
}

/// The largest first frame (a `Ready`) a link accepts before it decides its launcher is not
/// speaking the protocol.
const READY_AT_MOST: usize = 64 << 10;

/// Heartbeats every second; a link silent for five is lost.
pub(crate) const DEFAULT_LINK: LinkConfig = LinkConfig {
    heartbeat: Duration::from_secs(1),
    silence: Duration::from_secs(5),
};

/// What the link thread and the driver share.
#[derive(Debug, Default)]
pub(crate) struct LinkState {
    /// Why the link thread gave the link up, if it did.
    lost: Mutex<Option<String>>,
    /// Set once the worker has said anything (its Ready): heartbeats and the silence
    /// limit apply from then on; before, the handshake's own deadline does.
    started: AtomicBool,
    /// Set by the driver when it is done with the worker.
    stop: AtomicBool,
    /// Set when the link thread ends, for whatever reason: a shared-state wait for the worker
    /// ends too.
    ended: AtomicBool,
    /// The pool's shared objects, once the worker was told of them: what its requests reach.
    objects: OnceLock<Arc<SharedObjects>>,
}

impl LinkState {
    /// Why the link was given up, if it was.
    pub(crate) fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The driver is done with the link.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// The worker's tasks may use the pool's shared objects, through requests on the link.
    pub(crate) fn serve_shared(&self, objects: &Arc<SharedObjects>) {
        let _ = self.objects.set(Arc::clone(objects));
    }

    /// Whether the worker is still there to answer.
    fn live(&self) -> bool {
        !self.ended.load(Ordering::Acquire) && !self.stop.load(Ordering::Acquire)
    }
}

/// Marks the link ended when the link thread returns, however it does.
struct Ended(Arc<LinkState>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::Release);
    }
}

/// The frames of the worker, as the link thread hands them over: read as a pipe.
pub(crate) type LinkReader = FrameQueue;

/// Starts the link thread of worker `pid` (the launcher's pid, in `slot`).
pub(crate) fn start(
    stdout: ChildStdout,
    stdin: Arc<Mutex<BufWriter<ChildStdin>>>,
    pid: u32,
    slot: PidSlot,
    config: LinkConfig,
) -> io::Result<(LinkReader, Arc<LinkState>)> {
    let state = Arc::new(LinkState::default());
    let (tx, frames) = crossbeam_channel::unbounded();
    let shared = Arc::clone(&state);
    std::thread::Builder::new()
        .name(format!("wasmpool-link-{pid}"))
        .spawn(move || run(stdout, stdin, pid, slot, config, shared, tx))?;
    Ok((FrameQueue::new(frames), state))
}

fn run(
    mut stdout: ChildStdout,
    stdin: Arc<Mutex<BufWriter<ChildStdin>>>,
    pid: u32,
    slot: PidSlot,
    config: LinkConfig,
    state: Arc<LinkState>,
    frames: Sender<Vec<u8>>,
) {
    let _ended = Ended(Arc::clone(&state));
    // The worker's shared-state server, started at its first request.
    let mut server: Option<Sender<SharedRequest>> = None;
    let heartbeat = wire::worker_heartbeat_payload();
    let mut beat = Vec::new();
    let _ = wire::encode_frame(&HostMsg::Heartbeat, &mut beat);
    let mut bytes: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let mut heard = Instant::now();
    let mut next_beat = Instant::now();
    loop {
        if state.stop.load(Ordering::Acquire) {
            return;
        }
        let started = state.started.load(Ordering::Acquire);
        let now = Instant::now();
        if started && now.duration_since(heard) > config.silence {
            let why = format!(
                "no word from it for {:?} (not even a heartbeat, due every {:?}): the link is \
                 taken as lost and its launcher killed",
                now.duration_since(heard),
                config.heartbeat
            );
            *state.lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            kill_if_still(&slot, pid);
            return;
        }
        if started && now >= next_beat {
            send_heartbeat(&stdin, &beat);
            next_beat = now + config.heartbeat;
        }
        let wait = if started {
            next_beat
                .min(heard + config.silence + Duration::from_millis(1))
                .saturating_duration_since(now)
        } else {
            config.heartbeat
        };
        if !super::worker_process::wait_readable(&stdout, wait.max(Duration::from_millis(1))) {
            continue;
        }
        match stdout.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                bytes.extend_from_slice(&chunk[..n]);
                heard = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        let mut start = 0;
        while bytes.len() - start >= 4 {
            let len =
                u32::from_le_bytes(bytes[start..start + 4].try_into().expect("4 bytes")) as usize;
            // A Ready is a few dozen bytes: anything else first is not the protocol (a login
            // banner, a message, a prompt on the launcher's stdout).
            if !started && len > READY_AT_MOST {
                let seen = String::from_utf8_lossy(&bytes[start..bytes.len().min(start + 80)])
                    .into_owned();
                let why = format!(
                    "its launcher wrote something other than the worker protocol to its stdout \
                     (a banner, a message or a prompt?): {seen:?}"
                );
                *state.lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                kill_if_still(&slot, pid);
                return;
            }
            if len > MAX_FRAME_BYTES {
                // Not a frame: the driver's reader says so, and kills the worker.
                let _ = frames.send(bytes.split_off(start));
                return;
            }
            if bytes.len() - start - 4 < len {
                break;
            }
            let payload = &bytes[start + 4..start + 4 + len];
            if started && payload.first() == Some(&WORKER_SHARED_TAG) {
                shared_request(payload, &mut server, &stdin, pid, &state);
            } else if payload != heartbeat.as_slice()
                && frames.send(bytes[start..start + 4 + len].to_vec()).is_err()
            {
                return;
            }
            start += 4 + len;
            if !started {
                state.started.store(true, Ordering::Release);
                next_beat = Instant::now();
            }
        }
        bytes.drain(..start);
    }
}

/// Hands a shared-state request to the worker's server, starting it at the first; a request
/// the host cannot take is answered at once, so that the task waiting for it goes on.
fn shared_request(
    payload: &[u8],
    server: &mut Option<Sender<SharedRequest>>,
    stdin: &Arc<Mutex<BufWriter<ChildStdin>>>,
    pid: u32,
    state: &Arc<LinkState>,
) {
    let refuse = |detail: &str| {
        reply(
            stdin,
            SharedReply::Failed(SharedFailure::Other(detail.into())),
        );
    };
    let request = match wire::decode::<WorkerMsg>(payload) {
        Ok(WorkerMsg::Shared(request)) => request,
        Ok(_) | Err(_) => return refuse("the host could not read this shared-state request"),
    };
    if server.is_none() {
        let Some(objects) = state.objects.get().cloned() else {
            return refuse("this worker was given no shared state");
        };
        let (tx, requests) = crossbeam_channel::unbounded();
        let writer = Arc::clone(stdin);
        let state = Arc::clone(state);
        let started = std::thread::Builder::new()
            .name(format!("wasmpool-shared-{pid}"))
            .spawn(move || {
                crate::shared::remote::serve(&objects, pid, requests, &|| state.live(), |answer| {
                    reply(&writer, answer)
                });
            });
        if started.is_err() {
            return refuse("the host cannot start a thread to serve this worker's shared state");
        }
        *server = Some(tx);
    }
    if let Some(server) = server {
        let _ = server.send(request);
    }
}

/// Writes the answer to a shared-state request; false if the worker's stdin is gone.
fn reply(stdin: &Mutex<BufWriter<ChildStdin>>, answer: SharedReply) -> bool {
    let mut frame = Vec::new();
    let answer = match wire::encode_frame(&HostMsg::SharedReply(answer), &mut frame) {
        Ok(()) => frame,
        Err(e) => {
            let failed = SharedReply::Failed(SharedFailure::Other(format!(
                "the host's answer cannot be sent: {e}"
            )));
            if wire::encode_frame(&HostMsg::SharedReply(failed), &mut frame).is_err() {
                return false;
            }
            frame
        }
    };
    let mut writer = stdin.lock().unwrap_or_else(|e| e.into_inner());
    writer
        .write_all(&answer)
        .and_then(|()| writer.flush())
        .is_ok()
}

/// Writes one heartbeat frame, unless the driver is writing or has bytes buffered (its own
/// frames are as good), and never blocking: a pipe write of a few bytes is whole or not at
/// all, and a full pipe means the link is not moving, which the silence will tell.
fn send_heartbeat(stdin: &Mutex<BufWriter<ChildStdin>>, frame: &[u8]) {
    let Ok(writer) = stdin.try_lock() else {
        return;
    };
    if !writer.buffer().is_empty() {
        return;
    }
    let fd = writer.get_ref().as_raw_fd();
    // SAFETY: fcntl and write on a pipe descriptor the writer we hold the lock of owns; the
    // flag is put back before the lock is released, so no other write sees it.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return;
        }
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        libc::write(fd, frame.as_ptr().cast(), frame.len());
        libc::fcntl(fd, libc::F_SETFL, flags);
    }
}

/// Kills the launcher `pid` if the slot still names it (and not a replacement).
fn kill_if_still(slot: &PidSlot, pid: u32) {
    let guard = slot.lock().unwrap_or_else(|e| e.into_inner());
    if *guard == Some(pid) {
        // SAFETY: kill(2) on our own unreaped child: the slot is cleared before it is reaped,
        // and we hold its lock.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}
