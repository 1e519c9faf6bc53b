//! The IDX reader on raw bytes (plain, or gzip'd when they start with gzip's magic), as
//! images and as labels, under a 16 MiB cap so a fuzzed header cannot exhaust memory.
#![no_main]

use gradtau::io::idx::{decode_u8_limited, IMAGES_MAGIC, LABELS_MAGIC};
use libfuzzer_sys::fuzz_target;

const CAP: u64 = 16 << 20;

fuzz_target!(|data: &[u8]| {
    for magic in [IMAGES_MAGIC, LABELS_MAGIC] {
        if let Ok(idx) = decode_u8_limited(data, magic, "fuzz.idx", CAP) {
            let numel: usize = idx.shape.iter().product();
            assert_eq!(idx.data.len(), numel);
            assert!(idx.data.len() as u64 <= CAP);
        }
    }
});
