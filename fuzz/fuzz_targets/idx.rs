//! The IDX reader on raw bytes, plain or gzip (`checks::idx`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::idx(data));
