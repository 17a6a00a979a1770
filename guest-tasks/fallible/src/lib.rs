//! The `fallible` task: functions that return `result` errors instead of trapping: integer
//! parsing, and a deterministic version of the tutorial's futures example.

wit_bindgen::generate!({ path: "../../wit", world: "fallible" });

use std::time::Duration;

struct Fallible;

impl Guest for Fallible {
    fn parse_int(text: String) -> Result<i64, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("not an integer: {text}"))
    }

    fn process_item(item: u32) -> Result<(u32, u32), String> {
        // Computed in u64 so that the delay is defined for every item.
        let millis = u64::from(item) * 37 % 100;
        std::thread::sleep(Duration::from_millis(millis));
        if item % 5 == 3 {
            return Err(format!("processing failed for item {item}"));
        }
        match item.checked_mul(item) {
            Some(square) => Ok((item, square)),
            None => Err(format!(
                "item {item} is too large: its square overflows u32"
            )),
        }
    }
}

export!(Fallible);
