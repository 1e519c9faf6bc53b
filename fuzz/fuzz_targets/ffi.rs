//! A sequence of C ABI calls on a fuzzed spec (`checks::ffi`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::ffi(data));
