//! The `power` task: `power(base, exponent) = base ^ exponent`, trapping on overflow.

wit_bindgen::generate!({ path: "../../wit", world: "power" });

struct Power;

impl Guest for Power {
    fn power(base: i64, exponent: u32) -> i64 {
        base.checked_pow(exponent).expect("power overflows s64")
    }
}

export!(Power);
