//! The link of a worker behind a launcher (`ssh HOST wasmpool worker`, `srun`, `kubectl
//! exec`): heartbeats both ways, and an end when the host is gone.
//!
//! Two threads, started after the handshake when the Hello carried [`LinkSettings`]:
//!
//! - the **relay** reads every frame from stdin as it arrives, even while a task runs on the
//!   session thread: it drops the host's heartbeats, hands every other frame to the session
//!   ([`RelayInput`], read as the pipe would be), and ends the process when stdin closes or
//!   when nothing at all has come from the host for the link's silence (a partition, a
//!   stopped ssh client, a head killed by SIGKILL whose ssh connection hangs on): no remote
//!   worker outlives its pool;
//! - the **beat** writes a heartbeat frame every interval under the same lock as the
//!   session's frames, so that the host hears from a worker whose task runs long.
//!
//! The relay also takes the host's answers to the shared-state requests of the task that runs
//! ([`HostMsg::SharedReply`](crate::wire::HostMsg)) and hands them to the call that waits for
//! them (`worker/shared/reach.rs`): the session is busy in that very call.
//!
//! Both need only calls the worker's seccomp filter allows once it is locked down: `read`,
//! `write`, `ppoll`/`poll`, `futex`, `clock_gettime`, `clock_nanosleep`, `exit_group` (see
//! `crate::walls`); the threads are started before the lock-down.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::time::Duration;

use crate::spin::SpinRead;
use crate::wire::{
    self, FrameQueue, HOST_SHARED_REPLY_TAG, HostMsg, LinkSettings, MAX_FRAME_BYTES, SharedReply,
    WorkerMsg,
};

use super::{Input, Output};

/// What the session reads when a link thread reads stdin: the host's frames, heartbeats
/// taken out, in order.
pub(crate) type RelayInput = FrameQueue;

impl Input for RelayInput {
    fn has_pending(&self) -> bool {
        FrameQueue::has_pending(self)
    }
}

/// Starts the relay and the beat (see the module docs) over the worker's stdin, from where
/// the handshake left it, and its output.
pub(crate) fn start(
    link: LinkSettings,
    input: BufReader<SpinRead<File>>,
    output: &Output<File>,
) -> io::Result<RelayInput> {
    let silence = Duration::from_millis(u64::from(link.silence_ms.max(1)));
    let interval = Duration::from_millis(u64::from(link.heartbeat_ms.max(1)));
    let pending = input.buffer().to_vec();
    let stdin = input.into_inner().0;
    let (frames_tx, frames) = crossbeam_channel::unbounded();
    let (replies_tx, replies) = crossbeam_channel::unbounded();
    super::shared::link_ready(super::shared::OverLink::new(
        std::sync::Arc::clone(output),
        replies,
    ));
    std::thread::Builder::new()
        .name("wasmpool-link".into())
        .spawn(move || relay(stdin, pending, silence, frames_tx, replies_tx))?;
    let output = std::sync::Arc::clone(output);
    std::thread::Builder::new()
        .name("wasmpool-beat".into())
        .spawn(move || beat(interval, output))?;
    Ok(FrameQueue::new(frames))
}

/// Reads the host's frames until stdin ends or falls silent, then ends the process.
fn relay(
    stdin: File,
    mut bytes: Vec<u8>,
    silence: Duration,
    frames: crossbeam_channel::Sender<Vec<u8>>,
    replies: crossbeam_channel::Sender<SharedReply>,
) {
    let heartbeat = wire::host_heartbeat_payload();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        // Every whole frame so far.
        let mut start = 0;
        while bytes.len() - start >= 4 {
            let len =
                u32::from_le_bytes(bytes[start..start + 4].try_into().expect("4 bytes")) as usize;
            if len > MAX_FRAME_BYTES {
                // Not a frame: the session's reader says so.
                let _ = frames.send(bytes.split_off(start));
                bytes.clear();
                start = 0;
                break;
            }
            if bytes.len() - start - 4 < len {
                break;
            }
            let payload = &bytes[start + 4..start + 4 + len];
            if payload.first() == Some(&HOST_SHARED_REPLY_TAG) {
                match wire::decode::<HostMsg>(payload) {
                    Ok(HostMsg::SharedReply(reply)) => {
                        let _ = replies.send(reply);
                    }
                    _ => end("the host sent an unreadable answer to a shared-state request"),
                }
            } else if payload != heartbeat.as_slice()
                && frames.send(bytes[start..start + 4 + len].to_vec()).is_err()
            {
                // The session ended; it takes no more.
                return;
            }
            start += 4 + len;
        }
        bytes.drain(..start);
        if !crate::pool::worker_process::wait_readable(&stdin, silence) {
            end(&format!(
                "no word from the host for {silence:?} (not even a heartbeat): the link is \
                 taken as lost, the worker exits"
            ));
        }
        match (&stdin).read(&mut chunk) {
            Ok(0) => end_quietly(),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => end(&format!("cannot read from the host: {e}")),
        }
    }
}

/// Writes a heartbeat every `interval`; a write that fails means the host is gone.
fn beat(interval: Duration, output: Output<File>) {
    let mut frame = Vec::new();
    if wire::encode_frame(&WorkerMsg::Heartbeat, &mut frame).is_err() {
        return;
    }
    loop {
        std::thread::sleep(interval);
        let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
        if out.write_all(&frame).and_then(|()| out.flush()).is_err() {
            end_quietly();
        }
    }
}

/// Ends the worker at once, saying why on its stderr (which the host keeps for its report).
fn end(why: &str) -> ! {
    let line = format!("wasmpool worker {}: {why}\n", std::process::id());
    // SAFETY: write(2) of a buffer we own to the process's stderr, then _exit(2).
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(1)
    }
}

/// Ends the worker at once: the host closed its end, as it does when it is done or gone.
fn end_quietly() -> ! {
    // SAFETY: _exit(2) ends the process; nothing of it needs tidying up.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::HostMsg;

    #[test]
    fn the_relay_input_reads_frames_in_order_across_reads() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut frames = Vec::new();
        for msg in [HostMsg::Ping(1), HostMsg::Shutdown] {
            let mut frame = Vec::new();
            wire::encode_frame(&msg, &mut frame).unwrap();
            tx.send(frame).unwrap();
            tx.send(Vec::new()).unwrap();
            frames.push(msg);
        }
        drop(tx);
        let mut input = FrameQueue::new(rx);
        let mut buf = Vec::new();
        for msg in frames {
            assert_eq!(
                wire::read_frame::<HostMsg>(&mut input, &mut buf).unwrap(),
                Some(msg)
            );
        }
        assert_eq!(
            wire::read_frame::<HostMsg>(&mut input, &mut buf).unwrap(),
            None
        );
    }
}
