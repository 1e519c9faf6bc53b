//! `gradtau_dataset`: inputs and targets, copied once from host memory.

use super::gradtau_status;
use super::status::{borrow, out_ptr, run, slice, value, Failure, FfiResult};
use crate::data::{Dataset, Targets};
use crate::tensor::{checked_numel, Tensor};

/// A data set: inputs `[N, ...]` and their targets (class labels or float values).
///
/// Ownership: the constructors copy the host's arrays once into gradtau-owned memory (the
/// engine works on its own tensors), so the host may free or reuse its arrays as soon as the
/// constructor returns. The caller owns the handle and frees it with `gradtau_dataset_free`.
///
/// Thread safety: immutable after creation; one data set may be used by any number of
/// concurrent calls on any threads (e.g. the same retain set for two models).
pub struct gradtau_dataset {
    pub(crate) data: Dataset,
}

fn boxed(data: Dataset, out: *mut *mut gradtau_dataset) {
    // SAFETY: callers pass an out-pointer already checked non-NULL; the host promises it is
    // writable.
    unsafe { out.write(Box::into_raw(Box::new(gradtau_dataset { data }))) }
}

/// Reads a full shape `[N, ...]` and checks it against the buffer length (overflow-safe).
unsafe fn shaped(
    values: *const f32,
    len: usize,
    shape: *const usize,
    rank: usize,
    what: &str,
) -> FfiResult<Tensor> {
    let shape = unsafe { slice(shape, rank, what) }?;
    if shape.is_empty() {
        return Err(Failure::invalid(format!(
            "`{what}` needs at least one dimension (the sample count)"
        )));
    }
    let n = checked_numel(shape).map_err(|_| {
        Failure::invalid(format!("`{what}` {shape:?}: the element count overflows"))
    })?;
    if n != len {
        return Err(Failure::new(
            gradtau_status::GRADTAU_SHAPE,
            format!("`{what}` {shape:?} needs {n} floats, the buffer holds {len}"),
        ));
    }
    let v = unsafe { slice(values, len, what) }?;
    Ok(Tensor::from_slice(v, shape)?)
}

/// A classification data set. `inputs` holds `inputs_len` floats laid out row-major with the
/// shape `shape[0..rank]` (`shape[0]` = N samples); `labels` holds N class indices
/// (non-negative; checked against the model's classes when the set is used).
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (rank 0, size
/// overflow, negative label), `GRADTAU_SHAPE` (lengths disagree with the shape).
#[no_mangle]
pub unsafe extern "C" fn gradtau_dataset_classes_new(
    inputs: *const f32,
    inputs_len: usize,
    shape: *const usize,
    rank: usize,
    labels: *const i32,
    labels_len: usize,
    dataset_out: *mut *mut gradtau_dataset,
) -> gradtau_status {
    run(|| {
        let out = out_ptr(dataset_out, "dataset_out")?;
        let x = unsafe { shaped(inputs, inputs_len, shape, rank, "shape") }?;
        let labels = unsafe { slice(labels, labels_len, "labels") }?;
        if labels.len() != x.dim(0) {
            return Err(Failure::new(
                gradtau_status::GRADTAU_SHAPE,
                format!("{} samples but {} labels", x.dim(0), labels.len()),
            ));
        }
        if let Some(i) = labels.iter().position(|&l| l < 0) {
            return Err(Failure::invalid(format!(
                "label {} of sample {i} is negative",
                labels[i]
            )));
        }
        let y = labels.iter().map(|&l| l as u32).collect();
        boxed(Dataset::new(x, Targets::Classes(y))?, out);
        Ok(())
    })
}

/// A data set with float targets (for `mse` and `bce_with_logits` models): `targets` holds
/// `targets_len` floats with shape `target_shape[0..target_rank]`, whose first entry must
/// equal the input's sample count.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (rank 0, size
/// overflow), `GRADTAU_SHAPE` (lengths disagree with the shapes or the sample counts differ).
#[no_mangle]
pub unsafe extern "C" fn gradtau_dataset_values_new(
    inputs: *const f32,
    inputs_len: usize,
    shape: *const usize,
    rank: usize,
    targets: *const f32,
    targets_len: usize,
    target_shape: *const usize,
    target_rank: usize,
    dataset_out: *mut *mut gradtau_dataset,
) -> gradtau_status {
    run(|| {
        let out = out_ptr(dataset_out, "dataset_out")?;
        let x = unsafe { shaped(inputs, inputs_len, shape, rank, "shape") }?;
        let t = unsafe {
            shaped(
                targets,
                targets_len,
                target_shape,
                target_rank,
                "target_shape",
            )
        }?;
        boxed(Dataset::new(x, Targets::Values(t))?, out);
        Ok(())
    })
}

/// A new data set holding the samples at `indices[0..count]` of `dataset` (copied, in that
/// order; repeats allowed).
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (an index out of
/// range).
#[no_mangle]
pub unsafe extern "C" fn gradtau_dataset_subset(
    dataset: *const gradtau_dataset,
    indices: *const usize,
    count: usize,
    dataset_out: *mut *mut gradtau_dataset,
) -> gradtau_status {
    run(|| {
        let d = unsafe { borrow(dataset, "dataset") }?;
        let idx = unsafe { slice(indices, count, "indices") }?;
        let out = out_ptr(dataset_out, "dataset_out")?;
        boxed(d.data.subset(idx)?, out);
        Ok(())
    })
}

/// Number of samples, or 0 if `dataset` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_dataset_len(dataset: *const gradtau_dataset) -> usize {
    value(0, || {
        unsafe { dataset.as_ref() }.map_or(0, |d| d.data.len())
    })
}

/// Reads a data set for `model` from files: inputs from `inputs_path` (`.npy` float32/float64
/// `[N, input_shape...]`, or an IDX image file, plain or gzip, scaled to [0, 1]) and targets
/// from `targets_path` (class labels as `.npy` integers or an IDX label file for a
/// `cross_entropy` model; float `.npy` `[N, output_shape...]` otherwise). Paths are
/// NUL-terminated UTF-8. On success `*dataset_out` receives a new data set the caller frees
/// with `gradtau_dataset_free`. A read of the model only: safe during a run on it.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (a path that is
/// not UTF-8, a label out of range), `GRADTAU_IO` (a file that cannot be read or parsed),
/// `GRADTAU_SHAPE` (samples that do not fit the model, or counts that differ),
/// `GRADTAU_NON_FINITE`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_dataset_load(
    model: *const super::model::gradtau_model,
    inputs_path: *const std::ffi::c_char,
    targets_path: *const std::ffi::c_char,
    dataset_out: *mut *mut gradtau_dataset,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        let x = unsafe { super::status::c_str(inputs_path, "inputs_path") }?;
        let y = unsafe { super::status::c_str(targets_path, "targets_path") }?;
        let out = out_ptr(dataset_out, "dataset_out")?;
        let data = m
            .live
            .model()
            .read_dataset(x.as_ref(), y.as_ref(), "loaded")?;
        boxed(data, out);
        Ok(())
    })
}

