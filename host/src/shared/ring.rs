//! Queues and pipes in the shared-memory region: a ring of length-prefixed byte strings under
//! the region's lock, which the host and every worker operate on directly, so that a `put`
//! in one worker and a `get` in another pass no message through the host.
//!
//! Layout of a ring at offset `at` (see [`RING_HEADER`]): its lock (the region's, holding the
//! holder's pid), the head and tail positions (bytes, only ever growing), the item count, the
//! closed flag, a change counter and its sleeper count (a futex: waiters spin on it briefly,
//! then sleep), and `capacity` bytes of data. An item is its length (4 bytes, little-endian)
//! then its bytes, wrapping around the end of the data.
//!
//! Nothing is ever torn or duplicated: an operation changes the ring only under its lock, and
//! publishes with one store of the tail (a put) or the head (a get) after the bytes are in
//! place; a holder that dies between two steps left the ring as it was before its operation,
//! and the host releases its lock (as abandoned) when it reaps the worker. A get whose worker
//! is killed after it took the item, before the task saw it, loses that item: an item is
//! delivered to one get at the most.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Object;
use super::region::Region;
use crate::wire::SharedFailure;

/// The words before a ring's data.
pub(crate) const RING_HEADER: u64 = 64;

const HEAD: u64 = 8;
const TAIL: u64 = 16;
const COUNT: u64 = 24;
const CLOSED: u64 = 32;
/// The change counter (low half) and the sleepers (high half) share this word's place.
const CHANGES: u64 = 40;
const SLEEPERS: u64 = 44;

/// How long a waiter spins on the change counter before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

/// How long one sleep lasts at the most, so that a wait without a deadline still looks
/// whether it is wanted.
const SLICE: Duration = Duration::from_millis(50);

/// A ring in a region.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ring<'a> {
    region: &'a Region,
    at: u64,
    capacity: u64,
    /// The most items it holds (0: as many as fit).
    max_items: u64,
}

