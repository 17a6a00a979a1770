//! The shared-memory region of a pool: where its locks, values and arrays live, and the atomic
//! operations on them that the host and every worker run directly, without a message.
//!
//! The host makes one memfd per pool ([`Region::create`]), sized at [`REGION_BYTES`] and sealed
//! against growing, shrinking and further seals, and maps it; each local worker gets the
//! descriptor once (over its stderr socket, see [`crate::shared_code`]), maps it and closes it.
//! The size is reserved, not used: pages are only backed once an object touches them, so the
//! host can make objects after the workers started and they see them at once.
//!
//! Layout: the host hands out 16-byte aligned slots from the start ([`Region::allocate`]);
//! every object begins with a [`LOCK_BYTES`] lock (a futex word holding its holder's pid, and
//! an `abandoned` word), then its numbers, eight bytes each. Workers never allocate: they reach
//! an object at the offset its grant carries, checked against the region's size.
//!
//! Locks: the futex word is 0 when free, else the holder's process id, with [`WAITERS`] set
//! once someone sleeps on it; waits are `FUTEX_WAIT` on the shared mapping (not private, so
//! they cross processes), bounded by the caller's deadline. A holder that dies is cleared by the
//! host when it reaps the worker ([`Region::release_all_of`]): the word goes back to 0 with the
//! `abandoned` word set, which the next holder reads.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How much address space a pool's region reserves: objects are made in it as the pool goes.
pub(crate) const REGION_BYTES: u64 = 1 << 30;

/// A lock's two words: the holder and the `abandoned` flag.
pub(crate) const LOCK_BYTES: u64 = 8;

/// Where each object's numbers start, after its lock.
pub(crate) const DATA_OFFSET: u64 = 8;

/// The bit of a lock word that says someone may be sleeping on it.
const WAITERS: u32 = 1 << 31;

/// How many times an `acquire` retries on a held lock before it sleeps: a lock held for a
/// few hundred nanoseconds (an increment) is taken without a system call.
const SPINS: u32 = 200;

/// A mapping of a pool's region, in the host or a worker.
#[derive(Debug)]
pub(crate) struct Region {
    base: *mut u8,
    len: u64,
}

// SAFETY: the mapping is shared memory reached only through atomics; the pointer is valid for
// the region's life and never moves.
unsafe impl Send for Region {}
// SAFETY: as above: every access is an atomic operation.
unsafe impl Sync for Region {}

/// Waiting ran out before the lock came free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

impl Region {
    /// Makes a pool's region: a sealed memfd of [`REGION_BYTES`], mapped. Returns the mapping
    /// and the descriptor workers map.
    pub(crate) fn create() -> io::Result<(Region, File)> {
        // SAFETY: memfd_create with a valid name; the descriptor it returns is ours alone.
        let fd = unsafe {
            libc::memfd_create(
                c"wasmpool-shared".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        file.set_len(REGION_BYTES)?;
        let seals = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor we own.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let region = Region::map(&file)?;
        Ok((region, file))
    }

    /// Maps a region's descriptor (in a worker: the one the host sent), after checking that it
    /// is a memfd of exactly [`REGION_BYTES`] that can no longer grow or shrink.
    pub(crate) fn map(file: &File) -> io::Result<Region> {
        let len = file.metadata()?.len();
        // SAFETY: fcntl on a descriptor we hold.
        let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
        let needed = libc::F_SEAL_GROW | libc::F_SEAL_SHRINK;
        if len != REGION_BYTES || seals < 0 || seals & needed != needed {
            return Err(io::Error::other(format!(
                "the shared region is not a sealed memfd of {REGION_BYTES} bytes"
            )));
        }
        // SAFETY: a shared mapping of a file of `len` bytes that cannot shrink (sealed), so no
        // access within it can fault with SIGBUS.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region {
            base: base.cast(),
            len,
        })
    }

    /// The 32-bit word at `offset`; `None` past the end or misaligned.
    pub(crate) fn word32(&self, offset: u64) -> Option<&AtomicU32> {
        if !offset.is_multiple_of(4) || offset.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: in bounds and aligned (checked above); the mapping lives as long as `self`
        // and is only ever accessed atomically.
        Some(unsafe { &*self.base.add(offset as usize).cast::<AtomicU32>() })
    }

    /// The 64-bit word at `offset`; `None` past the end or misaligned.
    pub(crate) fn word64(&self, offset: u64) -> Option<&AtomicU64> {
        if !offset.is_multiple_of(8) || offset.checked_add(8)? > self.len {
            return None;
        }
        // SAFETY: as in `word32`.
        Some(unsafe { &*self.base.add(offset as usize).cast::<AtomicU64>() })
    }

