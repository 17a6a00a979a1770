//! Sending chunks ahead of their turn, so that a worker of quick items goes from chunk to
//! chunk without waiting for a round trip to the host (see `README.md` beside this file).

use std::collections::VecDeque;
use std::time::Duration;

use super::super::Shared;
use super::super::worker_process::{SendFault, WorkerProcess};
use super::{Held, claim};

/// Items that usually finish within this get the next chunk sent ahead of their turn: for
/// longer items the round trip it saves is noise, while a chunk sent ahead can no longer be
/// cancelled and would wait behind a slow item while another worker idles.
pub(super) const AHEAD_LIMIT: Duration = Duration::from_millis(1);
/// How many chunks a driver sends ahead of the running one, at most: enough for the worker
/// to go on through a driver's wake-up (tens of microseconds) when items take a few.
const MAX_AHEAD: usize = 8;
/// About how much work a driver sends ahead beyond the first chunk: enough to cover a
/// wake-up, little enough that the last chunks still spread over the workers.
const AHEAD_WORK: Duration = Duration::from_micros(200);
/// For a worker behind a launcher, chunks ahead at most, and bytes ahead at most: its link
/// threads read both ends eagerly (see `pool/link.rs`, `worker/link.rs`), so that no write
/// can deadlock, and what is ahead must cover the link's round trip.
const MAX_AHEAD_REMOTE: usize = 64;
const REMOTE_ROOM: usize = 8 << 20;

/// How quick items must be for the next chunks to go ahead: for a remote worker, whose items'
/// measured time includes its link's round trip, that much more.
pub(super) fn limit(worker: &WorkerProcess) -> Duration {
    AHEAD_LIMIT + worker.rtt * 2
}

/// Takes more jobs from the queue while it holds at least as many per driver as this driver
/// holds (see [`crate::pool::queue::JobQueue::next_ahead`]), and sends them behind the running
/// one in one write: one chunk, then more while what is ahead is less than [`AHEAD_WORK`]
/// (by the worker's recent pace), up to [`MAX_AHEAD`] chunks, as long as the worker has their
/// module and all that is ahead fits in half the pipe. The first job that cannot be sent now
/// stays held, unsent, with none behind it: chunks are sent in the order they are collected.
pub(super) fn send_ahead(shared: &Shared, worker: &mut WorkerProcess, held: &mut VecDeque<Held>) {
    if held.back().is_some_and(|h| h.sent.is_none()) {
        return;
    }
    let mut in_pipe: usize = held.iter().map(|h| h.ahead_bytes).sum();
    let items_ahead: usize = held.iter().skip(1).map(|h| h.job.len()).sum();
    let mut work_ahead = worker.typical_wait.saturating_mul(items_ahead as u32);
    // A remote worker keeps enough ahead to cover its link's round trip (its driver's share
    // of the queue still bounds it: local workers are not starved).
    let (max_ahead, ahead_work, room_for) = if worker.is_launched() {
        (MAX_AHEAD_REMOTE, AHEAD_WORK + worker.rtt * 2, REMOTE_ROOM)
    } else {
        (MAX_AHEAD, AHEAD_WORK, worker.pipe_capacity / 2)
    };
    let mut wrote = false;
    while held.len() == 1 || (held.len() <= max_ahead && work_ahead < ahead_work) {
        let Some(job) = shared
            .queue
            .next_ahead(shared.workers, held.len())
            .and_then(|job| claim(shared, job))
        else {
            break;
        };
        let mut ahead = Held::new(job);
        let room = room_for.saturating_sub(in_pipe);
        if worker.has_loaded(&ahead.job) {
            let id = shared.next_chunk_id();
            match worker.send_chunk(&ahead.job, id, Some(room)) {
                Ok(Some(bytes)) => {
                    ahead.sent = Some(id);
                    ahead.ahead_bytes = bytes;
                    in_pipe += bytes;
                    work_ahead += worker.typical_wait.saturating_mul(ahead.job.len() as u32);
                    wrote = true;
                }
                // Not now: it waits for its turn, when a frame too large is dealt with.
                Ok(None) | Err(SendFault::TooLarge { .. }) => {}
                // The worker died: collecting the running chunk will tell.
                Err(SendFault::Broken(_)) => {}
            }
        }
        let sent = ahead.sent.is_some();
        held.push_back(ahead);
        if !sent {
            break;
        }
    }
    if wrote {
        worker.flush_ahead();
    }
}
