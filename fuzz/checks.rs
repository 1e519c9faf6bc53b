//! The checks behind each fuzz target, shared with the normal test suite
//! (`tests/fuzz_inputs.rs` runs them on every committed seed and regression input), so an
//! input that once crashed a target stays a test whichever reader is used.
//!
//! Each check panics exactly when the target should report a crash.

#![allow(dead_code)]

use flate2::{write::GzEncoder, Compression};
use gradtau::ffi::dataset::{gradtau_dataset_classes_new, gradtau_dataset_free};
use gradtau::ffi::infer::{gradtau_losses, gradtau_predict};
use gradtau::ffi::model::{
    gradtau_model_bind, gradtau_model_free, gradtau_model_init_weights, gradtau_model_input_shape,
    gradtau_model_new, gradtau_model_output_shape, gradtau_model_param, gradtau_model_param_count,
};
use gradtau::ffi::onnx::{
    gradtau_bytes_free, gradtau_model_from_onnx, gradtau_model_load_onnx_weights,
    gradtau_model_to_onnx,
};
use gradtau::ffi::{gradtau_dataset, gradtau_model, gradtau_param_info, gradtau_status};
use gradtau::io::idx::{decode_u8_limited, IMAGES_MAGIC, LABELS_MAGIC};
use gradtau::io::npy;
use gradtau::io::safetensors::{decode_checkpoint, encode_checkpoint};
use std::io::Write;
use std::ptr;

/// The IDX checks' cap on decoded data, so a fuzzed header cannot exhaust memory.
pub const IDX_CAP: u64 = 16 << 20;

/// The memory budget the model checks compile and run under (through
/// `GRADTAU_MEMORY_LIMIT`). Left at its default, the budget is three quarters of the
/// machine's available memory, so a fuzzed spec could make the library allocate gigabytes
/// legitimately and trip the fuzzer's own RSS limit (`-rss_limit_mb=2048`; a 7.4 M-channel
/// conv's probe pass asked for 4.3 GB). Under this cap the library must refuse such a spec
/// with a resource-limit error instead.
const MODEL_MEMORY_LIMIT: u64 = 256 << 20;

fn limit_model_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // Set before the first model is compiled; the checks only read the variable afterwards.
    ONCE.call_once(|| std::env::set_var("GRADTAU_MEMORY_LIMIT", MODEL_MEMORY_LIMIT.to_string()));
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The model spec parser: any text gives a model or an error, never a panic.
pub fn spec(data: &[u8]) {
    limit_model_memory();
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(model) = gradtau::nn::Model::from_json(text) {
            // What a compiled model reports must be consistent with its spec.
            assert_eq!(model.spec().parameters().len(), model.params().len());
        }
    }
}

/// `.npy`: any bytes give an array or an error; an array read as f32 writes back and reads
/// again to the same bits.
pub fn npy(data: &[u8]) {
    let _ = npy::decode_labels(data, "fuzz.npy");
    if let Ok((values, shape)) = npy::decode_f32(data, "fuzz.npy") {
        let bytes = npy::encode_f32(&values, &shape).expect("a decoded array encodes");
        let (again, shape2) = npy::decode_f32(&bytes, "again.npy").expect("round trip");
        assert_eq!(shape, shape2);
        assert_eq!(bits(&values), bits(&again));
    }
}

/// Safetensors: any bytes give a checkpoint or an error; a checkpoint writes back and reads
/// again to the same names, shapes and bits (integer tensors included).
pub fn safetensors(data: &[u8]) {
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
        assert_eq!(bits(d), bits(d2));
    }
}

/// IDX on raw bytes (plain, or gzip'd when they start with gzip's magic), as images and as
/// labels, under [`IDX_CAP`].
pub fn idx(data: &[u8]) {
    for magic in [IMAGES_MAGIC, LABELS_MAGIC] {
        if let Ok(idx) = decode_u8_limited(data, magic, "fuzz.idx", IDX_CAP) {
            let numel: usize = idx.shape.iter().product();
            assert_eq!(idx.data.len(), numel);
            assert!(idx.data.len() as u64 <= IDX_CAP);
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).expect("in-memory write");
    enc.finish().expect("in-memory write")
}

/// IDX behind the decompressor: byte 0 splits the rest, the decompressed content, into two
/// gzip members (which must read as one stream); the verdict must match the plain read.
pub fn idx_gzip(data: &[u8]) {
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
        let plain = decode_u8_limited(content, magic, "fuzz.idx", IDX_CAP);
        let unzipped = decode_u8_limited(&gz, magic, "fuzz.idx.gz", IDX_CAP);
        match (plain, unzipped) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Ok(_), Err(e)) => panic!("plain file read, gzip'd copy refused: {e}"),
            (Err(_), Ok(_)) => panic!("plain file refused, gzip'd copy read"),
            (Err(_), Err(_)) => {}
        }
    }
}

