//! Every committed fuzz input, seeds and regressions (`fuzz/corpus/<target>`,
//! `fuzz/regressions/<target>`), through the same checks the cargo-fuzz targets run, so an
//! input that once crashed a target stays a test in the normal suite without nightly Rust.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 7] = [
    ("spec", checks::spec),
    ("npy", checks::npy),
    ("safetensors", checks::safetensors),
    ("idx", checks::idx),
    ("idx_gzip", checks::idx_gzip),
    ("ffi", checks::ffi),
    ("onnx", checks::onnx),
];

#[test]
fn every_committed_fuzz_input_passes_its_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, check) in TARGETS {
        let mut seen = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            for e in entries {
                let path = e.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                let run = std::panic::catch_unwind(|| check(&bytes));
                assert!(
                    run.is_ok(),
                    "{}: the `{target}` check failed",
                    path.display()
                );
                seen += 1;
            }
        }
        assert!(
            seen > 0,
            "no committed inputs for the `{target}` fuzz target"
        );
    }
}
