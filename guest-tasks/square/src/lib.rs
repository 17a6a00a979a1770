//! The `square` task: `square(x) = x * x` (the tiny task), `slow-square`, which sleeps first
//! (simulated work), and `square-many`, the batch export of the same function (a list in, a
//! list of as many squares out). Overflow traps instead of wrapping.

wit_bindgen::generate!({ path: "../../wit", world: "square" });

use std::time::Duration;

struct Square;

fn checked_square(x: i64) -> i64 {
    x.checked_mul(x).expect("square overflows s64")
}

impl Guest for Square {
    fn square(x: i64) -> i64 {
        checked_square(x)
    }

    fn slow_square(x: i64, millis: u32) -> i64 {
        std::thread::sleep(Duration::from_millis(u64::from(millis)));
        checked_square(x)
    }

    fn square_many(xs: Vec<i64>) -> Vec<i64> {
        xs.into_iter().map(checked_square).collect()
    }
}

export!(Square);