// ---------------------------------------------------------------- the C ABI sequence
//
// Create a model from a fuzzed spec, read its parameters, bind a buffer to each,
// initialise, build a data set of the model's input shape, predict and compute losses, free
// everything. Every call must return a status (never GRADTAU_PANIC) and leave the host's
// buffers as documented. Byte 0 picks the sample count (1..=4) and the seed, the rest is
// the spec. Specs with a number above `MAX_NUMBER` are only compiled, not run: their
// activations can exceed any memory (e.g. a padding of 40000), which issue 14's resource
// guard addresses; here they would report that known out-of-memory again and again.

const MAX_NUMBER: f64 = 64.0;
/// Parameters or input floats beyond this are not run either (time, not safety).
const MAX_FLOATS: usize = 1 << 16;

fn small_numbers(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x.abs() <= MAX_NUMBER),
        serde_json::Value::Array(a) => a.iter().all(small_numbers),
        serde_json::Value::Object(o) => o.values().all(small_numbers),
        _ => true,
    }
}

fn ok(s: gradtau_status) -> bool {
    assert_ne!(s, gradtau_status::GRADTAU_PANIC, "a call panicked");
    s == gradtau_status::GRADTAU_OK
}

unsafe fn shape(
    m: *mut gradtau_model,
    f: unsafe extern "C" fn(*const gradtau_model, *mut *const usize, *mut usize) -> gradtau_status,
) -> Vec<usize> {
    let (mut p, mut n) = (ptr::null(), 0usize);
    assert!(ok(unsafe { f(m, &mut p, &mut n) }));
    unsafe { std::slice::from_raw_parts(p, n) }.to_vec()
}

unsafe fn exercise(m: *mut gradtau_model, samples: usize, seed: u64) {
    let count = unsafe { gradtau_model_param_count(m) };
    let mut infos = Vec::with_capacity(count);
    for i in 0..count {
        let mut info = gradtau_param_info {
            name: ptr::null(),
            shape: ptr::null(),
            rank: 0,
            numel: 0,
            trainable: false,
        };
        assert!(ok(unsafe { gradtau_model_param(m, i, &mut info) }));
        infos.push(info);
    }
    let floats = infos
        .iter()
        .map(|i| i.numel)
        .try_fold(0usize, usize::checked_add);
    let input = unsafe { shape(m, gradtau_model_input_shape) };
    let output = unsafe { shape(m, gradtau_model_output_shape) };
    let numel = |s: &[usize]| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let small = |n: Option<usize>| n.filter(|&n| n <= MAX_FLOATS);
    let (Some(_), Some(per_in), Some(per_out)) = (
        small(floats),
        small(numel(&input).and_then(|n| n.checked_mul(samples))).map(|n| n / samples),
        small(numel(&output).and_then(|n| n.checked_mul(samples))).map(|n| n / samples),
    ) else {
        return;
    };
    let mut buffers: Vec<Vec<f32>> = infos.iter().map(|i| vec![0.0; i.numel]).collect();
    for (info, buf) in infos.iter().zip(&mut buffers) {
        assert!(ok(unsafe {
            gradtau_model_bind(m, info.name, buf.as_mut_ptr(), buf.len())
        }));
    }
    assert!(ok(unsafe { gradtau_model_init_weights(m, seed) }));
    let x: Vec<f32> = (0..per_in * samples)
        .map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0)
        .collect();
    let mut dims = vec![samples];
    dims.extend_from_slice(&input);
    let labels: Vec<i32> = (0..samples as i32).collect();
    let mut data: *mut gradtau_dataset = ptr::null_mut();
    let made = ok(unsafe {
        gradtau_dataset_classes_new(
            x.as_ptr(),
            x.len(),
            dims.as_ptr(),
            dims.len(),
            labels.as_ptr(),
            labels.len(),
            &mut data,
        )
    });
    if !made {
        return;
    }
    let before = buffers.clone();
    let mut out = vec![f32::NAN; samples * per_out];
    let sentinel = out.clone();
    if !ok(unsafe { gradtau_predict(m, data, out.as_mut_ptr(), out.len()) }) {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&out),
            bits(&sentinel),
            "a failed predict wrote its output"
        );
    }
    let mut losses = vec![0.0f32; samples];
    let _ = ok(unsafe { gradtau_losses(m, data, losses.as_mut_ptr(), losses.len()) });
    assert!(
        buffers
            .iter()
            .zip(&before)
            .all(|(a, b)| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())),
        "inference changed the bound weights"
    );
    unsafe { gradtau_dataset_free(data) };
}

/// The C ABI call sequence described above.
pub fn ffi(input: &[u8]) {
    limit_model_memory();
    let Some((&knobs, spec)) = input.split_first() else {
        return;
    };
    let samples = 1 + (knobs & 3) as usize;
    let seed = u64::from(knobs >> 2);
    let mut m: *mut gradtau_model = ptr::null_mut();
    if !ok(unsafe { gradtau_model_new(spec.as_ptr().cast(), spec.len(), &mut m) }) {
        assert!(m.is_null(), "a failed gradtau_model_new returned a model");
        return;
    }
    let runnable =
        serde_json::from_slice::<serde_json::Value>(spec).is_ok_and(|v| small_numbers(&v));
    if runnable {
        unsafe { exercise(m, samples, seed) };
    }
    unsafe { gradtau_model_free(m) };
}

