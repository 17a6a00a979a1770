//! A driver: the thread that owns one worker slot. It starts the slot's worker from its
//! [`WorkerCommand`], takes jobs from the pool's queue and runs them there, and replaces the
//! worker whenever it dies or has run its quota of tasks, until the queue is closed and empty
//! or the pool is terminated. When and how it spins, and what it sends ahead of its turn, is
//! the subject of `driver/README.md`.
//!
//! Invariants: every item a driver takes gets exactly one outcome (its value, its error, a
//! retry on the next worker, or `Cancelled`); chunks reach the worker in the order they are
//! collected; the driver owns its worker process (it starts it, so the worker's parent-death
//! signal is tied to this thread) and reaps it before it returns.

mod ahead;

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::error::{Error, TaskError};

use super::Shared;
use super::hosts::HostHealth;
use super::job::{Gather, Job};
use super::worker_command::WorkerCommand;
use super::worker_process::{Interrupted, PidSlot, SendError, Why, WorkerProcess};

/// A job a driver has taken from the queue, and the chunk id it was sent under to the
/// current worker (`None`: not sent yet, or sent to a worker that has since died).
struct Held {
    job: Job,
    sent: Option<u64>,
    /// The size of its frame, when it was sent ahead of its turn.
    ahead_bytes: usize,
}

impl Held {
    fn new(job: Job) -> Self {
        Held {
            job,
            sent: None,
            ahead_bytes: 0,
        }
    }
}

/// When a slot starts its first worker.
pub(crate) enum Start {
    /// At once; the sender hears whether it started (a pool's first slot, so that a worker
    /// command that cannot work is the pool's build error).
    Now(crossbeam_channel::Sender<Result<u32, Error>>),
    /// When the slot takes its first job: a pool of a thousand slots given three items starts
    /// three workers, not a thousand.
    OnDemand,
}

