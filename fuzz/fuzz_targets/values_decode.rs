//! Any bytes as wire values, or as JSON checked against WIT types: never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wasmpool::fuzzing::values_decode(data);
});
