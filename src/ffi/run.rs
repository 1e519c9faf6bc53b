//! The long-running calls — `gradtau_unlearn`, `gradtau_train`, `gradtau_audit` and
//! `gradtau_audit_report_new` — with their options structs, the progress callback, the run
//! report and the audit report.

use super::dataset::gradtau_dataset;
use super::gradtau_status;
use super::model::gradtau_model;
use super::status::{borrow, c_str, out_ptr, run, value, Failure, FfiResult};
use crate::audit::{AttackScores, AuditRow, AuditSets, TaskMetric};
use crate::backend::DeviceRequest;
use crate::unlearn::{
    BaselineOptions, Control, Method, NablaTauMode, NablaTauOptions, OptimizerKind, Progress,
    RunReport, TrainRecipe, UnlearnSets,
};
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;

/// Which unlearning method `gradtau_unlearn` runs (a `GRADTAU_METHOD_*` value).
pub type gradtau_method = i32;
/// ∇τ (the default).
pub const GRADTAU_METHOD_NABLA_TAU: gradtau_method = 0;
/// Fine-tuning on the retain set.
pub const GRADTAU_METHOD_FINETUNE: gradtau_method = 1;
/// Gradient ascent on the forget set.
pub const GRADTAU_METHOD_NEGGRAD: gradtau_method = 2;
/// Weighted ascent on the forget set plus descent on the retain set.
pub const GRADTAU_METHOD_NEGGRAD_PLUS: gradtau_method = 3;

/// The variant of ∇τ (a `GRADTAU_NABLA_TAU_MODE_*` value).
pub type gradtau_nabla_tau_mode = i32;
/// Distribution-matching target, non-decaying α, audit-based switch-off (the default).
pub const GRADTAU_NABLA_TAU_MODE_ADAPTIVE: gradtau_nabla_tau_mode = 0;
/// The authors' recipe, faithfully.
pub const GRADTAU_NABLA_TAU_MODE_PAPER: gradtau_nabla_tau_mode = 1;

/// The optimizer of `gradtau_train` (a `GRADTAU_OPTIMIZER_*` value).
pub type gradtau_optimizer = i32;
/// SGD, with `momentum` and `nesterov` from the options.
pub const GRADTAU_OPTIMIZER_SGD: gradtau_optimizer = 0;
/// Adam (L2 weight decay added to the gradient).
pub const GRADTAU_OPTIMIZER_ADAM: gradtau_optimizer = 1;
/// AdamW (decoupled weight decay; the default).
pub const GRADTAU_OPTIMIZER_ADAMW: gradtau_optimizer = 2;

/// Options of `gradtau_unlearn`. Initialise with `gradtau_unlearn_options_default`, then
/// change fields; `struct_size` must stay `sizeof(gradtau_unlearn_options)`. Fields a method
/// does not use are ignored.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct gradtau_unlearn_options {
    /// `sizeof(gradtau_unlearn_options)`, set by the `_default` function.
    pub struct_size: usize,
    /// A `GRADTAU_METHOD_*` value.
    pub method: gradtau_method,
    /// ∇τ only: a `GRADTAU_NABLA_TAU_MODE_*` value.
    pub nabla_tau_mode: gradtau_nabla_tau_mode,
    /// Batch size. ∇τ: 0 picks the method's rule (256 in paper mode; adaptive: 256 capped at
    /// half the forget set, at least 32). Baselines: must be positive.
    pub batch_size: usize,
    /// Learning rate (AdamW). ∇τ: NaN (the default) picks the mode's rule (paper: 1e-3;
    /// adaptive: 1e-3 × 10 × forget fraction, within [1e-3, 3e-3], and for random forgetting
    /// up to 4× that on a run of under 300 steps, halved at each check that finds an
    /// overshoot); the rate then decays over the forget-epochs.
    pub lr: f32,
    pub weight_decay: f32,
    /// ∇τ only: the learning rate decays linearly to `lr * lr_end_factor`.
    pub lr_end_factor: f32,
    /// ∇τ only: initial forget weight α₀ in [0, 1]; NaN picks the mode's default (paper:
    /// 5/3 · forget fraction; adaptive: 0.4).
    pub alpha0: f32,
    /// ∇τ adaptive mode only: the largest value α's controller may raise α to, in
    /// [α₀, 1]; NaN picks 0.8 (or α₀ if larger). Set it to α₀ to keep α on its schedule.
    pub alpha_max: f32,
    /// Passes. ∇τ: forget-epochs, 0 picks ⌊3 · retain batches / forget batches⌋ (paper mode:
    /// at least 1; adaptive mode: kept within [12, 50]).
    /// Baselines: must be positive.
    pub epochs: usize,
    /// ∇τ paper mode only: τ is recomputed every this many forget-epochs.
    pub tau_every: usize,
    /// ∇τ only: run normalisation layers in training mode.
    pub norm_training: bool,
    /// ∇τ adaptive mode only: the membership-test margin under which forgetting stops.
    pub stop_margin: f32,
    /// NegGrad+ only: weight of the retain term, in [0, 1].
    pub retain_weight: f32,
    pub seed: u64,
    /// `"auto"`, `"cpu"`, `"cuda"` or `"cuda:N"` (NUL-terminated, borrowed for the call);
    /// NULL means `"auto"`.
    pub device: *const c_char,
    /// When set, a cancelled or failed run still writes the weights it reached into the
    /// bound buffers (the status still reports the cancellation or error).
    pub keep_partial: bool,
    /// ∇τ only: stop after this many steps (the report says `truncated`); 0 = no limit.
    pub max_steps: usize,
}

