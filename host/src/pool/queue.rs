//! The pool's queue of [`Job`]s, shared by the callers who submit and the driver threads who
//! run them.
//!
//! Two things a plain channel does not do: a driver that takes a single `submit` also takes
//! the ones right behind it that call the same export with the same limits and grants (about
//! a quarter of its share of the queue, as `map` chunks), so that a burst of submissions
//! travels to the workers in a few frames instead of one round trip each (chunks that `map`
//! and `imap` made are never merged: their size was chosen); and a driver that finds the queue empty spins briefly ([`crate::spin`]) before it
//! sleeps, so that a caller's next task does not wait for a cross-core wake-up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::job::Job;

/// The most items a driver gathers from separate jobs into one chunk.
const MAX_GATHERED_ITEMS: usize = 1024;

/// A driver's turn to spin for the next job (see [`JobQueue::next`]). From the moment it is
/// taken, the queue counts its driver as looking for work: a job pushed meanwhile wakes no
/// sleeper, as this driver is on its way.
pub(crate) struct SpinTurn<'a> {
    queue: &'a JobQueue,
    turn: usize,
}

impl std::fmt::Debug for SpinTurn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SpinTurn").field(&self.turn).finish()
    }
}

impl Drop for SpinTurn<'_> {
    fn drop(&mut self) {
        self.queue.spinning.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) struct JobQueue {
    state: Mutex<State>,
    available: Condvar,
    /// Jobs in the queue, readable without the lock, for spinning.
    queued: AtomicUsize,
    /// Drivers spinning for a job, or about to (holding a [`SpinTurn`]): while one is, a new
    /// job needs no wake-up (waking a sleeper too would only put a second thread on the cores
    /// to find nothing).
    spinning: AtomicUsize,
    /// Bumped by each driver that goes idle: only the driver that went idle last spins (see
    /// [`JobQueue::next`]).
    spin_turn: AtomicUsize,
}

/// Why the queue refused a job.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The pool was closed.
    Closed,
    /// No driver is left to run jobs: none could start a worker (the reason says why).
    NoWorkers(String),
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Items in `jobs`, for sharing a burst fairly among the drivers.
    items: usize,
    closed: bool,
    /// Set once no driver is left: why.
    abandoned: Option<String>,
    /// Drivers blocked on the condition variable (only they need a wake-up).
    sleepers: usize,
}

impl JobQueue {
    pub(crate) fn new() -> Self {
        JobQueue {
            state: Mutex::new(State::default()),
            available: Condvar::new(),
            queued: AtomicUsize::new(0),
            spinning: AtomicUsize::new(0),
            spin_turn: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a job; hands it back, with why, if the queue no longer takes jobs.
    #[allow(clippy::result_large_err)] // the job is handed back whole, to fail its items
    pub(crate) fn push(&self, job: Job) -> Result<(), (Job, Refused)> {
        let mut state = self.lock();
        if let Some(reason) = &state.abandoned {
            return Err((job, Refused::NoWorkers(reason.clone())));
        }
        if state.closed {
            return Err((job, Refused::Closed));
        }
        state.items += job.len();
        state.jobs.push_back(job);
        self.queued.fetch_add(1, Ordering::Release);
        let wake = state.sleepers > 0 && self.spinning.load(Ordering::Acquire) == 0;
        drop(state);
        if wake {
            self.available.notify_one();
        }
        Ok(())
    }

    /// Refuses new jobs; drivers still take what is queued, then see the end.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.available.notify_all();
    }

    /// For the last driver, giving up because no worker could be started: hands back every
    /// queued job (to fail them), and refuses every job pushed from now on with `reason`,
    /// instead of leaving them to wait for a driver that will never come.
    pub(crate) fn abandon(&self, reason: String) -> Vec<Job> {
        let mut state = self.lock();
        state.abandoned = Some(reason);
        state.items = 0;
        self.queued.store(0, Ordering::Release);
        let jobs = state.jobs.drain(..).collect();
        drop(state);
        self.available.notify_all();
        jobs
    }

    /// Takes every queued job (to cancel them).
    pub(crate) fn drain(&self) -> Vec<Job> {
        let mut state = self.lock();
        state.items = 0;
        self.queued.store(0, Ordering::Release);
        state.jobs.drain(..).collect()
    }

    /// Takes the turn to spin for the next job (see [`JobQueue::next`]), for a driver about
    /// to go idle: it takes it before it hands out its last outcome, because the caller who
    /// gets that outcome may submit the next task at once.
    pub(crate) fn take_spin_turn(&self) -> SpinTurn<'_> {
        self.spinning.fetch_add(1, Ordering::AcqRel);
        SpinTurn {
            queue: self,
            turn: self
                .spin_turn
                .fetch_add(1, Ordering::AcqRel)
                .wrapping_add(1),
        }
    }

