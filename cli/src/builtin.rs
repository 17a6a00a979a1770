//! The built-in tasks this binary offers (`builtin:NAME`, `wasmpool tasks`, the demo): the
//! guests of `guest-tasks/` that are worth trying, and no test fixture (`hostile` stays out of
//! the binary: only the constants listed here are linked in).

use std::io;
use std::path::PathBuf;

use wasmpool::{Limits, Module};

use crate::options::LoadArgs;
use wasmpool_artifacts::{
    ARITH, FALLIBLE, Guest, HELLO, POWER, PRIMES, PROGRAM, PURE, RECORDS, SLEEP, SQUARE, TRAP,
    WORDS,
};

/// Every built-in task, in the order `wasmpool tasks` lists them.
pub(crate) const OFFERED: &[Guest] = &[
    SQUARE, PURE, POWER, PRIMES, SLEEP, WORDS, RECORDS, FALLIBLE, TRAP, HELLO, ARITH, PROGRAM,
];

/// The built-in task named `name`, if this binary offers one.
pub(crate) fn get(name: &str) -> Option<&'static Guest> {
    OFFERED.iter().find(|guest| guest.name == name)
}

/// A module path as the commands take it: a file, or `builtin:NAME` for a task built into
/// this binary, loaded as `load` says for tasks with `limits`.
pub(crate) fn load_module(
    path: &str,
    load: &LoadArgs,
    limits: Limits,
) -> Result<Module, wasmpool::Error> {
    let loader = load.loader(limits);
    match path.strip_prefix("builtin:") {
        Some(name) => match get(name) {
            Some(guest) => loader.bytes(guest.wasm, path),
            None => Err(wasmpool::Error::Read {
                path: path.to_string(),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "no such built-in task (see `wasmpool tasks`)",
                ),
            }),
        },
        None => loader.file(PathBuf::from(path)),
    }
}
