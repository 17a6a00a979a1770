//! The numbers of values and arrays, as the host's handles and the worker's imports both
//! operate on them: each number is one 64-bit word of the region (after its object's lock),
//! read and written atomically.

use std::sync::atomic::{AtomicU64, Ordering};

use super::region::{DATA_OFFSET, Region};

/// A number a value or array holds: how it is a word, and how it is added to one.
pub(crate) trait Number: Copy {
    fn to_word(self) -> u64;
    fn from_word(word: u64) -> Self;
    /// Adds `delta` to the number in `word` atomically; returns the new number.
    fn add(word: &AtomicU64, delta: Self) -> Self;

    /// The number in `word`.
    fn load(word: &AtomicU64) -> Self {
        Self::from_word(word.load(Ordering::SeqCst))
    }

    /// Stores `self` in `word`.
    fn store(self, word: &AtomicU64) {
        word.store(self.to_word(), Ordering::SeqCst);
    }
}

impl Number for i64 {
    fn to_word(self) -> u64 {
        self as u64
    }
    fn from_word(word: u64) -> Self {
        word as i64
    }
    fn add(word: &AtomicU64, delta: i64) -> i64 {
        (word.fetch_add(delta as u64, Ordering::SeqCst) as i64).wrapping_add(delta)
    }
}

impl Number for f64 {
    fn to_word(self) -> u64 {
        self.to_bits()
    }
    fn from_word(word: u64) -> Self {
        f64::from_bits(word)
    }
    /// A compare-and-swap loop: there is no atomic float add.
    fn add(word: &AtomicU64, delta: f64) -> f64 {
        let mut current = word.load(Ordering::Relaxed);
        loop {
            let new = f64::from_bits(current) + delta;
            match word.compare_exchange_weak(
                current,
                new.to_bits(),
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return new,
                Err(found) => current = found,
            }
        }
    }
}

/// Stores `new` in `word` if it holds `expected`; returns the value found.
pub(crate) fn compare_and_swap(word: &AtomicU64, expected: i64, new: i64) -> i64 {
    match word.compare_exchange(
        expected as u64,
        new as u64,
        Ordering::SeqCst,
        Ordering::SeqCst,
    ) {
        Ok(found) | Err(found) => found as i64,
    }
}

/// The word of number `index` of the object at `at` (0 for a value); `None` outside the
/// region.
pub(crate) fn element(region: &Region, at: u64, index: u32) -> Option<&AtomicU64> {
    region.word64(at + DATA_OFFSET + 8 * u64::from(index))
}

/// The first index past an array of `len` that `count` numbers from `start` would reach,
/// if they do not fit (the index an `out-of-range` error names).
pub(crate) fn out_of_range(start: u32, count: u64, len: u32) -> Option<u32> {
    let end = u64::from(start) + count;
    (end > u64::from(len)).then(|| u32::try_from(end - 1).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_add_and_ranges_are_checked() {
        let word = AtomicU64::new(0);
        assert_eq!(i64::add(&word, -3), -3);
        assert_eq!(compare_and_swap(&word, -3, 7), -3);
        assert_eq!(i64::load(&word), 7);
        2.5f64.store(&word);
        assert_eq!(f64::add(&word, 0.25), 2.75);
        assert_eq!(out_of_range(1, 2, 3), None);
        assert_eq!(out_of_range(2, 2, 3), Some(3));
        assert_eq!(out_of_range(0, 0, 0), None);
    }
}
