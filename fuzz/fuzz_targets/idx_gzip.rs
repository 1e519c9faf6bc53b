//! The gzip path of the IDX reader: the fuzzer's bytes are the decompressed content, gzip'd
//! here (and split into two gzip members, which readers must treat as one stream), so the
//! fuzzer explores IDX headers and sizes behind the decompressor.
#![no_main]

use flate2::{write::GzEncoder, Compression};
use gradtau::io::idx::{decode_u8_limited, IMAGES_MAGIC, LABELS_MAGIC};
use libfuzzer_sys::fuzz_target;
use std::io::Write;

const CAP: u64 = 16 << 20;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).expect("in-memory write");
    enc.finish().expect("in-memory write")
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, content)) = data.split_first() else {
        return;
    };
    if content.starts_with(&[0x1f, 0x8b]) {
        // gzip'd already: the plain read would unzip it and the two would differ by design.
        return;
    }
    let at = (split as usize).min(content.len());
    let gz = [gzip(&content[..at]), gzip(&content[at..])].concat();
    for magic in [IMAGES_MAGIC, LABELS_MAGIC] {
        let plain = decode_u8_limited(content, magic, "fuzz.idx", CAP);
        let unzipped = decode_u8_limited(&gz, magic, "fuzz.idx.gz", CAP);
        // Compression must not change the verdict on valid data.
        match (plain, unzipped) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Ok(_), Err(e)) => panic!("plain file read, gzip'd copy refused: {e}"),
            (Err(_), Ok(_)) => panic!("plain file refused, gzip'd copy read"),
            (Err(_), Err(_)) => {}
        }
    }
});
