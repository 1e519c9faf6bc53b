//! `gradtau_model`: a compiled model spec, its parameter layout, and the host buffers bound
//! to its parameters.

use super::gradtau_status;
use super::status::{
    borrow, c_str, check_mut_buffer, out_ptr, run, slice, value, Failure, FfiResult,
};
use crate::nn::{Bindings, Model};
use std::ffi::{c_char, CString};
use std::ptr;
use std::sync::{Mutex, MutexGuard, TryLockError};

/// A host buffer lent for one parameter. Raw, because the host owns it; it is turned into a
/// slice only for the duration of a call that holds the model's lock.
#[derive(Clone, Copy)]
struct Lent {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the raw pointers in `lent` are only stored by `gradtau_model_bind` and only
// dereferenced while the model's mutex is held, so moving or sharing the handle between
// threads cannot race on them; the host's side of the contract (buffers stay alive and
// unshared during a call) is stated in the header.
unsafe impl Send for gradtau_model {}
unsafe impl Sync for gradtau_model {}

/// A model: the architecture compiled from a JSON spec, plus the host buffers bound to its
/// parameters. Created by `gradtau_model_new`, freed by `gradtau_model_free`.
///
/// Thread safety: the `const gradtau_model *` queries may run concurrently with anything
/// except `gradtau_model_free`. The calls taking `gradtau_model *` (bind, init, train,
/// unlearn, audit) lock the model for their duration; a second such call on the same model
/// while one runs returns `GRADTAU_BUSY` at once instead of waiting.
pub struct gradtau_model {
    model: Model,
    names: Vec<CString>,
    /// One slot per parameter, in spec order.
    lent: Mutex<Vec<Option<Lent>>>,
}

/// Describes one parameter (or buffer, such as a batchnorm running mean) of a model.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct gradtau_param_info {
    /// `<node>.<param>` as in PyTorch's `state_dict`, NUL-terminated. Owned by the model;
    /// valid until `gradtau_model_free`.
    pub name: *const c_char,
    /// The shape, `rank` entries, row-major (PyTorch's layout). Owned by the model; valid
    /// until `gradtau_model_free`.
    pub shape: *const usize,
    pub rank: usize,
    /// Number of floats the bound buffer must hold (the product of the shape).
    pub numel: usize,
    /// False for buffers that are not trained (batchnorm running statistics); they must be
    /// bound all the same.
    pub trainable: bool,
}

/// The locked bindings of a model: held for the whole of a mutating call.
pub(crate) struct Locked<'m> {
    pub model: &'m Model,
    lent: MutexGuard<'m, Vec<Option<Lent>>>,
}

impl gradtau_model {
    pub(crate) fn lock(&self) -> FfiResult<Locked<'_>> {
        let lent = match self.lent.try_lock() {
            Ok(g) => g,
            Err(TryLockError::WouldBlock) => {
                return Err(Failure::new(
                    gradtau_status::GRADTAU_BUSY,
                    "another call is running on this model handle; calls that use a model's bound buffers run one at a time",
                ))
            }
            // A panic was caught while the lock was held; the slots are plain data and were
            // never left half-written, so they are still valid.
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        Ok(Locked {
            model: &self.model,
            lent,
        })
    }
}

impl Locked<'_> {
    /// The bound buffers as a `Bindings` (every parameter must be bound).
    pub fn bindings(&mut self) -> FfiResult<Bindings<'_>> {
        let mut b = Bindings::new();
        for (p, slot) in self.model.params().iter().zip(self.lent.iter()) {
            let Some(l) = slot else {
                return Err(Failure::new(
                    gradtau_status::GRADTAU_BINDING,
                    format!(
                        "parameter `{}` (shape {:?}) has no bound buffer",
                        p.name, p.shape
                    ),
                ));
            };
            // SAFETY: `gradtau_model_bind` checked the pointer, alignment, length and that no
            // two bound buffers overlap, so these `&mut` slices do not alias; the host promises
            // the buffer stays alive and untouched by others while a call runs (header
            // contract), and the lock keeps other gradtau calls on this model out.
            let s = unsafe { std::slice::from_raw_parts_mut(l.ptr, l.len) };
            b.bind(&p.name, s)?;
        }
        Ok(b)
    }
}