/// Options of `gradtau_train`. Initialise with `gradtau_train_options_default`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct gradtau_train_options {
    /// `sizeof(gradtau_train_options)`, set by the `_default` function.
    pub struct_size: usize,
    /// A `GRADTAU_OPTIMIZER_*` value.
    pub optimizer: gradtau_optimizer,
    pub lr: f32,
    pub weight_decay: f32,
    /// SGD only.
    pub momentum: f32,
    /// SGD only.
    pub nesterov: bool,
    pub epochs: usize,
    pub batch_size: usize,
    /// Clip the global gradient norm to this value; 0 = no clipping.
    pub clip_norm: f32,
    pub seed: u64,
    /// As in `gradtau_unlearn_options`; NULL means `"cpu"`.
    pub device: *const c_char,
    /// As in `gradtau_unlearn_options`.
    pub keep_partial: bool,
}

/// What the progress callback is told after every optimisation step. Valid only during the
/// callback.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct gradtau_progress {
    /// `"nabla_tau"`, `"finetune"`, `"neggrad"`, `"neggrad_plus"` or `"train"`; static.
    pub method: *const c_char,
    /// 0-based epoch and the planned number of epochs.
    pub epoch: usize,
    pub epochs: usize,
    /// 0-based step and the planned number of steps.
    pub step: usize,
    pub total_steps: usize,
    /// Mean forget-batch loss (NaN where the method uses none, and in ∇τ's repair phase,
    /// once the forget term is off and `alpha` is 0).
    pub forget_loss: f32,
    /// Mean retain (or training) batch loss (NaN where the method uses none).
    pub retain_loss: f32,
    pub alpha: f32,
    /// Current target loss τ (NaN outside ∇τ).
    pub tau: f32,
    pub lr: f32,
}

/// Called after every step on the thread that made the call. Return 0 to continue, non-zero
/// to cancel: the call then returns `GRADTAU_CANCELLED` and leaves the bound buffers
/// bit-for-bit as they were. It must not unwind (C++ exceptions, longjmp) into gradtau, and
/// may call gradtau's read functions on the same model (they see the weights from before the
/// run); a writing call on the same model returns `GRADTAU_BUSY`.
pub type gradtau_progress_fn =
    Option<unsafe extern "C" fn(progress: *const gradtau_progress, user_data: *mut c_void) -> i32>;

/// What a completed run did. Created by `gradtau_unlearn` / `gradtau_train`, owned by the
/// caller, freed by `gradtau_report_free`. Immutable: the getters may run concurrently.
pub struct gradtau_report {
    report: RunReport,
    method: CString,
}

/// One audit row: accuracies on the three sets and the membership-inference attack's
/// accuracy (≈ 0.5: the forget set looks unseen). Accuracies and `mia_entropy` are NaN for
/// models without class labels. Its layout is frozen (callers hold it by value); the task's
/// metric and the other attacks are read from a `gradtau_audit_report`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct gradtau_audit_row {
    pub retain_accuracy: f64,
    pub forget_accuracy: f64,
    pub test_accuracy: f64,
    /// Attack accuracy on the per-sample loss.
    pub mia_loss: f64,
    /// Attack accuracy on the softmax entropy.
    pub mia_entropy: f64,
}

fn method_cstr(m: &str) -> &'static CStr {
    match m {
        "nabla_tau" => c"nabla_tau",
        "finetune" => c"finetune",
        "neggrad" => c"neggrad",
        "neggrad_plus" => c"neggrad_plus",
        "train" => c"train",
        _ => c"unknown",
    }
}

/// Reads a versioned options struct. Its first field is `size_t struct_size`.
unsafe fn read_sized<T: Copy>(p: *const T, what: &str) -> FfiResult<T> {
    let size = unsafe { borrow(p.cast::<usize>(), what) }?;
    let want = std::mem::size_of::<T>();
    // Only one layout exists so far. A later, larger version will accept this size and
    // default the new fields; a larger size than ours comes from a newer header whose fields
    // this library cannot honour, so it is refused rather than half-applied.
    if *size != want {
        return Err(Failure::new(
            gradtau_status::GRADTAU_ABI_MISMATCH,
            format!("{what}.struct_size is {size}, this library's struct has {want} bytes: initialise it with its _default() function"),
        ));
    }
    // SAFETY: non-NULL (checked above) and the caller promises a whole `T`.
    Ok(unsafe { ptr::read(p) })
}

