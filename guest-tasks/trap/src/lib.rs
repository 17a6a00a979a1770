//! The `trap` task: functions that trap (wasm `unreachable`, a panic, a division by zero), to
//! exercise the pool's fault handling (kernel K3 of the Python baseline: `maybe-crash`).

wit_bindgen::generate!({ path: "../../wit", world: "trap" });

use std::time::Duration;

struct Trap;

impl Guest for Trap {
    fn maybe_crash(x: u32) -> u32 {
        std::thread::sleep(Duration::from_millis(20));
        if x == 5 {
            core::arch::wasm32::unreachable();
        }
        x.checked_mul(x).expect("maybe-crash overflows u32")
    }

    fn panic(message: String) -> u32 {
        panic!("{message}");
    }

    fn divide(a: u32, b: u32) -> u32 {
        a / b
    }
}

export!(Trap);
