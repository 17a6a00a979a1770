//! The `primes` task: counts the primes in `[lo, hi)` by trial division, exactly kernel K1 of
//! the Python baseline (`cpu_kernels.md`): every `n` visited, u32 arithmetic, `d * d <= n`.

wit_bindgen::generate!({ path: "../../wit", world: "primes" });

struct Primes;

/// Trial division: 2, then the odd divisors `d = 3, 5, 7, ...` while `d * d <= n`.
// `n % d == 0`, not `n.is_multiple_of(d)`: the kernel is normative, operation for operation.
#[allow(clippy::manual_is_multiple_of)]
#[inline(never)]
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n % 2 == 0 {
        return false;
    }
    let mut d: u32 = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

/// The number of primes `n` with `lo <= n < hi`.
pub fn count_primes_range(lo: u32, hi: u32) -> u32 {
    (lo..hi).filter(|&n| is_prime(n)).count() as u32
}

impl Guest for Primes {
    fn count_primes_range(lo: u32, hi: u32) -> u32 {
        count_primes_range(lo, hi)
    }
}

export!(Primes);