impl<'a> Ring<'a> {
    /// The ring at `at` with `capacity` bytes of data; `None` if it does not fit the region.
    pub(crate) fn new(
        region: &'a Region,
        at: u64,
        capacity: u64,
        max_items: u64,
    ) -> Option<Ring<'a>> {
        let end = at.checked_add(RING_HEADER)?.checked_add(capacity)?;
        (region.word64(at).is_some() && region.word64(end.checked_sub(8)?).is_some()).then_some(
            Ring {
                region,
                at,
                capacity,
                max_items,
            },
        )
    }

    /// The ring of `object` an item goes into (`sending`) or comes out of: a queue's own, or
    /// a pipe end's outbox or inbox; `None` for any other object, or one outside the region.
    pub(crate) fn of(region: &'a Region, object: Object, sending: bool) -> Option<Ring<'a>> {
        match object {
            Object::Queue {
                at,
                capacity,
                max_items,
            } => Ring::new(region, at, capacity, max_items),
            Object::PipeEnd {
                inbox,
                outbox,
                capacity,
            } => Ring::new(region, if sending { outbox } else { inbox }, capacity, 0),
            _ => None,
        }
    }

    fn word(&self, offset: u64) -> &AtomicU64 {
        self.region
            .word64(self.at + offset)
            .expect("checked by Ring::new")
    }

    fn word32(&self, offset: u64) -> &AtomicU32 {
        self.region
            .word32(self.at + offset)
            .expect("checked by Ring::new")
    }

    /// Runs `f` with the ring's lock held by `me`.
    fn locked<T>(
        &self,
        me: u32,
        deadline: Option<Instant>,
        f: impl FnOnce() -> T,
    ) -> Result<T, SharedFailure> {
        self.region
            .acquire(self.at, me, deadline)
            .map_err(|_| SharedFailure::Timeout)?;
        let out = f();
        self.region.release(self.at, me, false);
        Ok(out)
    }

    /// After a change: the counter moves, and sleepers are woken.
    fn changed(&self) {
        self.word32(CHANGES).fetch_add(1, Ordering::Release);
        if self.word32(SLEEPERS).load(Ordering::Acquire) > 0 {
            crate::shared::region::futex_wake(self.word32(CHANGES), i32::MAX);
        }
    }

    /// Waits for a change after `seen`, until `deadline`: spinning, then sleeping in slices.
    /// `Err(Timeout)` past the deadline, `Err(Gone)` when nobody wants the wait any more.
    fn wait_change(
        &self,
        seen: u32,
        deadline: Option<Instant>,
        still_wanted: &dyn Fn() -> bool,
    ) -> Result<(), SharedFailure> {
        let changes = self.word32(CHANGES);
        let start = Instant::now();
        while start.elapsed() < SPIN {
            if changes.load(Ordering::Acquire) != seen {
                return Ok(());
            }
            std::hint::spin_loop();
        }
        loop {
            if changes.load(Ordering::Acquire) != seen {
                return Ok(());
            }
            let slice = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(SharedFailure::Timeout);
                    }
                    (deadline - now).min(SLICE)
                }
                None => SLICE,
            };
            if !still_wanted() {
                return Err(SharedFailure::Gone);
            }
            self.word32(SLEEPERS).fetch_add(1, Ordering::AcqRel);
            crate::shared::region::futex_wait(changes, seen, Some(slice));
            self.word32(SLEEPERS).fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Copies `bytes` into the data at position `pos`, wrapping around.
    fn write_at(&self, pos: u64, bytes: &[u8]) {
        let offset = pos % self.capacity;
        let first = (self.capacity - offset).min(bytes.len() as u64) as usize;
        let data = self.at + RING_HEADER;
        self.region.write_bytes(data + offset, &bytes[..first]);
        self.region.write_bytes(data, &bytes[first..]);
    }

    /// Copies `len` bytes out of the data from position `pos`, wrapping around.
    fn read_at(&self, pos: u64, out: &mut [u8]) {
        let offset = pos % self.capacity;
        let first = (self.capacity - offset).min(out.len() as u64) as usize;
        let data = self.at + RING_HEADER;
        let (a, b) = out.split_at_mut(first);
        self.region.read_bytes(data + offset, a);
        self.region.read_bytes(data, b);
    }

    /// The item at `head`, if there is one; its length in the ring.
    fn item_at(&self, head: u64) -> Vec<u8> {
        let mut len = [0u8; 4];
        self.read_at(head, &mut len);
        let mut item = vec![0u8; u32::from_le_bytes(len) as usize];
        self.read_at(head + 4, &mut item);
        item
    }

    /// Appends `item`, waiting until `deadline` for room. A put that finds no room within its
    /// wait is `Full`; a closed ring is `Closed`.
    pub(crate) fn put(
        &self,
        me: u32,
        item: &[u8],
        deadline: Option<Instant>,
        still_wanted: &dyn Fn() -> bool,
    ) -> Result<(), SharedFailure> {
        let need = 4 + item.len() as u64;
        if need > self.capacity {
            return Err(SharedFailure::Other(format!(
                "an item of {} bytes is larger than the queue's room of {} bytes",
                item.len(),
                self.capacity - 4
            )));
        }
        loop {
            let seen = self.word32(CHANGES).load(Ordering::Acquire);
            let done = self.locked(me, deadline, || {
                if self.word(CLOSED).load(Ordering::Acquire) != 0 {
                    return Some(Err(SharedFailure::Closed));
                }
                let head = self.word(HEAD).load(Ordering::Acquire);
                let tail = self.word(TAIL).load(Ordering::Acquire);
                let count = self.word(COUNT).load(Ordering::Acquire);
                let room = self.capacity - (tail - head);
                if need > room || (self.max_items > 0 && count >= self.max_items) {
                    return None;
                }
                self.write_at(tail, &(item.len() as u32).to_le_bytes());
                self.write_at(tail + 4, item);
                self.word(COUNT).store(count + 1, Ordering::Release);
                self.word(TAIL).store(tail + need, Ordering::Release);
                self.changed();
                Some(Ok(()))
            })?;
            if let Some(done) = done {
                return done;
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Err(SharedFailure::Full);
            }
            match self.wait_change(seen, deadline, still_wanted) {
                Err(SharedFailure::Timeout) => return Err(SharedFailure::Full),
                other => other?,
            }
        }
    }

    /// Takes the first item, waiting until `deadline`; `Closed` once closed and empty.
    pub(crate) fn get(
        &self,
        me: u32,
        deadline: Option<Instant>,
        still_wanted: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, SharedFailure> {
        loop {
            let seen = self.word32(CHANGES).load(Ordering::Acquire);
            let got = self.locked(me, deadline, || {
                let head = self.word(HEAD).load(Ordering::Acquire);
                let tail = self.word(TAIL).load(Ordering::Acquire);
                if head == tail {
                    return (self.word(CLOSED).load(Ordering::Acquire) != 0)
                        .then_some(Err(SharedFailure::Closed));
                }
                let item = self.item_at(head);
                let count = self.word(COUNT).load(Ordering::Acquire);
                self.word(COUNT)
                    .store(count.saturating_sub(1), Ordering::Release);
                self.word(HEAD)
                    .store(head + 4 + item.len() as u64, Ordering::Release);
                self.changed();
                Some(Ok(item))
            })?;
            if let Some(got) = got {
                return got;
            }
            self.wait_change(seen, deadline, still_wanted)?;
        }
    }

    /// Whether an item waits (or the ring is closed), after waiting until `deadline`.
    pub(crate) fn poll(
        &self,
        deadline: Option<Instant>,
        still_wanted: &dyn Fn() -> bool,
    ) -> Result<bool, SharedFailure> {
        loop {
            let seen = self.word32(CHANGES).load(Ordering::Acquire);
            if self.word(COUNT).load(Ordering::Acquire) > 0 {
                return Ok(true);
            }
            if self.word(CLOSED).load(Ordering::Acquire) != 0 {
                return Ok(false);
            }
            match self.wait_change(seen, deadline, still_wanted) {
                Ok(()) => {}
                Err(SharedFailure::Timeout) => return Ok(false),
                Err(other) => return Err(other),
            }
        }
    }

    /// How many items wait now.
    pub(crate) fn len(&self) -> u64 {
        self.word(COUNT).load(Ordering::Acquire)
    }

    /// No more puts: gets take what is left, then see `Closed`.
    pub(crate) fn close(&self) {
        self.word(CLOSED).store(1, Ordering::Release);
        self.changed();
    }

    /// A copy of the items waiting now, in order (taken under the lock by `me`).
    pub(crate) fn snapshot(&self, me: u32) -> Vec<Vec<u8>> {
        self.locked(me, None, || {
            let mut items = Vec::new();
            let mut head = self.word(HEAD).load(Ordering::Acquire);
            let tail = self.word(TAIL).load(Ordering::Acquire);
            while head < tail {
                let item = self.item_at(head);
                head += 4 + item.len() as u64;
                items.push(item);
            }
            items
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> bool {
        true
    }

    #[test]
    fn items_go_round_the_ring_in_order_and_whole() {
        let (region, _file) = Region::create().unwrap();
        let ring = Ring::new(&region, 0, 64, 0).unwrap();
        let now = Some(Instant::now());
        for round in 0..50u32 {
            let item = format!("item {round} {}", "x".repeat(round as usize % 20));
            ring.put(1, item.as_bytes(), now, &wanted).unwrap();
            assert_eq!(ring.get(1, now, &wanted).unwrap(), item.as_bytes());
        }
        assert_eq!(ring.get(1, now, &wanted), Err(SharedFailure::Timeout));
        ring.put(1, b"a", now, &wanted).unwrap();
        ring.put(1, b"bc", now, &wanted).unwrap();
        assert_eq!(ring.snapshot(1), [b"a".to_vec(), b"bc".to_vec()]);
        ring.close();
        assert_eq!(ring.put(1, b"d", now, &wanted), Err(SharedFailure::Closed));
        assert_eq!(ring.get(1, now, &wanted).unwrap(), b"a");
        assert_eq!(ring.get(1, now, &wanted).unwrap(), b"bc");
        assert_eq!(ring.get(1, now, &wanted), Err(SharedFailure::Closed));
    }

    #[test]
    fn a_full_ring_or_a_bounded_one_refuses_a_put_that_may_not_wait() {
        let (region, _file) = Region::create().unwrap();
        let ring = Ring::new(&region, 0, 16, 0).unwrap();
        let now = Some(Instant::now());
        assert!(matches!(
            ring.put(1, &[0; 20], now, &wanted),
            Err(SharedFailure::Other(_))
        ));
        ring.put(1, &[1; 10], now, &wanted).unwrap();
        assert_eq!(
            ring.put(1, &[2; 10], now, &wanted),
            Err(SharedFailure::Full)
        );
        let bounded = Ring::new(&region, 256, 1024, 1).unwrap();
        bounded.put(1, b"one", now, &wanted).unwrap();
        assert_eq!(
            bounded.put(1, b"two", now, &wanted),
            Err(SharedFailure::Full)
        );
    }

    #[test]
    fn a_waiting_get_is_woken_by_a_put_from_another_thread() {
        let (region, _file) = Region::create().unwrap();
        let region = std::sync::Arc::new(region);
        let getter = {
            let region = std::sync::Arc::clone(&region);
            std::thread::spawn(move || {
                let ring = Ring::new(&region, 0, 4096, 0).unwrap();
                (0..1000)
                    .map(|_| ring.get(2, None, &wanted).unwrap())
                    .collect::<Vec<_>>()
            })
        };
        let ring = Ring::new(&region, 0, 4096, 0).unwrap();
        for i in 0..1000u32 {
            ring.put(1, &i.to_le_bytes(), None, &wanted).unwrap();
        }
        let got = getter.join().unwrap();
        assert_eq!(got.len(), 1000);
        for (i, item) in got.iter().enumerate() {
            assert_eq!(item, &(i as u32).to_le_bytes());
        }
    }
}