unsafe fn device(p: *const c_char, fallback: DeviceRequest) -> FfiResult<DeviceRequest> {
    if p.is_null() {
        return Ok(fallback);
    }
    Ok(DeviceRequest::parse(unsafe { c_str(p, "device") }?)?)
}

/// Fills `*options_out` with the defaults of `method`.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (unknown method).
#[no_mangle]
pub unsafe extern "C" fn gradtau_unlearn_options_default(
    method: gradtau_method,
    options_out: *mut gradtau_unlearn_options,
) -> gradtau_status {
    run(|| {
        let out = out_ptr(options_out, "options_out")?;
        let nt = NablaTauOptions::default();
        let base = match method {
            GRADTAU_METHOD_NABLA_TAU | GRADTAU_METHOD_FINETUNE => BaselineOptions::finetune(),
            GRADTAU_METHOD_NEGGRAD => BaselineOptions::neggrad(),
            GRADTAU_METHOD_NEGGRAD_PLUS => BaselineOptions::neggrad_plus(),
            m => return Err(Failure::invalid(format!("unknown method {m}"))),
        };
        let nabla = method == GRADTAU_METHOD_NABLA_TAU;
        let o = gradtau_unlearn_options {
            struct_size: std::mem::size_of::<gradtau_unlearn_options>(),
            method,
            nabla_tau_mode: GRADTAU_NABLA_TAU_MODE_ADAPTIVE,
            batch_size: if nabla { 0 } else { base.batch_size },
            lr: if nabla { f32::NAN } else { base.lr },
            weight_decay: if nabla {
                nt.weight_decay
            } else {
                base.weight_decay
            },
            lr_end_factor: nt.lr_end_factor,
            alpha0: f32::NAN,
            alpha_max: f32::NAN,
            epochs: if nabla { 0 } else { base.epochs },
            tau_every: nt.tau_every,
            norm_training: nt.norm_training,
            stop_margin: nt.stop_margin,
            retain_weight: base.retain_weight,
            seed: 0,
            device: ptr::null(),
            keep_partial: false,
            max_steps: 0,
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(o) };
        Ok(())
    })
}

unsafe fn to_method(o: &gradtau_unlearn_options) -> FfiResult<Method> {
    let device = unsafe { device(o.device, DeviceRequest::Auto) }?;
    let base = BaselineOptions {
        epochs: o.epochs,
        batch_size: o.batch_size,
        lr: o.lr,
        weight_decay: o.weight_decay,
        retain_weight: o.retain_weight,
        seed: o.seed,
        device,
        keep_partial: o.keep_partial,
        overlap: Default::default(),
    };
    Ok(match o.method {
        GRADTAU_METHOD_NABLA_TAU => Method::NablaTau(NablaTauOptions {
            mode: match o.nabla_tau_mode {
                GRADTAU_NABLA_TAU_MODE_ADAPTIVE => NablaTauMode::Adaptive,
                GRADTAU_NABLA_TAU_MODE_PAPER => NablaTauMode::Paper,
                m => return Err(Failure::invalid(format!("unknown nabla_tau_mode {m}"))),
            },
            batch_size: (o.batch_size != 0).then_some(o.batch_size),
            lr: (!o.lr.is_nan()).then_some(o.lr),
            weight_decay: o.weight_decay,
            lr_end_factor: o.lr_end_factor,
            alpha0: (!o.alpha0.is_nan()).then_some(o.alpha0),
            alpha_max: (!o.alpha_max.is_nan()).then_some(o.alpha_max),
            epochs: (o.epochs != 0).then_some(o.epochs),
            tau_every: o.tau_every,
            norm_training: o.norm_training,
            stop_margin: o.stop_margin,
            seed: o.seed,
            device,
            keep_partial: o.keep_partial,
            max_steps: (o.max_steps != 0).then_some(o.max_steps),
            overlap: Default::default(),
        }),
        GRADTAU_METHOD_FINETUNE => Method::FineTune(base),
        GRADTAU_METHOD_NEGGRAD => Method::NegGrad(base),
        GRADTAU_METHOD_NEGGRAD_PLUS => Method::NegGradPlus(base),
        m => return Err(Failure::invalid(format!("unknown method {m}"))),
    })
}

/// Fills `*options_out` with the training defaults (AdamW, lr 1e-3, weight decay 0.01, 10
/// epochs, batch 64, CPU).
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_train_options_default(
    options_out: *mut gradtau_train_options,
) -> gradtau_status {
    run(|| {
        let out = out_ptr(options_out, "options_out")?;
        let r = TrainRecipe::default();
        let o = gradtau_train_options {
            struct_size: std::mem::size_of::<gradtau_train_options>(),
            optimizer: GRADTAU_OPTIMIZER_ADAMW,
            lr: r.lr,
            weight_decay: r.weight_decay,
            momentum: 0.9,
            nesterov: false,
            epochs: r.epochs,
            batch_size: r.batch_size,
            clip_norm: 0.0,
            seed: r.seed,
            device: ptr::null(),
            keep_partial: r.keep_partial,
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(o) };
        Ok(())
    })
}

