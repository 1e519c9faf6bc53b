//! The IDX reader behind the gzip decompressor (`checks::idx_gzip`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::idx_gzip(data));
