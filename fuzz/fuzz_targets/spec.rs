//! The model spec parser: any text gives a model or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(model) = gradtau::nn::Model::from_json(text) {
            // What a compiled model reports must be consistent with its spec.
            let params = model.spec().parameters();
            assert_eq!(params.len(), model.params().len());
        }
    }
});
