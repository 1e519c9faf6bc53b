//! ONNX models through the C ABI: a model made from the bytes of an ONNX file, its
//! initializer values loaded into the bound buffers, and the file written back with the
//! current weights.

use super::gradtau_status;
use super::model::gradtau_model;
use super::status::{borrow, c_str, out_ptr, run, slice, value, Failure};
use crate::nn::LossKind;
use crate::onnx::OnnxModel;

/// Compiles a model from the bytes of an ONNX file (`len` bytes at `bytes`; opset 13 and
/// newer; the supported operators are listed in the README). Its parameters are the graph's
/// initializers, under their ONNX names (for a PyTorch export, the `state_dict` names): bind
/// the host's own buffers to them as usual, or call `gradtau_model_load_onnx_weights` to
/// fill the bound buffers with the values the file holds. `loss` is the loss the model was
/// trained with, `"cross_entropy"`, `"mse"` or `"bce_with_logits"` (ONNX does not record
/// it). gradtau copies the bytes; the host may free them when the call returns. On success
/// `*model_out` receives a new model, freed with `gradtau_model_free`.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (unknown loss),
/// `GRADTAU_SPEC` (not an ONNX model, empty bytes included, or a graph gradtau cannot run:
/// the message names the node, its op type and the reason), `GRADTAU_SHAPE`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_from_onnx(
    bytes: *const u8,
    len: usize,
    loss: *const std::ffi::c_char,
    model_out: *mut *mut gradtau_model,
) -> gradtau_status {
    run(|| {
        let out = out_ptr(model_out, "model_out")?;
        let bytes = unsafe { slice(bytes, len, "bytes") }?;
        let loss = unsafe { c_str(loss, "loss") }?;
        let loss = LossKind::parse(loss).map_err(|_| {
            Failure::invalid(format!(
                "`loss`: unknown loss `{loss}` (use cross_entropy, mse or bce_with_logits)"
            ))
        })?;
        let m = OnnxModel::from_bytes(bytes, loss)?;
        let handle = gradtau_model::boxed(m.model, Some((m.file, m.weights)))?;
        // SAFETY: `out` was checked non-NULL; the caller promises it is writable.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Writes the initializer values of the ONNX file the model was made from into its bound
/// buffers (every parameter must be bound), published like a run's result. A writing call.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (the model was
/// not made from an ONNX file), `GRADTAU_BINDING`, `GRADTAU_BUSY`, `GRADTAU_CANCELLED` (the
/// publish hook refused).
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_load_onnx_weights(
    model: *mut gradtau_model,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        let (_, weights) = m.onnx.as_ref().ok_or_else(not_onnx)?;
        m.live.set_weights(weights)?;
        Ok(())
    })
}

fn not_onnx() -> Failure {
    Failure::invalid("the model was not made from an ONNX file (gradtau_model_from_onnx)")
}

/// The ONNX file the model was made from, with its initializers replaced by the current
/// weights of the bound buffers: same graph, names, opset and metadata. On success
/// `*bytes_out` receives `*len_out` bytes owned by the caller and freed with
/// `gradtau_bytes_free`. A read call: safe during a run (it sees the weights from before).
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (the model was
/// not made from an ONNX file), `GRADTAU_BINDING`, `GRADTAU_NON_FINITE`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_to_onnx(
    model: *const gradtau_model,
    bytes_out: *mut *mut u8,
    len_out: *mut usize,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        let bytes_out = out_ptr(bytes_out, "bytes_out")?;
        let len_out = out_ptr(len_out, "len_out")?;
        let (file, _) = m.onnx.as_ref().ok_or_else(not_onnx)?;
        let weights = m.live.weights()?;
        let bytes = file
            .with_weights(m.live.model(), &weights)?
            .into_boxed_slice();
        let len = bytes.len();
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            len_out.write(len);
            bytes_out.write(Box::into_raw(bytes).cast::<u8>());
        }
        Ok(())
    })
}

/// Frees bytes returned by gradtau (`gradtau_model_to_onnx`); `len` is the length it
/// returned with them. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn gradtau_bytes_free(bytes: *mut u8, len: usize) {
    value((), || {
        if !bytes.is_null() {
            // SAFETY: non-NULL bytes came from `Box::<[u8]>::into_raw` with this length and
            // the caller gives them back once.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(bytes, len)) });
        }
    })
}
