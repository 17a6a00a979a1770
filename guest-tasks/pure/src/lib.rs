//! The `pure` task: `square(x) = x * x`, as in the `square` task, written without Rust's
//! standard library, so that the component imports nothing.
//!
//! Why: `std` on `wasm32-wasip2` links WASI (stdio, environment, exit, clocks) for its runtime
//! and its panic messages, and a component pays for every import each time it is instantiated:
//! measured in a worker, a fresh instance and the call cost about 14 µs for the `square` task
//! and about 6.5 µs for this one. A task that computes from its arguments alone gets the
//! cheaper instance by being `no_std`; the price is that a panic cannot print its message (it
//! traps with `unreachable`, and the backtrace names the function).

#![no_std]

wit_bindgen::generate!({ path: "../../wit", world: "pure" });

struct Pure;

impl Guest for Pure {
    fn square(x: i64) -> i64 {
        match x.checked_mul(x) {
            Some(square) => square,
            None => overflow(),
        }
    }
}

export!(Pure);

/// Traps: the square does not fit in s64. A function of its own so that the trap's backtrace
/// says what happened.
#[cold]
#[inline(never)]
fn overflow() -> ! {
    core::arch::wasm32::unreachable()
}

/// Without `std` there is nothing to print a panic's message to: a panic traps.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// The bindings need an allocator to exist (for lists and strings, which this task has none
/// of), so this one refuses every allocation: a refusal traps. A `no_std` task that takes
/// strings or lists needs a real one, such as the `dlmalloc` or `talc` crates.
struct NoHeap;

// SAFETY: `alloc` returns null, which `GlobalAlloc` allows (it means the allocation failed),
// and `dealloc` is never given a pointer, since none was ever handed out.
unsafe impl core::alloc::GlobalAlloc for NoHeap {
    unsafe fn alloc(&self, _: core::alloc::Layout) -> *mut u8 {
        core::ptr::null_mut()
    }

    unsafe fn dealloc(&self, _: *mut u8, _: core::alloc::Layout) {}
}

#[global_allocator]
static HEAP: NoHeap = NoHeap;