/// Turns the C callback into the engine's progress closure.
fn progress_closure(
    cb: gradtau_progress_fn,
    user_data: *mut c_void,
) -> impl FnMut(&Progress) -> Control {
    move |p: &Progress| {
        let Some(f) = cb else {
            return Control::Continue;
        };
        let cp = gradtau_progress {
            method: method_cstr(p.method).as_ptr(),
            epoch: p.epoch,
            epochs: p.epochs,
            step: p.step,
            total_steps: p.total_steps,
            forget_loss: p.forget_loss,
            retain_loss: p.retain_loss,
            alpha: p.alpha,
            tau: p.tau,
            lr: p.lr,
        };
        // SAFETY: the host supplied `f` with this signature; `cp` outlives the call.
        if unsafe { f(&cp, user_data) } != 0 {
            Control::Cancel
        } else {
            Control::Continue
        }
    }
}

fn write_report(report: RunReport, out: *mut *mut gradtau_report) {
    if out.is_null() {
        return;
    }
    let method = CString::new(report.method.replace('\0', "")).unwrap_or_default();
    // SAFETY: non-NULL; the caller promises it is writable.
    unsafe { out.write(Box::into_raw(Box::new(gradtau_report { report, method }))) };
}

/// Unlearns `forget` from the model's bound weights.
///
/// Reads every bound buffer, runs the method chosen in `options` (NULL: ∇τ with its
/// defaults) on `forget`, `retain` and `val` (held-out data the model never trained on), and
/// writes the new weights into the bound buffers only if the run succeeds: on any error or a
/// cancellation the buffers are bit-for-bit unchanged (unless `keep_partial`). `progress` may
/// be NULL; `user_data` is passed to it untouched. The data sets are only read.
///
/// On success, if `report_out` is not NULL, `*report_out` receives a report the caller
/// frees with `gradtau_report_free`.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_ABI_MISMATCH`,
/// `GRADTAU_INVALID_ARGUMENT` (bad option, empty set, label out of range), `GRADTAU_SHAPE`
/// (samples do not fit the model), `GRADTAU_NON_FINITE` (NaN in weights or data, or a run
/// whose loss, weights or final outputs became NaN or infinite: the message names the step,
/// and the buffers are untouched even with `keep_partial`), `GRADTAU_BINDING` (a parameter
/// is unbound), `GRADTAU_CANCELLED`, `GRADTAU_BUSY`, `GRADTAU_DEVICE_UNAVAILABLE`,
/// `GRADTAU_CUDA`, `GRADTAU_RESOURCE_LIMIT` (the run would not fit in the model's memory
/// budget, see `gradtau_model_set_memory_limit`), `GRADTAU_PANIC`. Options are validated
/// first (`GRADTAU_INVALID_ARGUMENT` names the field and its range), and a forget set that
/// shares samples with the retain set (or, for ∇τ, the validation set) is refused with
/// `GRADTAU_INVALID_ARGUMENT` and the count.
#[no_mangle]
pub unsafe extern "C" fn gradtau_unlearn(
    model: *mut gradtau_model,
    forget: *const gradtau_dataset,
    retain: *const gradtau_dataset,
    val: *const gradtau_dataset,
    options: *const gradtau_unlearn_options,
    progress: gradtau_progress_fn,
    user_data: *mut c_void,
    report_out: *mut *mut gradtau_report,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        let forget = unsafe { borrow(forget, "forget") }?;
        let retain = unsafe { borrow(retain, "retain") }?;
        let val = unsafe { borrow(val, "val") }?;
        let method = if options.is_null() {
            Method::NablaTau(NablaTauOptions::default())
        } else {
            let o = unsafe { read_sized(options, "options") }?;
            unsafe { to_method(&o) }?
        };
        let sets = UnlearnSets {
            forget: &forget.data,
            retain: &retain.data,
            val: &val.data,
        };
        let mut cb = progress_closure(progress, user_data);
        let report = m.live.unlearn(sets, &method, &mut cb)?;
        write_report(report, report_out);
        Ok(())
    })
}