/// A driver thread's life (see the module docs).
pub(crate) fn drive(
    shared: Arc<Shared>,
    command: WorkerCommand,
    host: Option<Arc<HostHealth>>,
    slot: PidSlot,
    start: Start,
) {
    // A slot on a remote host launches within the host's limits, and counts its failures.
    let spawn = || -> Result<WorkerProcess, Error> {
        let mut worker = match &host {
            Some(health) => health.launch(|| {
                WorkerProcess::spawn(
                    &command,
                    shared.settings,
                    Arc::clone(&slot),
                    Some(&shared.objects),
                )
            })?,
            None => WorkerProcess::spawn(
                &command,
                shared.settings,
                Arc::clone(&slot),
                Some(&shared.objects),
            )?,
        };
        // A remote worker's link widens the streams' bound by its round trip's worth.
        worker.cover_link(&shared.link_chunks);
        Ok(worker)
    };
    let host = host.as_deref();
    // The running chunk, and those sent ahead.
    let mut held: VecDeque<Held> = VecDeque::new();
    let mut worker = match start {
        Start::Now(ready) => match spawn() {
            Ok(w) => {
                let _ = ready.send(Ok(w.pid()));
                w
            }
            Err(e) => {
                // The pool goes on with its other sources, if it has any that started.
                if let Some(host) = host {
                    host.give_up(&e.to_string());
                }
                let detail = format!("no worker process could be started: {e}");
                let _ = ready.send(Err(e));
                shared.driver_lost(&detail);
                return;
            }
        },
        Start::OnDemand => {
            if let Some(why) = host.and_then(HostHealth::given_up) {
                shared.driver_lost(&why);
                return;
            }
            let turn = shared.queue.take_spin_turn();
            let Some(job) = shared.next_job(turn) else {
                return;
            };
            match spawn() {
                Ok(w) => {
                    if let Some(job) = claim(&shared, job) {
                        held.push_back(Held::new(job));
                    }
                    w
                }
                Err(e) => {
                    // Another slot may run it; this one gives up, or on a remote host tries
                    // again after the host's back-off, until the host is given up.
                    let detail = format!("no worker process could be started: {e}");
                    log::error!(target: "wasmpool::pool", "{detail}");
                    if let Err((job, _)) = shared.queue.push(job) {
                        job.fail_all(|func| TaskError::Internal {
                            func: func.to_string(),
                            detail: detail.clone(),
                        });
                    }
                    match host.map(|_| respawn(&shared, &spawn, host)) {
                        Some(Ok(w)) => w,
                        Some(Err(e)) => {
                            shared.driver_lost(&format!("no worker process could be started: {e}"));
                            return;
                        }
                        None => {
                            shared.driver_lost(&detail);
                            return;
                        }
                    }
                }
            }
        }
    };
    let mut ran_here = 0u64;
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
                    if let Some(job) = claim(&shared, job) {
                        held.push_back(Held::new(job));
                    }
                    continue;
                }
                None => break,
            }
        }
        // A remote worker lost while its driver was idle is replaced before a chunk goes to
        // it: its death is not the chunk's.
        if worker.is_launched() && held.iter().all(|h| h.sent.is_none()) && worker.is_gone() {
            let lost = worker.reap("it was lost while it had no work".into());
            log::warn!(target: "wasmpool::pool", "{} {} while idle ({}): replacing it", worker.name(), lost.cause, lost.detail);
            give_back(&shared, &mut held);
            match respawn(&shared, &spawn, host) {
                Ok(w) => {
                    worker = w;
                    continue;
                }
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
        let front = held.front_mut().expect("not empty");
        let sent = match front.sent {
            Some(id) => Ok(id),
            None => {
                let id = shared.next_chunk_id();
                match worker.send(&front.job, id) {
                    Ok(()) => {
                        front.sent = Some(id);
                        Ok(id)
                    }
                    Err(SendError::TooLarge { bytes, module }) => {
                        split_or_refuse(&mut held, bytes, module);
                        continue;
                    }
                    Err(SendError::Lost(stop)) => Err(stop),
                }
            }
        };
        let result = sent.and_then(|id| {
            if shared.max_tasks_per_worker.is_none() && worker.is_quick(ahead::limit(&worker)) {
                ahead::send_ahead(&shared, &mut worker, &mut held);
            }
            // A driver whose last held chunk ends goes idle right after handing out its
            // outcomes, unless it is to replace its worker first.
            let last_held = held.len() == 1 && shared.max_tasks_per_worker.is_none();
            let job = &held.front().expect("not empty").job;
            let observed = job.observed();
            worker.collect(job, id, |first, reported, per_item| {
                // An observing stream takes its items' output with their outcomes.
                for (i, stdout, stderr) in reported.output().filter(|_| !observed) {
                    let name = job.task.name();
                    shared
                        .output
                        .relay(job.task_no(first + i), name, stdout, stderr);
                }
                if last_held && first + reported.len() == job.len() {
                    turn = Some(shared.queue.take_spin_turn());
                }
                reported.deliver(job, first, shared.settings.max_wasm_stack, per_item);
            })
        });
        match result {
            Ok(()) => {
                shared.note_item_time(worker.typical_wait);
                let done = held.pop_front().expect("not empty");
                ran_here += done.job.len() as u64;
                shared.recycle(done.job);
                if shared
                    .max_tasks_per_worker
                    .is_some_and(|max| ran_here >= max)
                {
                    worker.shutdown();
                    match respawn(&shared, &spawn, host) {
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
                if front.job.is_empty() {
                    held.pop_front();
                }
                ran_here = 0;
                // A remote slot hands what it holds back to the queue first: its relaunch may
                // take long (a back-off, a Slurm step waiting for resources), and other
                // workers can run it meanwhile.
                if host.is_some() {
                    give_back(&shared, &mut held);
                }
                match respawn(&shared, &spawn, host) {
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

/// Hands the jobs a driver holds (none sent to a live worker) back to the queue, for any
/// driver to take, unless the pool is closed (then the queue takes no job, and they stay).
fn give_back(shared: &Shared, held: &mut VecDeque<Held>) {
    let mut kept = VecDeque::new();
    for h in held.drain(..) {
        if let Err((job, _)) = shared.queue.push(h.job) {
            kept.push_back(Held::new(job));
        }
    }
    *held = kept;
}

/// Readies a job taken from the queue: cancelled items are dropped, the others can no longer
/// be cancelled. `None` if nothing is left to run.
fn claim(shared: &Shared, mut job: Job) -> Option<Job> {
    if shared.is_terminating() {
        job.cancel();
        return None;
    }
    // Only single submissions can be cancelled (see `Gather::No`).
    if job.gather == Gather::Yes {
        let items = std::mem::take(job.items_mut());
        let kept: Vec<_> = items
            .into_iter()
            .filter(|item| !job.sink_of(item).is_cancelled(item.index))
            .collect();
        for item in &kept {
            job.sink_of(item).start(item.index);
        }
        *job.items_mut() = kept;
    }
    (!job.is_empty()).then_some(job)
}

/// The front job's frame would be `bytes`, more than a frame may be: nothing was sent and the
/// worker is fine. A chunk of several items is split in two, each half sent on its own; a lone
/// item, or a module whose code does not fit, fails with the reason. Never a crash, never a
/// retry: the caller's arguments, not the worker, are at fault.
fn split_or_refuse(held: &mut VecDeque<Held>, bytes: usize, module: bool) {
    let front = held.front_mut().expect("not empty");
    if !module && front.job.len() > 1 {
        let half = front.job.len() / 2;
        let back = front.job.split_off(half);
        // Only unsent jobs can be behind an unsent one (see `ahead::send_ahead`): the order
        // stays that of the input.
        held.insert(1, Held::new(back));
        return;
    }
    let job = held.pop_front().expect("not empty").job;
    job.fail_all(|func| SendError::too_large(func, bytes, module));
}

/// Settles the item an interrupted chunk was running (a timeout, a crash, or a retry) and
/// leaves the items after it in `job`, to run on the next worker. `false` when the pool is
/// terminating: the caller cancels what it holds and stops.
fn settle(shared: &Shared, job: &mut Job, stop: Interrupted, pid: u32) -> bool {
    // Its items one by one: the one it was running may be retried on its own.
    let mut rest = job.items_mut().split_off(stop.at);
    let mut item = rest.remove(0);
    let func = job.task.name().to_string();
    if shared.is_terminating() {
        job.deliver(&item, Err(TaskError::Cancelled { func }));
        *job.items_mut() = rest;
        return false;
    }
    let lost = &stop.lost;
    match stop.why {
        Why::Overran => {
            log::warn!(target: "wasmpool::pool", "worker {pid} did not stop `{func}` at its timeout: killed");
            let error = stop.error(func, pid, &job.limits, item.crashes + 1);
            job.deliver(&item, Err(error));
        }
        Why::Crashed if item.crashes < shared.retries => {
            log::warn!(target: "wasmpool::pool", "worker {pid} {} running `{func}` ({}): retrying it", lost.cause, lost.detail);
            item.crashes += 1;
            rest.insert(0, item);
        }
        Why::Crashed => {
            log::warn!(target: "wasmpool::pool", "worker {pid} {} running `{func}` ({})", lost.cause, lost.detail);
            let error = stop.error(func, pid, &job.limits, item.crashes + 1);
            job.deliver(&item, Err(error));
        }
    }
    *job.items_mut() = rest;
    true
}

/// Starts a replacement worker, retrying a few times with a pause; on a remote host, with the
/// host's back-off between tries, until the host is given up (see [`HostHealth`]).
fn respawn(
    shared: &Shared,
    start: &impl Fn() -> Result<WorkerProcess, Error>,
    host: Option<&HostHealth>,
) -> Result<WorkerProcess, Error> {
    if let Some(host) = host {
        loop {
            // The pause, in slices, so that a pool that terminates is not kept waiting.
            let pause = host.backoff();
            let until = std::time::Instant::now() + pause;
            while std::time::Instant::now() < until {
                if shared.is_terminating() {
                    return Err(Error::Closed);
                }
                thread::sleep(Duration::from_millis(20).min(pause));
            }
            if shared.is_terminating() {
                return Err(Error::Closed);
            }
            match start() {
                Ok(w) => return Ok(w),
                Err(e) if host.given_up().is_some() => return Err(e),
                Err(e) => {
                    log::warn!(target: "wasmpool::pool", "cannot start a replacement worker: {e}; trying again after {:?}", host.backoff());
                }
            }
        }
    }
    let mut last = Error::Closed;
    for attempt in 0..5u32 {
        if shared.is_terminating() {
            return Err(Error::Closed);
        }
        match start() {
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
