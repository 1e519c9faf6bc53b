//! The `.npy` reader: any bytes give an array or an error; an array read as f32 writes back
//! and reads again to the same bits.
#![no_main]

use gradtau::io::npy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = npy::decode_labels(data, "fuzz.npy");
    if let Ok((values, shape)) = npy::decode_f32(data, "fuzz.npy") {
        let bytes = npy::encode_f32(&values, &shape).expect("a decoded array encodes");
        let (again, shape2) = npy::decode_f32(&bytes, "again.npy").expect("round trip");
        assert_eq!(shape, shape2);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&values), bits(&again));
    }
});
