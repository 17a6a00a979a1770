//! The shared state of a worker behind a launcher (ssh, srun, kubectl exec): it cannot map the
//! pool's region, so its tasks reach every object through the host, one [`SharedRequest`]
//! over the worker's link for each operation, answered by one [`SharedReply`] (see
//! `pool/link.rs`, which hands the requests to [`serve`], and `worker/shared/reach.rs`, which
//! sends them). An operation then costs a round trip of the link instead of an atomic
//! instruction: tens of microseconds on a LAN, more over ssh to far hosts.
//!
//! The host runs each operation on the region as a local worker would, with the worker's
//! launcher pid as the holder of the locks it takes: the pool releases that pid's locks, as
//! abandoned, when it reaps the worker, as it does for a local worker's own pid. Every
//! request names its object as the grant carried it; one that is not among the pool's
//! objects is refused, so that a worker cannot make the host touch the region anywhere else.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::numbers::{self, Number};
use super::ring::Ring;
use super::{Object, SharedObjects};
use crate::wire::{MAX_FRAME_BYTES, SharedFailure, SharedOp, SharedReply, SharedRequest};

/// How long a lock wait goes on before it checks whether its worker is still wanted.
const SLICE: Duration = Duration::from_millis(100);

/// Answers the requests of one worker as they come, each with `reply`, until the requests end
/// (its link is closed) or `reply` fails. `holder` is the worker's launcher pid; a wait ends
/// as `Gone` once `still_wanted` is false (the worker's link ended, the pool is closing).
pub(crate) fn serve(
    objects: &SharedObjects,
    holder: u32,
    requests: crossbeam_channel::Receiver<SharedRequest>,
    still_wanted: &dyn Fn() -> bool,
    mut reply: impl FnMut(SharedReply) -> bool,
) {
    for request in requests {
        let answer = answer(objects, holder, request, &|| {
            still_wanted() && !objects.closing()
        });
        if !reply(answer) {
            return;
        }
    }
}

/// Runs one request on the pool's objects for the worker whose locks are held as `holder`.
pub(crate) fn answer(
    objects: &SharedObjects,
    holder: u32,
    request: SharedRequest,
    still_wanted: &dyn Fn() -> bool,
) -> SharedReply {
    let SharedRequest { object, op } = request;
    if !objects.holds(&object) {
        return refused(format!(
            "{object:?} is not one of this pool's shared objects"
        ));
    }
    let region = &objects.region;
    let deadline = super::deadline_in_ms;
    match (op, object) {
        (SharedOp::Acquire { wait_ms }, object) => match lock_of(object) {
            Some(at) => acquire(objects, at, holder, deadline(wait_ms), still_wanted),
            None => refused(format!("{object:?} has no lock of its own to take")),
        },
        (SharedOp::Release { abandoned }, object) => match lock_of(object) {
            Some(at) => {
                region.release(at, holder, abandoned);
                SharedReply::Done
            }
            None => refused(format!("{object:?} has no lock of its own to give back")),
        },
        (SharedOp::Read { start, count }, object) => {
            let Some((at, len, _)) = numbered(object) else {
                return refused(format!("{object:?} holds no numbers"));
            };
            if let Some(index) = numbers::out_of_range(start, count.into(), len) {
                return refused(format!("out-of-range({index})"));
            }
            if u64::from(count) * 8 > (MAX_FRAME_BYTES / 2) as u64 {
                return refused(format!(
                    "a read of {count} numbers is more than one frame of the link carries: \
                     read fewer at a time"
                ));
            }
            let words = (start..start + count)
                .map(|i| numbers::element(region, at, i).map_or(0, |w| w.load(Ordering::SeqCst)))
                .collect();
            SharedReply::Words(words)
        }
        (SharedOp::Write { start, words }, object) => {
            let Some((at, len, _)) = numbered(object) else {
                return refused(format!("{object:?} holds no numbers"));
            };
            if let Some(index) = numbers::out_of_range(start, words.len() as u64, len) {
                return refused(format!("out-of-range({index})"));
            }
            for (i, word) in (start..).zip(words) {
                if let Some(w) = numbers::element(region, at, i) {
                    w.store(word, Ordering::SeqCst);
                }
            }
            SharedReply::Done
        }
        (SharedOp::Add { index, delta }, object) => {
            let Some((at, len, float)) = numbered(object) else {
                return refused(format!("{object:?} holds no numbers"));
            };
            if let Some(index) = numbers::out_of_range(index, 1, len) {
                return refused(format!("out-of-range({index})"));
            }
            let Some(word) = numbers::element(region, at, index) else {
                return refused(format!("{object:?} is outside the region"));
            };
            SharedReply::Word(if float {
                f64::add(word, f64::from_word(delta)).to_word()
            } else {
                i64::add(word, i64::from_word(delta)).to_word()
            })
        }
        (SharedOp::CompareAndSwap { expected, new }, Object::Value { at }) => {
            match numbers::element(region, at, 0) {
                Some(word) => {
                    SharedReply::Word(numbers::compare_and_swap(word, expected, new).to_word())
                }
                None => refused(format!("{object:?} is outside the region")),
            }
        }
        (SharedOp::Put { item, wait_ms }, object) => match ring(objects, object, true) {
            Some(ring) => done(ring.put(holder, &item, deadline(wait_ms), still_wanted)),
            None => refused(format!("{object:?} takes no items")),
        },
        (SharedOp::Get { wait_ms }, object) => match ring(objects, object, false) {
            Some(ring) => match ring.get(holder, deadline(wait_ms), still_wanted) {
                Ok(item) => SharedReply::Item(item),
                Err(failure) => SharedReply::Failed(failure),
            },
            None => refused(format!("{object:?} gives no items")),
        },
        (SharedOp::Poll { wait_ms }, object) => match ring(objects, object, false) {
            Some(ring) => match ring.poll(deadline(wait_ms), still_wanted) {
                Ok(waiting) => SharedReply::Flag(waiting),
                Err(failure) => SharedReply::Failed(failure),
            },
            None => refused(format!("{object:?} gives no items")),
        },
        (SharedOp::Len, object) => match ring(objects, object, false) {
            Some(ring) => SharedReply::Count(ring.len()),
            None => refused(format!("{object:?} holds no items")),
        },
        (SharedOp::Close, object) => match ring(objects, object, true) {
            Some(ring) => {
                ring.close();
                SharedReply::Done
            }
            None => refused(format!("{object:?} cannot be closed")),
        },
        (SharedOp::Dict(request), Object::Dict { id }) if request.dict() == id => {
            SharedReply::Dict(super::served::answer(objects, &request))
        }
        (op, object) => refused(format!("{op:?} is not an operation of {object:?}")),
    }
}

