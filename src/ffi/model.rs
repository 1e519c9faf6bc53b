//! `gradtau_model`: a compiled model spec, its parameter layout, and the host buffers bound
//! to its parameters.

use super::gradtau_status;
use super::status::{
    borrow, c_str, check_mut_buffer, out_ptr, run, slice, value, Failure, FfiResult,
};
use crate::error::Result;
use crate::live::{LiveModel, PublishHook, PublishPhase, WeightStore};
use crate::nn::binding::{check_len, param_values, read_params_checked};
use crate::nn::Model;
use crate::tensor::Tensor;
use crate::unlearn::Control;
use std::ffi::{c_char, c_void, CString};
use std::ptr;

/// A host buffer lent for one parameter. Raw, because the host owns it; it is turned into a
/// slice only inside a [`LentBuffers`] call, under the live model's lock.
#[derive(Clone, Copy)]
struct Lent {
    ptr: *mut f32,
    len: usize,
}

/// The host buffers bound to a model's parameters: one slot per parameter, in spec order.
pub(crate) struct LentBuffers {
    slots: Vec<Option<Lent>>,
}

// SAFETY: the raw pointers are only stored by `gradtau_model_bind` (as the one writer) and
// only dereferenced through `WeightStore`, whose callers hold the live model's lock: shared
// for reads (`snapshot` only reads), exclusive for `replace`. The host's side of the
// contract (buffers stay alive, and the host does not write them while gradtau may read
// them) is stated in the header.
unsafe impl Send for LentBuffers {}
unsafe impl Sync for LentBuffers {}

impl LentBuffers {
    fn copy_out(&self, model: &Model, check_finite: bool) -> Result<Vec<Tensor>> {
        read_params_checked(
            model,
            |name| {
                let i = model.param_index(name)?;
                // SAFETY: `gradtau_model_bind` checked the pointer, alignment and length; other
                // gradtau calls only read these buffers while this shared borrow lives (writes
                // take the exclusive lock), and the host promised not to write them meanwhile.
                self.slots[i]
                    .map(|l| unsafe { std::slice::from_raw_parts(l.ptr.cast_const(), l.len) })
            },
            check_finite,
        )
    }
}

impl WeightStore for LentBuffers {
    fn snapshot(&self, model: &Model) -> Result<Vec<Tensor>> {
        self.copy_out(model, true)
    }

    fn read_snapshot(&self, model: &Model) -> Result<Vec<Tensor>> {
        self.copy_out(model, false)
    }

    fn replace(&mut self, model: &Model, weights: &[Tensor]) -> Result<()> {
        let values = param_values(model, weights)?;
        let mut targets = Vec::with_capacity(values.len());
        for ((p, slot), v) in model.params().iter().zip(&self.slots).zip(&values) {
            let Some(l) = slot else {
                return Err(crate::Error::Binding(format!(
                    "parameter `{}` (shape {:?}) has no bound buffer",
                    p.name, p.shape
                )));
            };
            check_len(&p.name, l.len, v.len())?;
            targets.push(*l);
        }
        for (l, v) in targets.iter().zip(&values) {
            // SAFETY: as in `snapshot`, and the exclusive lock keeps every other gradtau call
            // off these buffers; `bind` rejected overlapping buffers, so the copies do not
            // alias each other, and `values` is gradtau's own memory.
            unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), l.ptr, l.len) };
        }
        Ok(())
    }
}

/// A model: the architecture compiled from a JSON spec, plus the host buffers bound to its
/// parameters. Created by `gradtau_model_new`, freed by `gradtau_model_free`.
///
/// Concurrency: reads (`gradtau_predict`, `gradtau_losses`, `gradtau_audit`,
/// `gradtau_model_infer`, `gradtau_model_classify` and the `const` queries) may run on any
/// number of threads at once, also while a run is in progress; they see the weights from
/// before the run until it publishes. Writers (`gradtau_train`, `gradtau_unlearn`,
/// `gradtau_model_bind`, `gradtau_model_unbind_all`, `gradtau_model_init_weights`,
/// `gradtau_model_set_publish_hook`) run one at a time: a second writer gets `GRADTAU_BUSY`
/// at once. Only `gradtau_model_free` must not overlap any other call.
pub struct gradtau_model {
    pub(crate) live: LiveModel<LentBuffers>,
    names: Vec<CString>,
    /// For a model made from an ONNX file: the file and its initializer values.
    pub(crate) onnx: Option<(crate::onnx::OnnxFile, Vec<Tensor>)>,
}