/// Compiles a model from its JSON spec (format `gradtau.model/1`, see the crate docs).
///
/// `spec_json` points to `spec_len` bytes of UTF-8 (no NUL needed); gradtau copies what it
/// needs, so the text may be freed when the call returns. On success `*model_out` receives a
/// new model that the caller owns and frees with `gradtau_model_free`.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (not UTF-8),
/// `GRADTAU_SPEC` (malformed spec), `GRADTAU_SHAPE` (layers that do not fit together),
/// `GRADTAU_RESOURCE_LIMIT` (a layer's size overflows, or one sample's pass with fresh
/// weights would not fit in the default memory budget).
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_new(
    spec_json: *const c_char,
    spec_len: usize,
    model_out: *mut *mut gradtau_model,
) -> gradtau_status {
    run(|| {
        let out = out_ptr(model_out, "model_out")?;
        let bytes = unsafe { slice(spec_json.cast::<u8>(), spec_len, "spec_json") }?;
        let text = std::str::from_utf8(bytes)
            .map_err(|e| Failure::invalid(format!("the spec is not valid UTF-8: {e}")))?;
        let model = Model::from_json(text)?;
        let names = model
            .params()
            .iter()
            .map(|p| {
                CString::new(p.name.as_str()).map_err(|_| {
                    Failure::invalid(format!("parameter name `{}` holds a NUL", p.name))
                })
            })
            .collect::<FfiResult<Vec<_>>>()?;
        let lent = Mutex::new(vec![None; model.params().len()]);
        let handle = Box::new(gradtau_model { model, names, lent });
        // SAFETY: `out` was checked non-NULL; the caller promises it is writable.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Sets the memory budget, in bytes, of every later call on `model` that computes (train,
/// unlearn, audit, predict, losses). Before it allocates anything, such a call estimates its
/// peak memory (parameters, optimizer state, activations and gradients of its batches,
/// workspace) and returns `GRADTAU_RESOURCE_LIMIT`, naming the largest node and the bytes,
/// when the estimate is above the budget. `bytes` 0 restores the default: 3/4 of the memory
/// the machine reports available when the call starts (8 GiB where that cannot be read).
/// May be called at any time; a call already running keeps the budget it started with.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_set_memory_limit(
    model: *mut gradtau_model,
    bytes: u64,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model.cast_const(), "model") }?;
        m.model.set_memory_limit((bytes != 0).then_some(bytes));
        Ok(())
    })
}

/// Frees a model. NULL is a no-op, so freeing a NULL handle twice is safe; freeing the same
/// non-NULL handle twice, or using it afterwards, is undefined behaviour. Must not run
/// concurrently with any other call on the model. The host's bound buffers are not touched.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_free(model: *mut gradtau_model) {
    value((), || {
        if !model.is_null() {
            // SAFETY: a non-NULL handle came from `Box::into_raw` in `gradtau_model_new` and
            // the caller gives it back exactly once.
            drop(unsafe { Box::from_raw(model) });
        }
    })
}

/// Number of parameters (and buffers) of the model, or 0 if `model` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_param_count(model: *const gradtau_model) -> usize {
    value(0, || {
        unsafe { model.as_ref() }.map_or(0, |m| m.model.params().len())
    })
}

/// Describes parameter `index` (0-based, spec order) into `*info_out`.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (index out of
/// range).
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_param(
    model: *const gradtau_model,
    index: usize,
    info_out: *mut gradtau_param_info,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        let out = out_ptr(info_out, "info_out")?;
        let p = m.model.params().get(index).ok_or_else(|| {
            Failure::invalid(format!(
                "parameter index {index} out of range: the model has {} parameters",
                m.model.params().len()
            ))
        })?;
        let info = gradtau_param_info {
            name: m.names[index].as_ptr(),
            shape: p.shape.as_ptr(),
            rank: p.shape.len(),
            numel: p.numel(),
            trainable: p.trainable,
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(info) };
        Ok(())
    })
}

/// Finds the index of the parameter called `name` (NUL-terminated).
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (not UTF-8),
/// `GRADTAU_BINDING` (no such parameter).
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_param_index(
    model: *const gradtau_model,
    name: *const c_char,
    index_out: *mut usize,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        let name = unsafe { c_str(name, "name") }?;
        let out = out_ptr(index_out, "index_out")?;
        let i = m.model.param_index(name).ok_or_else(|| {
            Failure::new(
                gradtau_status::GRADTAU_BINDING,
                format!("`{name}` is not a parameter of the model"),
            )
        })?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(i) };
        Ok(())
    })
}

unsafe fn shape_out(
    shape: &[usize],
    shape_out: *mut *const usize,
    rank_out: *mut usize,
) -> FfiResult<()> {
    let s = out_ptr(shape_out, "shape_out")?;
    let r = out_ptr(rank_out, "rank_out")?;
    // SAFETY: both checked non-NULL; the caller promises they are writable.
    unsafe {
        s.write(shape.as_ptr());
        r.write(shape.len());
    }
    Ok(())
}

