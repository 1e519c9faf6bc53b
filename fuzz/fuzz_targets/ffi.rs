//! A sequence of C ABI calls as a host makes them: create a model from a fuzzed spec, read
//! its parameters, bind a buffer to each, initialise, build a data set of the model's input
//! shape, predict and compute losses, free everything. Every call must return a status
//! (never GRADTAU_PANIC) and leave the host's buffers as documented.
//!
//! Input layout: byte 0 picks the sample count (1..=4) and the seed, the rest is the spec.
//! Specs with a number above `MAX_NUMBER` are only compiled, not run: their activations can
//! exceed any memory (e.g. a padding of 40000), which the resource guard of issue 14
//! addresses; here they would only report the known out-of-memory again and again.
#![no_main]

use gradtau::ffi::dataset::{gradtau_dataset_classes_new, gradtau_dataset_free};
use gradtau::ffi::model::{
    gradtau_model_bind, gradtau_model_free, gradtau_model_init_weights, gradtau_model_input_shape,
    gradtau_model_new, gradtau_model_output_shape, gradtau_model_param, gradtau_model_param_count,
};
use gradtau::ffi::run::{gradtau_losses, gradtau_predict};
use gradtau::ffi::{gradtau_dataset, gradtau_model, gradtau_param_info, gradtau_status};
use libfuzzer_sys::fuzz_target;
use std::ptr;

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
    let per_in: usize = input.iter().product();
    let per_out: usize = output.iter().product();
    if floats.is_none_or(|f| f > MAX_FLOATS) || per_in * samples > MAX_FLOATS {
        return;
    }
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

fuzz_target!(|input: &[u8]| {
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
});
