//! The task {{name}}: a WebAssembly component that implements the world in `wit/world.wit`.
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (or `wasmpool build`), test it
//! natively with `cargo test`, and call it with `wasmpool run`.

// The `Guest` trait (one method per export) from the world in wit/.
wit_bindgen::generate!({ path: "wit", world: "{{name}}" });

struct Task;

impl Guest for Task {
    fn greet(name: String) -> String {
        format!("Hello, {name}!")
    }

    fn divide(a: i32, b: i32) -> Result<i32, String> {
        // An `Err` is the task's own failure: the caller gets the message, and the next item
        // runs. A panic would trap instead (the caller sees a trap and its backtrace).
        if b == 0 {
            return Err(format!("cannot divide {a} by zero"));
        }
        a.checked_div(b)
            .ok_or_else(|| format!("{a} / {b} overflows s32"))
    }
}

export!(Task);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets() {
        assert_eq!(Task::greet("Ada".into()), "Hello, Ada!");
    }

    #[test]
    fn divides_or_says_why_not() {
        assert_eq!(Task::divide(7, 2), Ok(3));
        assert_eq!(
            Task::divide(1, 0),
            Err("cannot divide 1 by zero".to_string())
        );
        assert!(Task::divide(i32::MIN, -1).is_err());
    }
}