/// Trains the model's bound weights on `data` (to produce an original model, or the
/// retrain-from-scratch reference). Buffers, callback and report as in `gradtau_unlearn`;
/// `options` NULL means the defaults.
///
/// Returns the statuses of `gradtau_unlearn`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_train(
    model: *mut gradtau_model,
    data: *const gradtau_dataset,
    options: *const gradtau_train_options,
    progress: gradtau_progress_fn,
    user_data: *mut c_void,
    report_out: *mut *mut gradtau_report,
) -> gradtau_status {
    run(|| {
        let m = unsafe { borrow(model, "model") }?;
        let data = unsafe { borrow(data, "data") }?;
        let mut recipe = TrainRecipe::default();
        if !options.is_null() {
            let o = unsafe { read_sized(options, "options") }?;
            recipe.optimizer = match o.optimizer {
                GRADTAU_OPTIMIZER_SGD => OptimizerKind::Sgd {
                    momentum: o.momentum,
                    nesterov: o.nesterov,
                },
                GRADTAU_OPTIMIZER_ADAM => OptimizerKind::Adam,
                GRADTAU_OPTIMIZER_ADAMW => OptimizerKind::AdamW,
                k => return Err(Failure::invalid(format!("unknown optimizer {k}"))),
            };
            recipe.lr = o.lr;
            recipe.weight_decay = o.weight_decay;
            recipe.epochs = o.epochs;
            recipe.batch_size = o.batch_size;
            recipe.clip_norm = (o.clip_norm != 0.0).then_some(o.clip_norm);
            recipe.seed = o.seed;
            recipe.device = unsafe { device(o.device, recipe.device) }?;
            recipe.keep_partial = o.keep_partial;
        }
        let mut cb = progress_closure(progress, user_data);
        let report = m.live.train(&data.data, &recipe, &mut cb)?;
        write_report(report, report_out);
        Ok(())
    })
}

/// Audits the model's bound weights: accuracy on `retain`, `forget` and `test`, and the
/// membership-inference attack (forget = members, `test` = non-members), seeded by `seed`.
/// With fewer than 3 forget (or test) samples the attack cannot run and both `mia_*` fields
/// are NaN; the accuracies are still computed.
/// Reads the buffers, never writes them. On success writes `*row_out`.
/// `gradtau_audit_report_new` runs the same audit and keeps the task's metric (MSE for
/// regression, macro F1 for multi-label) and the stronger attacks beside these figures.
///
/// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT`, `GRADTAU_SHAPE`,
/// `GRADTAU_NON_FINITE`, `GRADTAU_BINDING`, `GRADTAU_BUSY`, `GRADTAU_PANIC`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_audit(
    model: *mut gradtau_model,
    retain: *const gradtau_dataset,
    forget: *const gradtau_dataset,
    test: *const gradtau_dataset,
    seed: u64,
    row_out: *mut gradtau_audit_row,
) -> gradtau_status {
    run(|| {
        // SAFETY: the handles are live for the call (header contract).
        let args = unsafe { audit_args(model, retain, forget, test) }?;
        let out = out_ptr(row_out, "row_out")?;
        let r = args.audit(seed)?;
        let row = gradtau_audit_row {
            retain_accuracy: r.retain_accuracy,
            forget_accuracy: r.forget_accuracy,
            test_accuracy: r.test_accuracy,
            mia_loss: r.mia_loss,
            mia_entropy: r.mia_entropy,
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(row) };
        Ok(())
    })
}

/// A task metric (a `GRADTAU_METRIC_*` value). The numbers are part of the ABI.
pub type gradtau_metric = i32;
/// Share of samples classified correctly (`cross_entropy` models).
pub const GRADTAU_METRIC_ACCURACY: gradtau_metric = 0;
/// Mean squared error over every output value (`mse` models; their primary metric).
pub const GRADTAU_METRIC_MSE: gradtau_metric = 1;
/// Mean absolute error over every output value (`mse` models, beside the MSE).
pub const GRADTAU_METRIC_MAE: gradtau_metric = 2;
/// Mean over the labels of each label's F1 at logit 0 (`bce_with_logits` models).
pub const GRADTAU_METRIC_MACRO_F1: gradtau_metric = 3;

/// Each task metric with its C code and name: the one place they are paired.
const METRICS: [(TaskMetric, gradtau_metric, &CStr); 4] = [
    (TaskMetric::Accuracy, GRADTAU_METRIC_ACCURACY, c"accuracy"),
    (TaskMetric::Mse, GRADTAU_METRIC_MSE, c"mse"),
    (TaskMetric::Mae, GRADTAU_METRIC_MAE, c"mae"),
    (TaskMetric::MacroF1, GRADTAU_METRIC_MACRO_F1, c"macro_f1"),
];

/// One of the sets an audit measures (a `GRADTAU_AUDIT_SET_*` value). The numbers are part
/// of the ABI.
pub type gradtau_audit_set = i32;
/// The data the model keeps.
pub const GRADTAU_AUDIT_SET_RETAIN: gradtau_audit_set = 0;
/// The data the model was asked to forget (the attacks' members).
pub const GRADTAU_AUDIT_SET_FORGET: gradtau_audit_set = 1;
/// Unseen data (the attacks' non-members).
pub const GRADTAU_AUDIT_SET_TEST: gradtau_audit_set = 2;

