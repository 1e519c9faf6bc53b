//! The safetensors reader: any bytes give a checkpoint or an error; a checkpoint writes
//! back and reads again to the same names, shapes and bits (integer tensors included).
#![no_main]

use gradtau::io::safetensors::{decode_checkpoint, encode_checkpoint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(c) = decode_checkpoint(data, "fuzz.safetensors") else {
        return;
    };
    let floats = c
        .floats
        .iter()
        .map(|(k, (s, d))| (k.as_str(), s.as_slice(), d.as_slice()));
    let bytes = encode_checkpoint(floats, &c.others).expect("a decoded checkpoint encodes");
    let again = decode_checkpoint(&bytes, "again.safetensors").expect("round trip");
    assert_eq!(again.others, c.others);
    assert_eq!(again.floats.len(), c.floats.len());
    for ((k, (s, d)), (k2, (s2, d2))) in c.floats.iter().zip(&again.floats) {
        assert_eq!((k, s), (k2, s2));
        assert!(d.iter().zip(d2).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
});
