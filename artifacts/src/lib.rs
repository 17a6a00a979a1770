//! The guest tasks of `guest-tasks/`, built from source for `wasm32-wasip2` by this crate's
//! build script and embedded as constants: the wasm that wasmpool's tests, examples, benches
//! and command line run. The library `wasmpool` embeds none of them.
//!
//! One crate of `guest-tasks/` per world of `wit/tasks.wit`, plus a core module in WebAssembly
//! text:
//!
//! | constant   | exports                                                              |
//! |------------|----------------------------------------------------------------------|
//! | `SQUARE`   | `square(x: s64) -> s64`, `slow-square(x: s64, millis: u32) -> s64`   |
//! | `PURE`     | `square(x: s64) -> s64`, in a `no_std` guest that imports nothing    |
//! | `POWER`    | `power(base: s64, exponent: u32) -> s64`                             |
//! | `PRIMES`   | `count-primes-range(lo: u32, hi: u32) -> u32`                        |
//! | `SLEEP`    | `sleep(millis: u32) -> u64`                                          |
//! | `WORDS`    | `word-count(text: string) -> list<word-freq>`, `count-words`         |
//! | `RECORDS`  | `describe`, `area`, `grant`, `first-char`, `minmax`                  |
//! | `FALLIBLE` | `parse-int(text: string) -> result<s64, string>`, `process-item`     |
//! | `TRAP`     | `maybe-crash(x: u32) -> u32`, `panic(message: string)`, `divide`     |
//! | `HELLO`    | `hello(name: string) -> string`, writing to stdout and stderr        |
//! | `HOSTILE`  | `spin`, `memory-bomb`, `stack-overflow`, `read-file`, `block`, ...   |
//! | `ARITH`    | core module: `add`, `mul64`, `fdiv`, `half`, `spin`, `boom`          |
//!
//! A constant is only linked into a program that uses it: the `wasmpool` binary lists the
//! tasks it offers and carries no others (`hostile`, a test fixture, stays out).

/// A guest task, built from `guest-tasks/`.
#[derive(Debug, Clone, Copy)]
pub struct Guest {
    /// The task's name: the WIT world it implements (`"square"`), or `"arith"`.
    pub name: &'static str,
    /// What the task's functions do, in one line.
    pub description: &'static str,
    /// The file name it would have on disk: `"square.wasm"`, or `"arith.wat"`.
    pub file_name: &'static str,
    /// The component's bytes, or for `arith` the WebAssembly text of the core module.
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// Returns the guest named `name` (`"square"`, ..., `"arith"`), if there is one.
pub fn get(name: &str) -> Option<Guest> {
    ALL.iter().copied().find(|guest| guest.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    #[test]
    fn every_guest_is_listed_once() {
        assert_eq!(ALL.len(), 14);
        let names: HashSet<&str> = ALL.iter().map(|guest| guest.name).collect();
        assert_eq!(names.len(), ALL.len(), "duplicate names in ALL");
        for guest in ALL {
            assert_eq!(get(guest.name).map(|g| g.file_name), Some(guest.file_name));
            assert!(!guest.description.is_empty());
        }
        assert!(get("nope").is_none());
    }

    #[test]
    fn the_macro_names_every_guest() {
        let mut named = Vec::new();
        macro_rules! note {
            ($name:ident) => {
                named.push(stringify!($name));
            };
        }
        foreach_guest!(note);
        let all: Vec<&str> = ALL.iter().map(|guest| guest.name).collect();
        assert_eq!(named, all);
    }

    #[test]
    fn components_start_with_the_component_header() {
        for guest in ALL.iter().filter(|guest| guest.name != "arith") {
            assert_eq!(guest.file_name, format!("{}.wasm", guest.name));
            assert!(
                guest.wasm.starts_with(&COMPONENT_HEADER),
                "{} is not a component: {:02x?}",
                guest.name,
                &guest.wasm[..guest.wasm.len().min(8)]
            );
        }
    }

    #[test]
    fn arith_is_webassembly_text() {
        assert_eq!(ARITH.file_name, "arith.wat");
        let text = std::str::from_utf8(ARITH.wasm).expect("arith.wat is UTF-8");
        assert!(text.contains("(module"));
        for export in ["add", "mul64", "fdiv", "half", "spin", "boom"] {
            assert!(text.contains(&format!("(export \"{export}\")")), "{export}");
        }
    }
}