/// A membership attack on the forget set (members) against the test set (non-members) (a
/// `GRADTAU_ATTACK_*` value). The numbers are part of the ABI.
pub type gradtau_attack = i32;
/// The ∇τ paper's attack: logistic regression on the raw per-sample loss (10 stratified
/// splits, 20 % held out). Published tables quote its accuracy.
pub const GRADTAU_ATTACK_PAPER: gradtau_attack = 0;
/// The same protocol on `ln(loss + ε)`, ε = 10⁻⁴ × the mean loss: strong on heavy-tailed
/// losses (squared errors) where the paper's attack is weak.
pub const GRADTAU_ATTACK_LOG_LOSS: gradtau_attack = 1;
/// One threshold on the loss, lower ⇒ member: no fit, read as ROC AUC and TPR at 1 % FPR;
/// its accuracy is the best threshold's, chosen on the samples it is scored on.
pub const GRADTAU_ATTACK_THRESHOLD: gradtau_attack = 2;
/// The paper's attack on the softmax entropy (accuracy only; classification models only).
pub const GRADTAU_ATTACK_ENTROPY: gradtau_attack = 3;

/// What an attack is scored by (a `GRADTAU_SCORE_*` value). The numbers are part of the ABI.
pub type gradtau_score = i32;
/// Balanced accuracy (0.5: chance).
pub const GRADTAU_SCORE_ACCURACY: gradtau_score = 0;
/// ROC AUC (0.5: chance; the logistic attacks' in the direction their fit learned).
pub const GRADTAU_SCORE_AUC: gradtau_score = 1;
/// True-positive rate at 1 % false positives (Carlini et al. 2022); NaN with fewer than 100
/// test samples.
pub const GRADTAU_SCORE_TPR_AT_1PCT_FPR: gradtau_score = 2;

/// Everything an audit measured: the task's metrics on the three sets and every membership
/// attack's scores. Created by `gradtau_audit_report_new`, owned by the caller, freed by
/// `gradtau_audit_report_free`. Immutable: the getters may run concurrently. New metrics and
/// attacks arrive as new enum values, so the handle never changes layout.
pub struct gradtau_audit_report {
    row: AuditRow,
}

/// The model and the three sets of an audit call, each checked for NULL.
struct AuditArgs<'a> {
    model: &'a gradtau_model,
    sets: AuditSets<'a>,
}

/// Borrows an audit call's handles, NULL-checked in argument order.
///
/// # Safety
/// Each non-NULL pointer must point to a live handle for the duration of the call (the
/// header's contract for every handle argument).
unsafe fn audit_args<'a>(
    model: *mut gradtau_model,
    retain: *const gradtau_dataset,
    forget: *const gradtau_dataset,
    test: *const gradtau_dataset,
) -> FfiResult<AuditArgs<'a>> {
    // SAFETY (all four): the caller's contract above.
    let model = unsafe { borrow(model, "model") }?;
    let retain = unsafe { borrow(retain, "retain") }?;
    let forget = unsafe { borrow(forget, "forget") }?;
    let test = unsafe { borrow(test, "test") }?;
    Ok(AuditArgs {
        model,
        sets: AuditSets {
            retain: &retain.data,
            forget: &forget.data,
            test: &test.data,
        },
    })
}

impl AuditArgs<'_> {
    fn audit(&self, seed: u64) -> FfiResult<AuditRow> {
        Ok(self.model.live.audit(self.sets, seed)?)
    }
}

/// Audits the model's bound weights like `gradtau_audit`, keeping everything it measured:
/// the task's metrics (`gradtau_audit_report_metric`, `_value`) and every membership attack
/// (`gradtau_audit_report_attack`, `_strongest`). With fewer than 3 forget (or test) samples
/// the attacks cannot run and read NaN; the metrics are still computed. Reads the buffers,
/// never writes them. On success writes a new report to `*report_out`.
///
/// Returns the statuses of `gradtau_audit`.
#[no_mangle]
pub unsafe extern "C" fn gradtau_audit_report_new(
    model: *mut gradtau_model,
    retain: *const gradtau_dataset,
    forget: *const gradtau_dataset,
    test: *const gradtau_dataset,
    seed: u64,
    report_out: *mut *mut gradtau_audit_report,
) -> gradtau_status {
    run(|| {
        // SAFETY: the handles are live for the call (header contract).
        let args = unsafe { audit_args(model, retain, forget, test) }?;
        let out = out_ptr(report_out, "report_out")?;
        let row = args.audit(seed)?;
        let report = Box::into_raw(Box::new(gradtau_audit_report { row }));
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(report) };
        Ok(())
    })
}

fn with_audit<T: Copy>(
    r: *const gradtau_audit_report,
    fallback: T,
    f: impl FnOnce(&AuditRow) -> T,
) -> T {
    // SAFETY: a non-NULL report is live until `gradtau_audit_report_free` (header contract).
    value(fallback, || {
        unsafe { r.as_ref() }.map_or(fallback, |r| f(&r.row))
    })
}

