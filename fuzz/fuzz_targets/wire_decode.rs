//! Any bytes on the pipe: a frame, a decoded message, or an error; never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wasmpool::fuzzing::wire_decode(data);
});
