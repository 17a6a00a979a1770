//! Big vectors kept from one `map` for the next.
//!
//! A `map` over 200,000 items allocates about 40 MB of short-lived vectors: its chunks' items
//! (about 110 bytes each) and its outcome slots (about 80 bytes each). The allocator gives
//! memory that large back to the operating system as soon as it is freed, so every `map`
//! faulted all those pages in again: a tenth of the whole machine's CPU in a map of tiny tasks,
//! on the thread that feeds the workers. A pool keeps such vectors, emptied, for its next map
//! instead: up to [`SHELF_BYTES`] of each kind, and gives them back once it has been idle
//! for [`IDLE`].

use std::sync::Mutex;
use std::time::Duration;

/// Vectors smaller than this come cheaply from the allocator's free lists (glibc's threshold
/// for serving an allocation with its own `mmap` starts at 128 KiB) and are not kept.
const MIN_BYTES: usize = 128 << 10;

/// The most memory one shelf keeps: enough for a map of a million items (about 110 MB of
/// chunk items, 80 MB of outcome slots), which a batch export makes as fast as Python's pool
/// maps (faulting it in again took a fifth of such a map's time).
pub(crate) const SHELF_BYTES: usize = 128 << 20;

/// How long a pool's drivers wait with nothing to do before they empty the shelves: a
/// program that maps again and again keeps its vectors, a pool left idle frees them.
pub(crate) const IDLE: Duration = Duration::from_secs(1);

/// Emptied vectors of `T`, kept for reuse.
pub(crate) struct Shelf<T> {
    spares: Mutex<Vec<Vec<T>>>,
}

impl<T> Default for Shelf<T> {
    fn default() -> Self {
        Shelf {
            spares: Mutex::new(Vec::new()),
        }
    }
}

impl<T> Shelf<T> {
    fn bytes(len: usize) -> usize {
        len.saturating_mul(std::mem::size_of::<T>())
    }

    /// An empty vector with room for `len` items: the smallest kept one that fits, or a new one.
    pub(crate) fn take(&self, len: usize) -> Vec<T> {
        if Self::bytes(len) >= MIN_BYTES {
            let mut spares = self.spares.lock().unwrap_or_else(|e| e.into_inner());
            let fits = (0..spares.len())
                .filter(|&i| spares[i].capacity() >= len)
                .min_by_key(|&i| spares[i].capacity());
            if let Some(i) = fits {
                return spares.swap_remove(i);
            }
        }
        Vec::with_capacity(len)
    }

    /// Drops every kept vector.
    pub(crate) fn clear(&self) {
        let spares = std::mem::take(&mut *self.spares.lock().unwrap_or_else(|e| e.into_inner()));
        drop(spares);
    }

    /// Empties `spare` (dropping its items) and keeps it if it is big enough to be worth it
    /// and the shelf has room.
    pub(crate) fn put(&self, mut spare: Vec<T>) {
        let bytes = Self::bytes(spare.capacity());
        if bytes < MIN_BYTES {
            return;
        }
        spare.clear();
        let mut spares = self.spares.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = spares.iter().map(|v| Self::bytes(v.capacity())).sum();
        if held + bytes <= SHELF_BYTES {
            spares.push(spare);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_vectors_are_kept_and_handed_out_smallest_first() {
        let shelf = Shelf::<u64>::default();
        let (small, big) = (MIN_BYTES / 8, 4 * MIN_BYTES / 8);
        let mut a = shelf.take(big);
        a.extend(0..10);
        let a_ptr = a.as_ptr();
        shelf.put(a);
        shelf.put(Vec::with_capacity(small));
        let b = shelf.take(small);
        assert!(b.is_empty() && b.capacity() >= small && b.capacity() < big);
        let c = shelf.take(small + 1);
        assert_eq!(c.as_ptr(), a_ptr, "the big one, emptied");
        assert!(c.is_empty());
        // Nothing left: a new vector.
        assert!(shelf.take(small).capacity() >= small);
    }

    #[test]
    fn small_vectors_and_overflow_are_dropped() {
        let shelf = Shelf::<u8>::default();
        shelf.put(Vec::with_capacity(MIN_BYTES - 1));
        assert!(shelf.spares.lock().unwrap().is_empty());
        for _ in 0..3 {
            shelf.put(Vec::with_capacity(SHELF_BYTES / 2));
        }
        assert_eq!(shelf.spares.lock().unwrap().len(), 2, "at most SHELF_BYTES");
        shelf.clear();
        assert!(shelf.spares.lock().unwrap().is_empty());
    }
}