/// The task's primary metric (`GRADTAU_METRIC_ACCURACY` for classification,
/// `GRADTAU_METRIC_MSE` for regression, `GRADTAU_METRIC_MACRO_F1` for multi-label models), or
/// -1 if `report` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_audit_report_metric(
    report: *const gradtau_audit_report,
) -> gradtau_metric {
    with_audit(report, -1, |r| {
        METRICS
            .iter()
            .find(|(m, _, _)| *m == r.metric.metric)
            .map_or(-1, |&(_, code, _)| code)
    })
}

/// The value of `metric` on `set`: NaN if this model's task does not report that metric
/// (regression reports MSE and MAE, classification accuracy, multi-label macro F1), for an
/// unknown metric or set, or if `report` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_audit_report_value(
    report: *const gradtau_audit_report,
    metric: gradtau_metric,
    set: gradtau_audit_set,
) -> f64 {
    with_audit(report, f64::NAN, |r| {
        let Some(&(m, _, _)) = METRICS.iter().find(|&&(_, code, _)| code == metric) else {
            return f64::NAN;
        };
        r.metric_scores(m).map_or(f64::NAN, |s| match set {
            GRADTAU_AUDIT_SET_RETAIN => s.retain,
            GRADTAU_AUDIT_SET_FORGET => s.forget,
            GRADTAU_AUDIT_SET_TEST => s.test,
            _ => f64::NAN,
        })
    })
}

/// An attack's score: NaN where the score does not apply (the entropy attack has only an
/// accuracy), was not measured (too few samples; too few test samples for the TPR), for an
/// unknown attack or score, or if `report` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_audit_report_attack(
    report: *const gradtau_audit_report,
    attack: gradtau_attack,
    score: gradtau_score,
) -> f64 {
    with_audit(report, f64::NAN, |r| {
        let scores = match attack {
            GRADTAU_ATTACK_PAPER => r.attacks.paper,
            GRADTAU_ATTACK_LOG_LOSS => r.attacks.log_loss,
            GRADTAU_ATTACK_THRESHOLD => r.attacks.threshold,
            GRADTAU_ATTACK_ENTROPY => AttackScores {
                accuracy: r.mia_entropy,
                ..AttackScores::UNMEASURED
            },
            _ => AttackScores::UNMEASURED,
        };
        match score {
            GRADTAU_SCORE_ACCURACY => scores.accuracy,
            GRADTAU_SCORE_AUC => scores.auc,
            GRADTAU_SCORE_TPR_AT_1PCT_FPR => scores.tpr_at_1pct_fpr,
            _ => f64::NAN,
        }
    })
}

/// The one-number verdict: how far the strongest attack on the loss is from chance — the
/// logistic attacks' held-out accuracies above 0.5, the ROC AUCs either side of it — 0 when
/// the forget set looks unseen, 0.5 when it is told apart perfectly. NaN if the attacks did not run or `report` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_audit_report_strongest(
    report: *const gradtau_audit_report,
) -> f64 {
    with_audit(report, f64::NAN, |r| r.attacks.strongest_advantage())
}

/// Samples per side the logistic attacks ran on (the smaller of the forget and test sets),
/// 0 if they could not run or `report` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_audit_report_attack_samples(
    report: *const gradtau_audit_report,
) -> usize {
    with_audit(report, 0, |r| r.mia_samples)
}

/// The short name of a metric (`"accuracy"`, `"mse"`, `"mae"`, `"macro_f1"`), or
/// `"unknown"` for a number this library does not define. Never NULL; static storage.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn gradtau_metric_name(metric: gradtau_metric) -> *const c_char {
    METRICS
        .iter()
        .find(|&&(_, code, _)| code == metric)
        .map_or(c"unknown", |&(_, _, name)| name)
        .as_ptr()
}

/// Frees an audit report. NULL is a no-op; freeing the same non-NULL report twice is
/// undefined behaviour.
#[no_mangle]
pub unsafe extern "C" fn gradtau_audit_report_free(report: *mut gradtau_audit_report) {
    value((), || {
        if !report.is_null() {
            // SAFETY: a non-NULL report came from `Box::into_raw` in
            // `gradtau_audit_report_new` and the caller gives it back exactly once.
            drop(unsafe { Box::from_raw(report) });
        }
    })
}

fn with_report<T: Copy>(
    r: *const gradtau_report,
    fallback: T,
    f: impl FnOnce(&gradtau_report) -> T,
) -> T {
    // SAFETY: a non-NULL report handle is live until `gradtau_report_free` (header contract).
    value(fallback, || unsafe { r.as_ref() }.map_or(fallback, f))
}

/// The method that ran (`"nabla_tau"`, ..., `"train"`); owned by the report. NULL if
/// `report` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_report_method(report: *const gradtau_report) -> *const c_char {
    with_report(report, ptr::null(), |r| r.method.as_ptr())
}

/// Planned epochs (forget-epochs for ∇τ); 0 if `report` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_report_epochs(report: *const gradtau_report) -> usize {
    with_report(report, 0, |r| r.report.epochs)
}