/// The per-sample input shape (without the batch dimension): `*shape_out` receives a pointer
/// to `*rank_out` sizes, owned by the model and valid until `gradtau_model_free`.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_input_shape(
    model: *const gradtau_model,
    shape_out: *mut *const usize,
    rank_out: *mut usize,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        unsafe { self::shape_out(m.model.input_shape(), shape_out, rank_out) }
    })
}

/// The per-sample output shape (e.g. `{10}` for ten classes); ownership as for
/// `gradtau_model_input_shape`.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_output_shape(
    model: *const gradtau_model,
    shape_out: *mut *const usize,
    rank_out: *mut usize,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        unsafe { self::shape_out(m.model.output_shape(), shape_out, rank_out) }
    })
}

/// The model's loss: `"cross_entropy"` (class labels), `"mse"` or `"bce_with_logits"` (float
/// targets). Static storage. NULL if `model` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_loss(model: *const gradtau_model) -> *const c_char {
    use crate::nn::LossKind;
    value(ptr::null(), || {
        match unsafe { model.as_ref() }.map(|m| m.model.loss_kind()) {
            Some(LossKind::CrossEntropy) => c"cross_entropy".as_ptr(),
            Some(LossKind::Mse) => c"mse".as_ptr(),
            Some(LossKind::BceWithLogits) => c"bce_with_logits".as_ptr(),
            None => ptr::null(),
        }
    })
}

/// Lends the host buffer `buffer` (`len` floats, the parameter's row-major values) as the
/// parameter `name`. Binding a name again replaces the earlier buffer.
///
/// Ownership: the buffer stays the host's. gradtau keeps the pointer until the name is bound
/// again, `gradtau_model_unbind_all` or `gradtau_model_free`; it reads the buffer only during
/// `gradtau_model_init_weights`, `gradtau_train`, `gradtau_unlearn` and `gradtau_audit` on this
/// model, and writes it only when such a call succeeds. The host must keep it alive and must
/// not write it while one of those calls runs. Buffers bound to different parameters must
/// not overlap.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (misaligned, or
/// overlapping another bound buffer), `GRADTAU_BINDING` (unknown name or wrong length),
/// `GRADTAU_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_bind(
    model: *mut gradtau_model,
    name: *const c_char,
    buffer: *mut f32,
    len: usize,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        let name = unsafe { c_str(name, "name") }?;
        check_mut_buffer(buffer, len, "buffer")?;
        let mut locked = m.lock()?;
        let i = m.model.param_index(name).ok_or_else(|| {
            Failure::new(
                gradtau_status::GRADTAU_BINDING,
                format!("`{name}` is not a parameter of the model"),
            )
        })?;
        let p = &m.model.params()[i];
        if len != p.numel() {
            return Err(Failure::new(
                gradtau_status::GRADTAU_BINDING,
                format!(
                    "`{name}` has shape {:?} ({} floats), the buffer holds {len}",
                    p.shape,
                    p.numel()
                ),
            ));
        }
        let (start, end) = (
            buffer as usize,
            (buffer as usize).saturating_add(len * std::mem::size_of::<f32>()),
        );
        for (j, slot) in locked.lent.iter().enumerate() {
            if let Some(l) = slot {
                let (s, e) = (
                    l.ptr as usize,
                    (l.ptr as usize).saturating_add(l.len * std::mem::size_of::<f32>()),
                );
                if j != i && start < e && s < end {
                    return Err(Failure::invalid(format!(
                        "the buffer for `{name}` overlaps the buffer bound to `{}`",
                        m.model.params()[j].name
                    )));
                }
            }
        }
        locked.lent[i] = Some(Lent { ptr: buffer, len });
        Ok(())
    })
}

/// Forgets every bound buffer (the host's memory is not touched).
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_unbind_all(model: *mut gradtau_model) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        let mut locked = m.lock()?;
        locked.lent.iter_mut().for_each(|s| *s = None);
        Ok(())
    })
}

/// Writes PyTorch's default initialisation (seeded) into every bound buffer. Every parameter
/// must be bound; the buffers' previous contents are not read.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_BINDING` (a parameter is unbound),
/// `GRADTAU_BUSY`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_init_weights(
    model: *mut gradtau_model,
    seed: u64,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        let mut locked = m.lock()?;
        let weights = m.model.init_weights(seed);
        locked.bindings()?.write(&m.model, &weights)?;
        Ok(())
    })
}