// ---------------------------------------------------------------- ONNX import and write-back
//
// Any bytes through `gradtau_model_from_onnx`: a status, never a panic. A model that imports
// gets a buffer bound to each parameter, the file's values loaded into them
// (`gradtau_model_load_onnx_weights`, which must agree with the Rust importer), new values
// written, the file written back (`gradtau_model_to_onnx`), and the written file imported
// again: it must give the same parameters holding exactly the new values. Small models also
// predict on a zero batch under a small memory budget (a status, never a panic).

/// The memory budget of the ONNX check's predictions, so a fuzzed size is refused up front.
const ONNX_PREDICT_BUDGET: u64 = 64 << 20;

/// The ONNX round trip described above.
pub fn onnx(data: &[u8]) {
    use gradtau::nn::LossKind;
    use gradtau::onnx::OnnxModel;
    let loss = c"cross_entropy";
    let mut m: *mut gradtau_model = ptr::null_mut();
    if !ok(unsafe { gradtau_model_from_onnx(data.as_ptr(), data.len(), loss.as_ptr(), &mut m) }) {
        assert!(
            m.is_null(),
            "a failed gradtau_model_from_onnx returned a model"
        );
        assert!(
            OnnxModel::from_bytes(data, LossKind::CrossEntropy).is_err(),
            "the C ABI refused a file the Rust importer reads"
        );
        return;
    }
    let rust = OnnxModel::from_bytes(data, LossKind::CrossEntropy)
        .expect("the Rust importer refused a file the C ABI reads");
    let count = unsafe { gradtau_model_param_count(m) };
    assert_eq!(count, rust.model.params().len());
    let floats = rust
        .model
        .params()
        .iter()
        .try_fold(0usize, |a, p| a.checked_add(p.numel()));
    if floats.is_some_and(|n| n <= MAX_FLOATS) {
        unsafe { round_trip(m, &rust) };
        predict_zeros(&rust);
    }
    unsafe { gradtau_model_free(m) };
}

unsafe fn round_trip(m: *mut gradtau_model, rust: &gradtau::onnx::OnnxModel) {
    use gradtau::nn::LossKind;
    let mut buffers: Vec<Vec<f32>> = rust.weights.iter().map(|w| vec![0.0; w.numel()]).collect();
    for (i, buf) in buffers.iter_mut().enumerate() {
        let mut info = gradtau_param_info {
            name: ptr::null(),
            shape: ptr::null(),
            rank: 0,
            numel: 0,
            trainable: false,
        };
        assert!(ok(unsafe { gradtau_model_param(m, i, &mut info) }));
        assert_eq!(info.numel, buf.len());
        assert!(ok(unsafe {
            gradtau_model_bind(m, info.name, buf.as_mut_ptr(), buf.len())
        }));
    }
    // The file's own values; non-finite ones are the file's business, not a write-back's.
    if !ok(unsafe { gradtau_model_load_onnx_weights(m) }) {
        return;
    }
    for (buf, w) in buffers.iter().zip(&rust.weights) {
        assert_eq!(bits(buf), bits(&w.to_vec().expect("host tensor")));
    }
    // New values, every one different from what the file held.
    for (k, v) in buffers.iter_mut().flatten().enumerate() {
        *v = ((k * 37 % 101) as f32) / 64.0 - 0.75;
    }
    let (mut out, mut len) = (ptr::null_mut(), 0usize);
    if !ok(unsafe { gradtau_model_to_onnx(m, &mut out, &mut len) }) {
        return;
    }
    // SAFETY: on success gradtau returned `len` bytes at `out`, freed below.
    let written = unsafe { std::slice::from_raw_parts(out, len) }.to_vec();
    unsafe { gradtau_bytes_free(out, len) };
    let again = gradtau::onnx::OnnxModel::from_bytes(&written, LossKind::CrossEntropy)
        .expect("the written file does not import");
    assert_eq!(again.model.params(), rust.model.params());
    for (buf, w) in buffers.iter().zip(&again.weights) {
        assert_eq!(bits(buf), bits(&w.to_vec().expect("host tensor")));
    }
}

fn predict_zeros(rust: &gradtau::onnx::OnnxModel) {
    let per: Option<usize> = rust
        .model
        .input_shape()
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    let Some(per) = per.filter(|&n| n <= MAX_FLOATS) else {
        return;
    };
    let mut shape = vec![2];
    shape.extend_from_slice(rust.model.input_shape());
    let x = gradtau::Tensor::from_vec(vec![0.0; 2 * per], &shape).expect("shape");
    rust.model.set_memory_limit(Some(ONNX_PREDICT_BUDGET));
    let _ = rust.model.predict(&rust.weights, &x, 2);
}