/// Optimisation steps taken; 0 if `report` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_report_steps(report: *const gradtau_report) -> usize {
    with_report(report, 0, |r| r.report.steps)
}

/// Wall-clock seconds of the run; NaN if `report` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_report_seconds(report: *const gradtau_report) -> f64 {
    with_report(report, f64::NAN, |r| r.report.seconds)
}

/// The learning rate at the first step (∇τ's default depends on the mode and the forget
/// fraction; the rate may decay after that); NaN if `report` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_report_lr(report: *const gradtau_report) -> f32 {
    with_report(report, f32::NAN, |r| r.report.lr)
}

/// ∇τ: the last α (NaN for other methods or a NULL report).
#[no_mangle]
pub unsafe extern "C" fn gradtau_report_final_alpha(report: *const gradtau_report) -> f32 {
    with_report(report, f32::NAN, |r| r.report.final_alpha)
}

/// ∇τ: the last target loss τ (NaN for other methods or a NULL report).
#[no_mangle]
pub unsafe extern "C" fn gradtau_report_final_tau(report: *const gradtau_report) -> f32 {
    with_report(report, f32::NAN, |r| r.report.final_tau)
}

/// ∇τ adaptive mode: the forget-epoch at which the forget term switched off, or -1 if it
/// never did (or the report is NULL).
#[no_mangle]
pub unsafe extern "C" fn gradtau_report_forget_stopped_at(report: *const gradtau_report) -> i64 {
    with_report(report, -1, |r| {
        r.report.forget_stopped_at.map_or(-1, |e| e as i64)
    })
}

/// True when the run was cut short by `max_steps` (the stop reason is
/// `GRADTAU_STOP_MAX_STEPS`).
#[no_mangle]
pub unsafe extern "C" fn gradtau_report_truncated(report: *const gradtau_report) -> bool {
    with_report(report, false, |r| r.report.truncated())
}

/// Why a run ended (a `GRADTAU_STOP_*` value). The numbers are part of the ABI.
pub type gradtau_stop_reason = i32;
/// It ran every planned epoch (baselines and training always do; ∇τ's class removal too,
/// whose forget term may have switched off earlier, see `gradtau_report_forget_stopped_at`).
pub const GRADTAU_STOP_BUDGET: gradtau_stop_reason = 0;
/// ∇τ adaptive mode, random forgetting: the membership stop test passed and was confirmed,
/// and the run ended before its planned epochs.
pub const GRADTAU_STOP_FORGOTTEN: gradtau_stop_reason = 1;
/// Cut short by `max_steps`.
pub const GRADTAU_STOP_MAX_STEPS: gradtau_stop_reason = 2;

/// Each stop reason with its C code and name: the one place they are paired.
const STOP_REASONS: [(crate::unlearn::StopReason, gradtau_stop_reason, &CStr); 3] = [
    (
        crate::unlearn::StopReason::Budget,
        GRADTAU_STOP_BUDGET,
        c"GRADTAU_STOP_BUDGET",
    ),
    (
        crate::unlearn::StopReason::Forgotten,
        GRADTAU_STOP_FORGOTTEN,
        c"GRADTAU_STOP_FORGOTTEN",
    ),
    (
        crate::unlearn::StopReason::MaxSteps,
        GRADTAU_STOP_MAX_STEPS,
        c"GRADTAU_STOP_MAX_STEPS",
    ),
];

/// Why the run ended: a `GRADTAU_STOP_*` value, or -1 if `report` is NULL.
#[no_mangle]
pub unsafe extern "C" fn gradtau_report_stop_reason(
    report: *const gradtau_report,
) -> gradtau_stop_reason {
    with_report(report, -1, |r| {
        STOP_REASONS
            .iter()
            .find(|(s, _, _)| *s == r.report.stop_reason)
            .map_or(-1, |&(_, code, _)| code)
    })
}

/// The name of a stop reason (`"GRADTAU_STOP_FORGOTTEN"`), or `"GRADTAU_STOP_UNKNOWN"` for a
/// number this library does not define. Never NULL; static storage. Thread-safe.
#[no_mangle]
pub extern "C" fn gradtau_stop_reason_name(reason: gradtau_stop_reason) -> *const c_char {
    STOP_REASONS
        .iter()
        .find(|&&(_, code, _)| code == reason)
        .map_or(c"GRADTAU_STOP_UNKNOWN", |&(_, _, name)| name)
        .as_ptr()
}

/// Frees a report. NULL is a no-op; freeing the same non-NULL report twice is undefined
/// behaviour.
#[no_mangle]
pub unsafe extern "C" fn gradtau_report_free(report: *mut gradtau_report) {
    value((), || {
        if !report.is_null() {
            // SAFETY: a non-NULL report came from `Box::into_raw` in `report_out` and the
            // caller gives it back exactly once.
            drop(unsafe { Box::from_raw(report) });
        }
    })
}