    /// The next job for one of `drivers` drivers, with the compatible jobs queued right
    /// behind it folded in (up to a fair share of the queued items); `None` once the queue is
    /// closed and empty. `turn` is the driver's from [`JobQueue::take_spin_turn`]. A driver
    /// that has waited `idle.0` with nothing to do calls `idle.1` once, outside the lock.
    pub(crate) fn next(
        &self,
        drivers: usize,
        turn: SpinTurn<'_>,
        idle: (Duration, impl FnOnce()),
    ) -> Option<Job> {
        // One spinning driver is enough to catch the next job; a second would only take a
        // core from the workers and the caller. It is the driver that went idle last, which
        // takes the spin over from any other: its worker has just finished and still spins
        // on its pipe, so a caller who submits one task at a time keeps one driver and one
        // worker awake, instead of waking the two of them in turn (on two cores, the extra
        // spinners made the round trip slower).
        crate::spin::spin_until(|| {
            self.queued.load(Ordering::Acquire) > 0
                || self.spin_turn.load(Ordering::Acquire) != turn.turn
        });
        let (patience, on_idle) = idle;
        let mut on_idle = Some(on_idle);
        let mut state = self.lock();
        // Under the lock, so that a push either sees this driver still looking, or sees it
        // asleep below.
        drop(turn);
        loop {
            if let Some(job) = self.take(&mut state, drivers) {
                return Some(job);
            }
            if state.closed || state.abandoned.is_some() {
                return None;
            }
            state.sleepers += 1;
            let timed_out;
            (state, timed_out) = match &on_idle {
                Some(_) => {
                    let (state, waited) = self
                        .available
                        .wait_timeout(state, patience)
                        .unwrap_or_else(|e| e.into_inner());
                    (state, waited.timed_out())
                }
                None => (
                    self.available
                        .wait(state)
                        .unwrap_or_else(|e| e.into_inner()),
                    false,
                ),
            };
            state.sleepers -= 1;
            if let Some(on_idle) = on_idle.take_if(|_| timed_out) {
                drop(state);
                on_idle();
                state = self.lock();
            }
        }
    }

    /// A job to send ahead to a busy driver's worker that already holds `holding` jobs, so
    /// that it never waits for the host between chunks; only while at least `holding` jobs
    /// per driver are queued, so that no driver takes more than its share of the queue (a
    /// driver's idea of how quick its items are comes from earlier items, which can mislead
    /// it), and no idle driver is left without work.
    pub(crate) fn next_ahead(&self, drivers: usize, holding: usize) -> Option<Job> {
        if self.queued.load(Ordering::Acquire) < drivers.max(1) * holding.max(1) {
            return None;
        }
        let mut state = self.lock();
        self.take(&mut state, drivers)
    }

    fn take(&self, state: &mut MutexGuard<'_, State>, drivers: usize) -> Option<Job> {
        let mut job = state.jobs.pop_front()?;
        // Python's chunking heuristic, over what is queued: about four chunks per driver, so
        // that uneven tasks still spread over the workers.
        let share = super::job::default_chunksize(state.items, drivers).min(MAX_GATHERED_ITEMS);
        let mut taken = 1;
        while let Some(next) = state.jobs.front()
            && job.len() + next.len() <= share
            && job.same_call(next)
        {
            let next = state.jobs.pop_front().expect("just seen");
            job.append(next);
            taken += 1;
        }
        state.items -= job.len();
        self.queued.fetch_sub(taken, Ordering::Release);
        // Work is left and nobody may be looking: pass the wake-up on.
        if !state.jobs.is_empty() && state.sleepers > 0 {
            self.available.notify_one();
        }
        Some(job)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::limits::{Grants, Limits};
    use crate::module::{Module, Task};
    use crate::pool::job::{Gather, JobItem, Sink};
    use crate::pool::outcome::Outcome;

    /// A driver that never gets bored.
    const NOT_IDLE: (Duration, fn()) = (Duration::from_secs(3600), || {});

    struct Nowhere;
    impl Sink for Nowhere {
        fn deliver(&self, _index: usize, _outcome: Outcome) {}
    }

    /// A module with the two exports the tests queue calls to.
    fn module() -> Module {
        let wat = r#"(module
            (func (export "square") (param i64) (result i64) local.get 0 local.get 0 i64.mul)
            (func (export "slow-square") (param i64 i32) (result i64) local.get 0))"#;
        Module::from_bytes(wat).unwrap()
    }

    fn job(task: &Task, items: usize, gather: Gather, grants: &Arc<Grants>) -> Job {
        Job::new(
            task.clone(),
            (0..items)
                .map(|i| JobItem {
                    index: i,
                    task_no: i as u64,
                    args: Default::default(),
                    crashes: 0,
                    sink: Some(Arc::new(Nowhere)),
                })
                .collect(),
            gather,
            Limits::new().resolve(),
            Arc::clone(grants),
            None,
        )
    }