    /// Copies `bytes` into the region at `offset` (under the lock of the object it belongs
    /// to: other processes read it only under that lock).
    pub(crate) fn write_bytes(&self, offset: u64, bytes: &[u8]) {
        assert!(
            self.holds(offset, bytes.len() as u64),
            "a write outside the region"
        );
        // SAFETY: in bounds (checked); the bytes are only accessed under the object's lock.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.base.add(offset as usize),
                bytes.len(),
            );
        }
    }

    /// Copies bytes out of the region from `offset` (under the lock of their object).
    pub(crate) fn read_bytes(&self, offset: u64, out: &mut [u8]) {
        assert!(
            self.holds(offset, out.len() as u64),
            "a read outside the region"
        );
        // SAFETY: in bounds (checked); the bytes are only accessed under the object's lock.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.add(offset as usize),
                out.as_mut_ptr(),
                out.len(),
            );
        }
    }

    fn holds(&self, offset: u64, bytes: u64) -> bool {
        offset.checked_add(bytes).is_some_and(|end| end <= self.len)
    }

    /// Takes the lock at `lock` for process `me`, waiting until `deadline` at the most.
    /// Returns whether the previous holder abandoned it (died or failed while holding it).
    pub(crate) fn acquire(
        &self,
        lock: u64,
        me: u32,
        deadline: Option<Instant>,
    ) -> Result<bool, TimedOut> {
        let (word, abandoned) = self.lock_words(lock);
        let mut spins = 0;
        loop {
            let current = word.load(Ordering::Relaxed);
            if current == 0 {
                // After sleeping, take it as contended, so that our release wakes the others.
                let mine = if spins > SPINS { me | WAITERS } else { me };
                if word
                    .compare_exchange(0, mine, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(abandoned.swap(0, Ordering::AcqRel) != 0);
                }
                continue;
            }
            spins += 1;
            if spins <= SPINS {
                std::hint::spin_loop();
                continue;
            }
            let remaining = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(TimedOut);
                    }
                    Some(deadline - now)
                }
                None => None,
            };
            if current & WAITERS == 0
                && word
                    .compare_exchange(
                        current,
                        current | WAITERS,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_err()
            {
                continue;
            }
            futex_wait(word, current | WAITERS, remaining);
        }
    }

    /// Releases the lock at `lock`, held by `me`; `abandoned` marks it for the next holder.
    /// A lock `me` does not hold is left alone (returns false).
    pub(crate) fn release(&self, lock: u64, me: u32, abandon: bool) -> bool {
        let (word, abandoned) = self.lock_words(lock);
        let current = word.load(Ordering::Relaxed);
        if current & !WAITERS != me {
            return false;
        }
        if abandon {
            abandoned.store(1, Ordering::Release);
        }
        let before = word.swap(0, Ordering::Release);
        if before & WAITERS != 0 {
            futex_wake(word, 1);
        }
        true
    }

    /// Whether the lock at `lock` is held by anyone now.
    pub(crate) fn is_held(&self, lock: u64) -> bool {
        self.lock_words(lock).0.load(Ordering::Relaxed) != 0
    }

    /// Releases, as abandoned, every lock among `locks` that process `pid` holds: a worker
    /// that died cannot release its own. Returns how many it held.
    pub(crate) fn release_all_of(&self, pid: u32, locks: impl IntoIterator<Item = u64>) -> usize {
        locks
            .into_iter()
            .filter(|&lock| self.release(lock, pid, true))
            .count()
    }

    fn lock_words(&self, lock: u64) -> (&AtomicU32, &AtomicU32) {
        match (self.word32(lock), self.word32(lock + 4)) {
            (Some(word), Some(abandoned)) => (word, abandoned),
            _ => panic!("a lock at {lock} outside the region: offsets come from the host"),
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped; nothing refers to it after this.
        unsafe {
            libc::munmap(self.base.cast(), self.len as usize);
        }
    }
}

/// Sleeps while `word` holds `expected`, for `timeout` at the most (or until woken).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let spec = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let spec_ptr = spec
        .as_ref()
        .map_or(std::ptr::null(), |s| s as *const libc::timespec);
    // SAFETY: FUTEX_WAIT on a valid, aligned word of a shared mapping, with a relative timeout
    // that lives across the call. It may return early (a signal, a wake): callers loop.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            spec_ptr,
        );
    }
}

/// Wakes up to `count` sleepers on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, count: i32) {
    // SAFETY: FUTEX_WAKE on a valid, aligned word of a shared mapping.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_lock_excludes_and_reports_an_abandoned_holder() {
        let (region, _file) = Region::create().unwrap();
        let region = Arc::new(region);
        assert_eq!(region.acquire(0, 7, None), Ok(false));
        let deadline = Instant::now() + Duration::from_millis(30);
        assert_eq!(region.acquire(0, 8, Some(deadline)), Err(TimedOut));
        assert_eq!(region.release_all_of(7, [0, 16]), 1);
        assert!(!region.is_held(0));
        assert_eq!(region.acquire(0, 8, None), Ok(true), "abandoned by 7");
        assert!(region.release(0, 8, false));
        assert_eq!(region.acquire(0, 9, None), Ok(false));
        assert!(!region.release(0, 8, false), "8 does not hold it");
        assert!(region.release(0, 9, false));
    }

    #[test]
    fn locked_increments_from_threads_add_up() {
        let (region, _file) = Region::create().unwrap();
        let region = Arc::new(region);
        let threads: Vec<_> = (1..=4)
            .map(|me| {
                let region = Arc::clone(&region);
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        region.acquire(16, me, None).unwrap();
                        let value = region.word64(16 + DATA_OFFSET).unwrap();
                        let v = value.load(Ordering::Relaxed);
                        value.store(v + 1, Ordering::Relaxed);
                        assert!(region.release(16, me, false));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let total = region
            .word64(16 + DATA_OFFSET)
            .unwrap()
            .load(Ordering::Relaxed);
        assert_eq!(total, 80_000);
    }

    #[test]
    fn offsets_outside_the_region_are_refused() {
        let (region, _file) = Region::create().unwrap();
        assert!(region.word64(REGION_BYTES - 8).is_some());
        assert!(region.word64(REGION_BYTES).is_none());
        assert!(region.word64(3).is_none());
        assert!(region.word64(u64::MAX - 3).is_none());
    }
}
