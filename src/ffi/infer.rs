//! The read calls a service makes while it serves: outputs, probabilities and classes for
//! unlabelled inputs, and outputs or losses for a labelled data set. Any number of them may
//! run at once on one model, also while it is being trained or unlearned (they see the
//! weights from before the run until it publishes).

use super::dataset::gradtau_dataset;
use super::gradtau_status;
use super::model::gradtau_model;
use super::status::{borrow, check_mut_buffer, run, slice, Failure, FfiResult};
use crate::error::Error;
use crate::tensor::Tensor;

/// What `gradtau_model_infer` writes (a `GRADTAU_OUTPUT_*` value).
pub type gradtau_output = i32;
/// The model's raw outputs (logits for a classifier, values for a regressor).
pub const GRADTAU_OUTPUT_RAW: gradtau_output = 0;
/// Probabilities: softmax over the last dimension for a `cross_entropy` model, a sigmoid per
/// value for `bce_with_logits`; `GRADTAU_INVALID_ARGUMENT` for an `mse` model.
pub const GRADTAU_OUTPUT_PROBABILITIES: gradtau_output = 1;

/// Copies `values` into the host buffer `out` of `out_len` elements, which must match.
unsafe fn copy_out<T: Copy>(values: &[T], out: *mut T, out_len: usize) -> FfiResult<()> {
    if values.len() != out_len {
        return Err(Error::shape(
            "output buffer",
            format!(
                "`out` holds {out_len} values, the result has {}",
                values.len()
            ),
        )
        .into());
    }
    if out_len == 0 {
        return Ok(());
    }
    // SAFETY: `out` is non-NULL, aligned and spans `out_len` writable elements (checked by
    // the caller with `checked_out` and promised by the host); it does not overlap `values`,
    // which gradtau owns.
    unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), out, out_len) };
    Ok(())
}

/// An output buffer: NULL is allowed only when it holds nothing.
fn checked_out<T>(out: *mut T, out_len: usize, what: &str) -> FfiResult<()> {
    if out.is_null() && out_len == 0 {
        Ok(())
    } else {
        check_mut_buffer(out, out_len, what)
    }
}

/// `count` samples of unlabelled inputs as a tensor `[count, input_shape...]`.
unsafe fn inputs_tensor(
    m: &gradtau_model,
    inputs: *const f32,
    inputs_len: usize,
    count: usize,
) -> FfiResult<Tensor> {
    let x = unsafe { slice(inputs, inputs_len, "inputs") }?;
    let input_shape = m.live.model().input_shape();
    let per: usize = input_shape.iter().product();
    if count.checked_mul(per) != Some(inputs_len) {
        return Err(Error::shape(
            "inputs",
            format!(
                "{count} samples of shape {input_shape:?} need {} floats, `inputs_len` is \
                 {inputs_len}",
                count.saturating_mul(per)
            ),
        )
        .into());
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "`inputs` holds NaN or infinity at index {i} (sample {})",
            i / per.max(1)
        ))
        .into());
    }
    let mut shape = vec![count];
    shape.extend_from_slice(input_shape);
    Ok(Tensor::from_slice(x, &shape)?)
}

/// Inference on unlabelled inputs: `count` samples, row-major `[count, input_shape...]` in
/// `inputs` (`inputs_len` floats, exactly `count * prod(input_shape)`), and writes into `out`
/// (`out_len` floats, exactly `count * prod(output_shape)`) the raw outputs or the
/// probabilities, as `kind` says. Normalisation layers run in evaluation mode. A count of 0
/// is an empty batch: NULL buffers are allowed and nothing is written. `out` is written only
/// on success.
///
/// A read call: any number may run at once on one model, also during a run on it (they see
/// the weights from before the run until it publishes).
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (unknown `kind`,
/// probabilities of an `mse` model), `GRADTAU_SHAPE` (lengths that do not match),
/// `GRADTAU_NON_FINITE` (NaN or infinity in the inputs or the weights, or outputs that
/// overflow), `GRADTAU_BINDING` (a parameter is unbound), `GRADTAU_RESOURCE_LIMIT` (a batch
/// too large for the model's memory budget), `GRADTAU_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_infer(
    model: *const gradtau_model,
    inputs: *const f32,
    inputs_len: usize,
    count: usize,
    kind: gradtau_output,
    out: *mut f32,
    out_len: usize,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        checked_out(out, out_len, "out")?;
        let x = unsafe { inputs_tensor(m, inputs, inputs_len, count) }?;
        let y = match kind {
            GRADTAU_OUTPUT_RAW => m.live.predict(&x)?,
            GRADTAU_OUTPUT_PROBABILITIES => m.live.probabilities(&x)?,
            k => {
                return Err(Failure::invalid(format!(
                    "unknown output kind {k}: use GRADTAU_OUTPUT_RAW or \
                     GRADTAU_OUTPUT_PROBABILITIES"
                )))
            }
        };
        unsafe { copy_out(&y.to_vec()?, out, out_len) }
    })
}

