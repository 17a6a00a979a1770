//! Integration tests: real worker processes, real pipes, real wasmtime, and real wasm built
//! from `guest-tasks/` by the host's build script. One binary of feature modules.

mod api;
mod batch;
mod chaos;
mod cluster;
mod failures;
mod guests;
mod hostile;
mod lifecycle;
mod map;
mod packed;
mod process;
mod programs;
mod remote;
mod remote_shared;
mod shared;
mod shared_code;
mod support;
mod values;
mod walls;
