//! Links `hostile` with an 8 MiB shadow stack (the part of linear memory where LLVM keeps the
//! locals whose address is taken, like each `stack-overflow` frame's 256-byte array) instead of
//! rustc's default 1 MiB. Each frame of `stack-overflow` takes 272 bytes of shadow stack and
//! about 64 bytes of wasmtime's native stack: with 1 MiB of shadow stack the shadow stack ran
//! out first (after 3,855 frames, as an "out of bounds memory access" trap, since the stack
//! sits below the data and wraps past address 0) for any `max_wasm_stack` above about 240 KiB.
//! With 8 MiB (30,800 frames) wasmtime's own stack limit ("call stack exhausted") is reached
//! first for any `max_wasm_stack` up to about 1.9 MiB. The cost: the component's linear memory
//! starts at 8 MiB (129 pages) instead of 1 MiB (17 pages).

fn main() {
    println!("cargo::rustc-link-arg-cdylib=-zstack-size=8388608");
    println!("cargo::rerun-if-changed=build.rs");
}