impl gradtau_model {
    /// A handle over a compiled model, with no buffer bound yet.
    pub(crate) fn boxed(
        model: Model,
        onnx: Option<(crate::onnx::OnnxFile, Vec<Tensor>)>,
    ) -> FfiResult<Box<Self>> {
        let names = model
            .params()
            .iter()
            .map(|p| {
                CString::new(p.name.as_str()).map_err(|_| {
                    Failure::invalid(format!("parameter name `{}` holds a NUL", p.name))
                })
            })
            .collect::<FfiResult<Vec<_>>>()?;
        let slots = vec![None; model.params().len()];
        let live = LiveModel::new(model, LentBuffers { slots });
        Ok(Box::new(gradtau_model { live, names, onnx }))
    }
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
        let handle = gradtau_model::boxed(Model::from_json(text)?, None)?;
        // SAFETY: `out` was checked non-NULL; the caller promises it is writable.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Sets the memory budget, in bytes, of every later call on `model` that computes (train,
/// unlearn, audit, and the reads: infer, classify, predict, losses). Before it allocates
/// anything, such a call estimates its peak memory (parameters, optimizer state, activations
/// and gradients of its batches, workspace) and returns `GRADTAU_RESOURCE_LIMIT`, naming the largest node and the bytes,
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
        m.live
            .model()
            .set_memory_limit((bytes != 0).then_some(bytes));
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
        unsafe { model.as_ref() }.map_or(0, |m| m.live.model().params().len())
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
        let p = m.live.model().params().get(index).ok_or_else(|| {
            Failure::invalid(format!(
                "parameter index {index} out of range: the model has {} parameters",
                m.live.model().params().len()
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
        let i = m.live.model().param_index(name).ok_or_else(|| {
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
        unsafe { self::shape_out(m.live.model().input_shape(), shape_out, rank_out) }
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
        unsafe { self::shape_out(m.live.model().output_shape(), shape_out, rank_out) }
    })
}

/// The model's loss: `"cross_entropy"` (class labels), `"mse"` or `"bce_with_logits"` (float
/// targets). Static storage. NULL if `model` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_loss(model: *const gradtau_model) -> *const c_char {
    use crate::nn::LossKind;
    value(ptr::null(), || {
        match unsafe { model.as_ref() }.map(|m| m.live.model().loss_kind()) {
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
/// again, `gradtau_model_unbind_all` or `gradtau_model_free`. It reads the buffer during the
/// read calls and once at the start of a run, and writes it only when a run (or
/// `gradtau_model_init_weights`) publishes its result, under the model's exclusive lock and
/// between the publish hook's two phases. The host must keep it alive, and must not write it
/// while a gradtau call on this model may read or write it (outside the publish hook's
/// bracket, that is any call in flight). Buffers bound to different parameters must not
/// overlap.
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
        m.live.modify(|model, store| {
            let i = model.param_index(name).ok_or_else(|| {
                crate::Error::Binding(format!("`{name}` is not a parameter of the model"))
            })?;
            let p = &model.params()[i];
            if len != p.numel() {
                return Err(crate::Error::Binding(format!(
                    "`{name}` has shape {:?} ({} floats), the buffer holds {len}",
                    p.shape,
                    p.numel()
                )));
            }
            let span = |ptr: *mut f32, len: usize| {
                let s = ptr as usize;
                (s, s.saturating_add(len * std::mem::size_of::<f32>()))
            };
            let (start, end) = span(buffer, len);
            for (j, slot) in store.slots.iter().enumerate() {
                if let Some(l) = slot {
                    let (s, e) = span(l.ptr, l.len);
                    if j != i && start < e && s < end {
                        return Err(crate::Error::invalid(format!(
                            "the buffer for `{name}` overlaps the buffer bound to `{}`",
                            model.params()[j].name
                        )));
                    }
                }
            }
            store.slots[i] = Some(Lent { ptr: buffer, len });
            Ok(())
        })?;
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
        m.live.modify(|_, store| {
            store.slots.iter_mut().for_each(|s| *s = None);
            Ok(())
        })?;
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
        m.live.init_weights(seed)?;
        Ok(())
    })
}

/// When a `gradtau_publish_fn` is called (a `GRADTAU_PUBLISH_*` value).
pub type gradtau_publish_phase = i32;
/// Before gradtau writes new weights into the bound buffers.
pub const GRADTAU_PUBLISH_BEGIN: gradtau_publish_phase = 0;
/// After the write (or after a failed write, which leaves the old weights in place).
pub const GRADTAU_PUBLISH_END: gradtau_publish_phase = 1;

/// The host's side of publishing new weights into the bound buffers, for hosts whose own
/// engine reads those buffers. Called on the thread that made the writing call, first with
/// `GRADTAU_PUBLISH_BEGIN` (take your engine's write lock; return non-zero to keep the old
/// weights: the call then returns `GRADTAU_CANCELLED`), then, only if BEGIN returned 0, with
/// `GRADTAU_PUBLISH_END` once the buffers hold the new weights (release it; the return value is
/// ignored). It is called outside gradtau's own lock, so it may call gradtau's read functions
/// on the same model; a writing call on the same model returns `GRADTAU_BUSY`. It must not
/// unwind (C++ exceptions, longjmp) into gradtau.
pub type gradtau_publish_fn =
    Option<unsafe extern "C" fn(phase: gradtau_publish_phase, user_data: *mut c_void) -> i32>;

/// The host's hook with its `user_data`, moved into the model.
struct HostHook {
    hook: unsafe extern "C" fn(gradtau_publish_phase, *mut c_void) -> i32,
    user_data: *mut c_void,
}

// SAFETY: the hook is only called by the model's one writer, one call at a time; the host
// promised (header) that `user_data` may be used from the thread of any writing call.
unsafe impl Send for HostHook {}

impl HostHook {
    fn call(&self, phase: PublishPhase) -> Control {
        let code = match phase {
            PublishPhase::Begin => GRADTAU_PUBLISH_BEGIN,
            PublishPhase::End => GRADTAU_PUBLISH_END,
        };
        // SAFETY: the host supplied `hook` with this signature and `user_data` for it.
        if unsafe { (self.hook)(code, self.user_data) } != 0 {
            Control::Cancel
        } else {
            Control::Continue
        }
    }

    fn into_closure(self) -> PublishHook {
        Box::new(move |phase| self.call(phase))
    }
}

/// Sets the hook gradtau calls around every publish of new weights into this model's bound
/// buffers (see `gradtau_publish_fn`); NULL removes it. `user_data` is passed to it untouched
/// and must stay valid until the hook is replaced or the model freed. A writing call.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_BUSY` (a run is in progress).
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_set_publish_hook(
    model: *mut gradtau_model,
    hook: gradtau_publish_fn,
    user_data: *mut c_void,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        let hook = hook.map(|hook| HostHook { hook, user_data }.into_closure());
        m.live.set_publish_hook(hook)?;
        Ok(())
    })
}

/// Caps the CPU threads that every later call on this model uses (training, unlearning,
/// inference, audits); 0 (the default) means no cap: as many threads as the machine has
/// cores, or `MATMUL_NUM_THREADS` when set. A call already running keeps its cap. Safe to call
/// at any time, also while other calls run.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_set_threads(
    model: *mut gradtau_model,
    threads: usize,
) -> gradtau_status {
    run(|| {
        unsafe { borrow(model, "model") }?.live.set_threads(threads);
        Ok(())
    })
}

/// The cap set by `gradtau_model_set_threads` (0: none), or 0 if `model` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_model_threads(model: *const gradtau_model) -> usize {
    value(0, || {
        unsafe { model.as_ref() }.map_or(0, |m| m.live.threads())
    })
}