/// The shape of one sample's inputs (without the sample dimension): `*shape_out` receives a
/// pointer to `*rank_out` sizes, owned by the data set and valid until `gradtau_dataset_free`.
/// The product of the sizes times `gradtau_dataset_len` is the length
/// `gradtau_dataset_inputs` needs.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_dataset_sample_shape(
    dataset: *const gradtau_dataset,
    shape_out: *mut *const usize,
    rank_out: *mut usize,
) -> gradtau_status {
    run(|| {
        let d = unsafe { borrow(dataset, "dataset") }?;
        let s = out_ptr(shape_out, "shape_out")?;
        let r = out_ptr(rank_out, "rank_out")?;
        let sample = &d.data.x.shape()[1..];
        // SAFETY: both checked non-NULL; the caller promises they are writable. The shape
        // lives in the data set, which is immutable until freed.
        unsafe {
            s.write(sample.as_ptr());
            r.write(sample.len());
        }
        Ok(())
    })
}

/// Copies the inputs of every sample, row-major `[N, sample shape...]`, into
/// `inputs_out[0..len]`; `len` must equal the number of input floats (N times the product of
/// the sample shape). Lets a host reuse the samples of a set (the embedded digits, say) as
/// unlabelled requests for `gradtau_model_infer`.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_SHAPE` (wrong `len`).
#[no_mangle]
pub unsafe extern "C" fn gradtau_dataset_inputs(
    dataset: *const gradtau_dataset,
    inputs_out: *mut f32,
    len: usize,
) -> gradtau_status {
    run(|| {
        let d = unsafe { borrow(dataset, "dataset") }?;
        super::status::check_mut_buffer(inputs_out, len, "inputs_out")?;
        let x = d.data.x.to_vec()?;
        if x.len() != len {
            return Err(Failure::new(
                gradtau_status::GRADTAU_SHAPE,
                format!("the set holds {} input floats, the buffer {len}", x.len()),
            ));
        }
        // SAFETY: checked non-NULL, aligned, `len` elements; the host promises it is writable.
        unsafe { std::slice::from_raw_parts_mut(inputs_out, len) }.copy_from_slice(&x);
        Ok(())
    })
}

/// Copies the class label of every sample into `labels_out[0..len]`; `len` must equal the
/// sample count.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_SHAPE` (wrong `len`),
/// `GRADTAU_INVALID_ARGUMENT` (the set has float targets).
#[no_mangle]
pub unsafe extern "C" fn gradtau_dataset_labels(
    dataset: *const gradtau_dataset,
    labels_out: *mut i32,
    len: usize,
) -> gradtau_status {
    run(|| {
        let d = unsafe { borrow(dataset, "dataset") }?;
        super::status::check_mut_buffer(labels_out, len, "labels_out")?;
        let y =
            d.data.y.classes().ok_or_else(|| {
                Failure::invalid("the data set has float targets, not class labels")
            })?;
        if y.len() != len {
            return Err(Failure::new(
                gradtau_status::GRADTAU_SHAPE,
                format!("the set has {} labels, the buffer holds {len}", y.len()),
            ));
        }
        let converted = y
            .iter()
            .map(|&l| {
                i32::try_from(l)
                    .map_err(|_| Failure::invalid(format!("label {l} does not fit in int32_t")))
            })
            .collect::<FfiResult<Vec<i32>>>()?;
        // SAFETY: checked non-NULL, aligned, `len` elements; the host promises it is writable.
        unsafe { std::slice::from_raw_parts_mut(labels_out, len) }.copy_from_slice(&converted);
        Ok(())
    })
}

/// Frees a data set. NULL is a no-op; freeing the same non-NULL handle twice, or freeing it
/// while a call uses it, is undefined behaviour.
#[no_mangle]
pub unsafe extern "C" fn gradtau_dataset_free(dataset: *mut gradtau_dataset) {
    value((), || {
        if !dataset.is_null() {
            // SAFETY: a non-NULL handle came from `Box::into_raw` in a constructor and the
            // caller gives it back exactly once.
            drop(unsafe { Box::from_raw(dataset) });
        }
    })
}
