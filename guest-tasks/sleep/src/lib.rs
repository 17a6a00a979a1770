//! The `sleep` task: sleeps for the given number of milliseconds and returns the time it
//! measured, in milliseconds.

wit_bindgen::generate!({ path: "../../wit", world: "sleep" });

use std::time::{Duration, Instant};

struct Sleep;

impl Guest for Sleep {
    fn sleep(millis: u32) -> u64 {
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(u64::from(millis)));
        u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

export!(Sleep);
