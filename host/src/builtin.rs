//! The built-in tasks: the guests in `guest-tasks/` (one component per world of
//! `wit/tasks.wit`, plus a core module in WebAssembly text), built from source by `build.rs`
//! and embedded in the binary, so that `wasmpool demo` and the tests run with no files of the
//! user's own.
//!
//! | name       | exports                                                              |
//! |------------|----------------------------------------------------------------------|
//! | `square`   | `square(x: s64) -> s64`, `slow-square(x: s64, millis: u32) -> s64`   |
//! | `pure`     | `square(x: s64) -> s64`, in a `no_std` guest that imports nothing    |
//! | `power`    | `power(base: s64, exponent: u32) -> s64`                             |
//! | `primes`   | `count-primes-range(lo: u32, hi: u32) -> u32`                        |
//! | `sleep`    | `sleep(millis: u32) -> u64`                                          |
//! | `words`    | `word-count(text: string) -> list<word-freq>`, `count-words`         |
//! | `records`  | `describe`, `area`, `grant`, `first-char`, `minmax`                  |
//! | `fallible` | `parse-int(text: string) -> result<s64, string>`, `process-item`     |
//! | `trap`     | `maybe-crash(x: u32) -> u32`, `panic(message: string)`, `divide`     |
//! | `hello`    | `hello(name: string) -> string`, writing to stdout and stderr        |
//! | `hostile`  | `spin`, `memory-bomb`, `stack-overflow`, `read-file`, `block`, ...   |
//! | `arith`    | core module: `add`, `mul64`, `fdiv`, `half`, `spin`, `boom`          |

/// A task built from `guest-tasks/` and embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinTask {
    /// The task's name: the WIT world it implements (`"square"`), or `"arith"`.
    pub name: &'static str,
    /// What the task's functions do, in one line.
    pub description: &'static str,
    /// The file name it would have on disk: `"square.wasm"`, or `"arith.wat"`.
    pub file_name: &'static str,
    /// The component's bytes, or for `arith` the WebAssembly text of the core module.
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtin_tasks.rs"));

/// Returns the built-in task named `name` (`"square"`, ..., `"arith"`), if there is one.
pub fn get(name: &str) -> Option<BuiltinTask> {
    ALL.iter().copied().find(|task| task.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

    #[test]
    fn all_tasks_are_listed_once() {
        assert_eq!(ALL.len(), 12);
        let names: HashSet<&str> = ALL.iter().map(|task| task.name).collect();
        assert_eq!(names.len(), ALL.len(), "duplicate names in ALL");
        for task in ALL {
            assert_eq!(get(task.name).map(|t| t.file_name), Some(task.file_name));
            assert!(!task.description.is_empty());
        }
        assert!(get("nope").is_none());
    }

    #[test]
    fn components_start_with_the_component_header() {
        for task in ALL.iter().filter(|task| task.name != "arith") {
            assert_eq!(task.file_name, format!("{}.wasm", task.name));
            assert!(
                task.wasm.starts_with(&COMPONENT_HEADER),
                "{} is not a component: {:02x?}",
                task.name,
                &task.wasm[..task.wasm.len().min(8)]
            );
        }
    }

    /// The point of `pure`: a component with no imports, where `square` (std) imports WASI.
    #[test]
    fn pure_imports_nothing_and_square_imports_wasi() {
        let imports = |task: BuiltinTask| {
            crate::Module::from_bytes(task.wasm)
                .unwrap()
                .imports()
                .to_vec()
        };
        assert_eq!(imports(PURE), Vec::<String>::new());
        assert!(
            imports(SQUARE).iter().any(|name| name.starts_with("wasi:")),
            "{:?}",
            imports(SQUARE)
        );
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
