//! The ONNX importer and write-back through the C ABI (`checks::onnx`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::onnx(data));