/// Takes the lock at `at` for `holder`, in slices, so that a wait whose worker is gone ends.
fn acquire(
    objects: &SharedObjects,
    at: u64,
    holder: u32,
    deadline: Option<Instant>,
    still_wanted: &dyn Fn() -> bool,
) -> SharedReply {
    loop {
        let slice = Instant::now() + SLICE;
        let until = deadline.map_or(slice, |d| d.min(slice));
        match objects.region.acquire(at, holder, Some(until)) {
            Ok(abandoned) if still_wanted() => return SharedReply::Acquired { abandoned },
            Ok(abandoned) => {
                // Taken for a worker that is gone: given back as it was found. (Had the pool
                // reaped the worker after this check, it would have released it itself.)
                objects.region.release(at, holder, abandoned);
                return SharedReply::Failed(SharedFailure::Gone);
            }
            Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
                return SharedReply::Failed(SharedFailure::Timeout);
            }
            Err(_) if !still_wanted() => return SharedReply::Failed(SharedFailure::Gone),
            Err(_) => {}
        }
    }
}

/// The lock a task may take: a lock's, or a value's or array's own.
fn lock_of(object: Object) -> Option<u64> {
    match object {
        Object::Lock { at }
        | Object::Value { at }
        | Object::FloatValue { at }
        | Object::Array { at, .. }
        | Object::FloatArray { at, .. } => Some(at),
        Object::Queue { .. } | Object::PipeEnd { .. } | Object::Dict { .. } => None,
    }
}

/// A value's or array's place, its length and whether its numbers are floats.
fn numbered(object: Object) -> Option<(u64, u32, bool)> {
    match object {
        Object::Value { at } => Some((at, 1, false)),
        Object::FloatValue { at } => Some((at, 1, true)),
        Object::Array { at, len } => Some((at, len, false)),
        Object::FloatArray { at, len } => Some((at, len, true)),
        Object::Lock { .. }
        | Object::Queue { .. }
        | Object::PipeEnd { .. }
        | Object::Dict { .. } => None,
    }
}

fn ring(objects: &SharedObjects, object: Object, sending: bool) -> Option<Ring<'_>> {
    Ring::of(&objects.region, object, sending)
}

fn done(result: Result<(), SharedFailure>) -> SharedReply {
    match result {
        Ok(()) => SharedReply::Done,
        Err(failure) => SharedReply::Failed(failure),
    }
}