    #[test]
    fn single_submissions_gather_into_fair_chunks_and_chosen_chunks_stay_whole() {
        let module = module();
        let square = module.task("square").unwrap();
        let slow = module.task("slow-square").unwrap();
        let grants = Arc::new(Grants::new());
        let queue = JobQueue::new();
        for _ in 0..16 {
            assert!(queue.push(job(&square, 1, Gather::Yes, &grants)).is_ok());
        }
        queue
            .push(job(&slow, 1, Gather::Yes, &grants))
            .ok()
            .unwrap();
        queue
            .push(job(&square, 3, Gather::No, &grants))
            .ok()
            .unwrap();
        queue
            .push(job(&square, 1, Gather::Yes, &grants))
            .ok()
            .unwrap();
        // 21 items queued, 2 drivers: chunks of ceil(21 / 8) = 3 at first, smaller as the
        // queue drains (the share is taken of what is left).
        let mut taken = Vec::new();
        while queue.queued.load(Ordering::Acquire) > 0 {
            let j = queue.next(2, queue.take_spin_turn(), NOT_IDLE).unwrap();
            taken.push((j.task.name().to_string(), j.gather, j.len()));
        }
        let sizes: Vec<usize> = taken.iter().map(|t| t.2).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 21, "{taken:?}");
        assert_eq!(&sizes[..2], &[3, 3], "{taken:?}");
        assert!(sizes.iter().all(|&n| n <= 3), "{taken:?}");
        // Another export is never folded in, and a chosen chunk stays as it was.
        assert!(
            taken.contains(&("slow-square".into(), Gather::Yes, 1)),
            "{taken:?}"
        );
        assert!(
            taken.contains(&("square".into(), Gather::No, 3)),
            "{taken:?}"
        );
        queue.close();
        assert!(matches!(
            queue.push(job(&square, 1, Gather::Yes, &grants)),
            Err((_, Refused::Closed))
        ));
        assert!(queue.next(2, queue.take_spin_turn(), NOT_IDLE).is_none());
    }

    #[test]
    fn an_abandoned_queue_hands_back_its_jobs_and_refuses_new_ones() {
        let module = module();
        let square = module.task("square").unwrap();
        let grants = Arc::new(Grants::new());
        let queue = JobQueue::new();
        for _ in 0..3 {
            assert!(queue.push(job(&square, 1, Gather::No, &grants)).is_ok());
        }
        assert_eq!(queue.abandon("no workers".into()).len(), 3);
        let Err((_, Refused::NoWorkers(why))) = queue.push(job(&square, 1, Gather::No, &grants))
        else {
            panic!("accepted a job with no driver left")
        };
        assert_eq!(why, "no workers");
        assert!(queue.next(2, queue.take_spin_turn(), NOT_IDLE).is_none());
    }

    #[test]
    fn a_driver_idle_for_its_patience_calls_back_once_and_still_takes_work() {
        let module = module();
        let square = module.task("square").unwrap();
        let grants = Arc::new(Grants::new());
        let queue = Arc::new(JobQueue::new());
        let bored = Arc::new(AtomicUsize::new(0));
        let driver = {
            let (queue, bored) = (Arc::clone(&queue), Arc::clone(&bored));
            std::thread::spawn(move || {
                let on_idle = || {
                    bored.fetch_add(1, Ordering::AcqRel);
                };
                let patience = Duration::from_millis(20);
                queue
                    .next(2, queue.take_spin_turn(), (patience, on_idle))
                    .map(|job| job.len())
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while bored.load(Ordering::Acquire) == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Five more patience periods: the callback runs once, not once per period.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(bored.load(Ordering::Acquire), 1);
        assert!(queue.push(job(&square, 2, Gather::No, &grants)).is_ok());
        assert_eq!(driver.join().unwrap(), Some(2));
        assert_eq!(bored.load(Ordering::Acquire), 1);
    }

    #[test]
    fn a_driver_holding_the_spin_turn_counts_as_looking_for_work() {
        let module = module();
        let square = module.task("square").unwrap();
        let grants = Arc::new(Grants::new());
        let queue = JobQueue::new();
        let older = queue.take_spin_turn();
        let newer = queue.take_spin_turn();
        // Both are on their way to the queue: a push wakes nobody.
        assert_eq!(queue.spinning.load(Ordering::Acquire), 2);
        assert!(queue.push(job(&square, 1, Gather::Yes, &grants)).is_ok());
        // The older turn no longer spins, but still takes a job that is there.
        assert!(queue.next(2, older, NOT_IDLE).is_some());
        assert_eq!(queue.spinning.load(Ordering::Acquire), 1);
        drop(newer);
        assert_eq!(queue.spinning.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_driver_takes_ahead_only_its_share_of_the_queue() {
        let module = module();
        let slow = module.task("slow-square").unwrap();
        let grants = Arc::new(Grants::new());
        let queue = JobQueue::new();
        for _ in 0..7 {
            assert!(queue.push(job(&slow, 1, Gather::No, &grants)).is_ok());
        }
        // Four drivers: one holding a job may take a second while four are queued per
        // driver's one...
        assert!(queue.next_ahead(4, 1).is_some());
        // ...but a third only while eight are: six are left, for the other three drivers.
        assert!(queue.next_ahead(4, 2).is_none());
        assert_eq!(queue.queued.load(Ordering::Acquire), 6);
        assert!(queue.next_ahead(2, 3).is_some());
    }
}
