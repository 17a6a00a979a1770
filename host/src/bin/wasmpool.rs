//! The `wasmpool` command. All of it lives in the library's `cli` module; this file only
//! turns its answer into the process exit code.

fn main() {
    std::process::exit(wasmpool::cli::main());
}