fn refused(detail: String) -> SharedReply {
    SharedReply::Failed(SharedFailure::Other(detail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::region::LOCK_BYTES;
    use crate::shared::ring::RING_HEADER;

    fn request(object: Object, op: SharedOp) -> SharedRequest {
        SharedRequest { object, op }
    }

    fn yes() -> bool {
        true
    }

    #[test]
    fn an_object_not_of_the_pool_is_refused_and_nothing_touched() {
        let objects = SharedObjects::new().unwrap();
        let value = objects
            .add("v", Some(LOCK_BYTES + 8), |at| Object::Value {
                at: at.unwrap(),
            })
            .unwrap();
        let Object::Value { at } = value else {
            unreachable!()
        };
        // Another place, or the same place as another kind: not one of the pool's.
        for stranger in [
            Object::Value { at: at + 4096 },
            Object::Array { at, len: 1 << 20 },
            Object::Dict { id: 0 },
        ] {
            let reply = answer(
                &objects,
                1,
                request(stranger, SharedOp::Add { index: 0, delta: 5 }),
                &yes,
            );
            assert!(
                matches!(&reply, SharedReply::Failed(SharedFailure::Other(d)) if d.contains("not one of")),
                "{reply:?}"
            );
        }
        let read = answer(
            &objects,
            1,
            request(value, SharedOp::Read { start: 0, count: 2 }),
            &yes,
        );
        assert!(
            matches!(&read, SharedReply::Failed(SharedFailure::Other(d)) if d == "out-of-range(1)"),
            "{read:?}"
        );
        let wrong = answer(
            &objects,
            1,
            request(value, SharedOp::Get { wait_ms: None }),
            &yes,
        );
        assert!(matches!(
            wrong,
            SharedReply::Failed(SharedFailure::Other(_))
        ));
        let add = answer(
            &objects,
            1,
            request(value, SharedOp::Add { index: 0, delta: 5 }),
            &yes,
        );
        assert_eq!(add, SharedReply::Word(5));
    }

    #[test]
    fn locks_are_held_by_the_worker_they_were_taken_for() {
        let objects = SharedObjects::new().unwrap();
        let lock = objects
            .add("l", Some(LOCK_BYTES), |at| Object::Lock { at: at.unwrap() })
            .unwrap();
        let acquire = |holder, wait_ms| {
            answer(
                &objects,
                holder,
                request(lock, SharedOp::Acquire { wait_ms }),
                &yes,
            )
        };
        assert_eq!(
            acquire(7, Some(0)),
            SharedReply::Acquired { abandoned: false }
        );
        assert_eq!(
            acquire(8, Some(20)),
            SharedReply::Failed(SharedFailure::Timeout)
        );
        // Worker 7 is reaped holding it: the next holder hears it was abandoned.
        assert_eq!(objects.release_locks_of(7), 1);
        assert_eq!(
            acquire(8, Some(0)),
            SharedReply::Acquired { abandoned: true }
        );
        let release = answer(
            &objects,
            8,
            request(lock, SharedOp::Release { abandoned: false }),
            &yes,
        );
        assert_eq!(release, SharedReply::Done);
        // A wait for a worker that is gone ends, and takes nothing.
        assert_eq!(acquire(9, None), SharedReply::Acquired { abandoned: false });
        let gone = answer(
            &objects,
            10,
            request(lock, SharedOp::Acquire { wait_ms: None }),
            &|| false,
        );
        assert_eq!(gone, SharedReply::Failed(SharedFailure::Gone));
        assert_eq!(objects.release_locks_of(10), 0);
    }

    #[test]
    fn queues_and_pipe_ends_take_and_give_items() {
        let objects = SharedObjects::new().unwrap();
        let queue = objects
            .add("q", Some(RING_HEADER + 4096), |at| Object::Queue {
                at: at.unwrap(),
                capacity: 4096,
                max_items: 0,
            })
            .unwrap();
        let ask = |object, op| answer(&objects, 3, request(object, op), &yes);
        for item in [b"a".to_vec(), b"bc".to_vec()] {
            let put = ask(
                queue,
                SharedOp::Put {
                    item,
                    wait_ms: None,
                },
            );
            assert_eq!(put, SharedReply::Done);
        }
        assert_eq!(ask(queue, SharedOp::Len), SharedReply::Count(2));
        assert_eq!(ask(queue, SharedOp::Close), SharedReply::Done);
        let get = |wait_ms| ask(queue, SharedOp::Get { wait_ms });
        assert_eq!(get(None), SharedReply::Item(b"a".to_vec()));
        assert_eq!(get(None), SharedReply::Item(b"bc".to_vec()));
        assert_eq!(get(Some(10)), SharedReply::Failed(SharedFailure::Closed));

        // A pipe's second end is not in the directory, but is the pool's all the same.
        let (a, b) = objects.add_pipe("p", 4096).unwrap();
        let item = b"hello".to_vec();
        assert_eq!(
            ask(
                a,
                SharedOp::Put {
                    item,
                    wait_ms: None
                }
            ),
            SharedReply::Done
        );
        assert_eq!(
            ask(a, SharedOp::Poll { wait_ms: Some(0) }),
            SharedReply::Flag(false)
        );
        assert_eq!(
            ask(b, SharedOp::Poll { wait_ms: Some(0) }),
            SharedReply::Flag(true)
        );
        assert_eq!(
            ask(b, SharedOp::Get { wait_ms: None }),
            SharedReply::Item(b"hello".to_vec())
        );
    }
}