/// The predicted class (argmax of the outputs) of each of `count` unlabelled samples, for a
/// `cross_entropy` model, written to `classes_out` (`classes_len` must equal `count`).
/// Inputs, empty batches and concurrency as in `gradtau_model_infer`.
///
/// Returns the statuses of `gradtau_model_infer`; `GRADTAU_INVALID_ARGUMENT` for a model
/// whose loss is not `cross_entropy`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_classify(
    model: *const gradtau_model,
    inputs: *const f32,
    inputs_len: usize,
    count: usize,
    classes_out: *mut i32,
    classes_len: usize,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        checked_out(classes_out, classes_len, "classes_out")?;
        let x = unsafe { inputs_tensor(m, inputs, inputs_len, count) }?;
        let classes = m
            .live
            .classify(&x)?
            .into_iter()
            .map(|c| i32::try_from(c).unwrap_or(i32::MAX))
            .collect::<Vec<_>>();
        unsafe { copy_out(&classes, classes_out, classes_len) }
    })
}

/// Inference on a data set with the model's bound weights: writes the model's outputs
/// (logits for a classifier) for every sample of `data` into `out`, row-major `[N,
/// output_shape...]`; `out_len` must be exactly `N * prod(output_shape)`. The targets of
/// `data` are not used (`gradtau_model_infer` needs none). Evaluation mode; `out` is written
/// only on success. A read call, like `gradtau_model_infer`.
///
/// Outputs that come out NaN or infinite (finite weights whose values overflow, e.g. after a
/// diverged run made elsewhere) are not returned: the call fails with `GRADTAU_NON_FINITE`,
/// the message names the first such sample, and `out` is untouched.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT`, `GRADTAU_SHAPE`,
/// `GRADTAU_NON_FINITE` (NaN in the inputs or weights, or non-finite outputs),
/// `GRADTAU_BINDING`, `GRADTAU_RESOURCE_LIMIT` (a batch of 256 would not fit in the model's
/// memory budget), `GRADTAU_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_predict(
    model: *mut gradtau_model,
    data: *const gradtau_dataset,
    out: *mut f32,
    out_len: usize,
) -> gradtau_status {
    unsafe {
        on_dataset(model, data, out, out_len, |live, data| {
            // The forward pass checks the sample shape; inputs must also be finite.
            data.check_finite()?;
            live.predict(&data.x)?.to_vec()
        })
    }
}

/// The shared body of the data-set reads: checks the arguments, computes one float per
/// output value with `compute`, and copies them into `out` (written only on success).
unsafe fn on_dataset(
    model: *mut gradtau_model,
    data: *const gradtau_dataset,
    out: *mut f32,
    out_len: usize,
    compute: impl FnOnce(
        &crate::live::LiveModel<super::model::LentBuffers>,
        &crate::data::Dataset,
    ) -> crate::error::Result<Vec<f32>>,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        let data = unsafe { borrow(data, "data") }?;
        checked_out(out, out_len, "out")?;
        let values = compute(&m.live, &data.data)?;
        unsafe { copy_out(&values, out, out_len) }
    })
}

/// The per-sample training loss of every sample of `data` under the model's bound weights
/// (cross-entropy, MSE or BCE-with-logits, as the spec says), written to `out` (`out_len`
/// must equal the number of samples). Evaluation mode; `out` is written only on success. A
/// read call, like `gradtau_model_infer`. A NaN or infinite loss fails with
/// `GRADTAU_NON_FINITE` naming the sample, as in `gradtau_predict`.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT`, `GRADTAU_SHAPE`,
/// `GRADTAU_NON_FINITE`, `GRADTAU_BINDING`, `GRADTAU_RESOURCE_LIMIT`, `GRADTAU_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_losses(
    model: *mut gradtau_model,
    data: *const gradtau_dataset,
    out: *mut f32,
    out_len: usize,
) -> gradtau_status {
    unsafe { on_dataset(model, data, out, out_len, |live, data| live.losses(data)) }
}
