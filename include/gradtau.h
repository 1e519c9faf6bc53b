/*
 * gradtau.h - the C interface of gradtau: machine unlearning with the gradient-tau method,
 * run directly on the host's own weight buffers.
 *
 * Worked example (error handling shortened; see "API conventions" below):
 *
 *     #include <gradtau.h>
 *     #include <stdio.h>
 *     #include <string.h>
 *
 *     static int32_t on_step(const gradtau_progress *p, void *user_data) {
 *         (void)user_data;
 *         printf("%s step %zu/%zu\n", p->method, p->step + 1, p->total_steps);
 *         return 0;                                  // non-zero would cancel the run
 *     }
 *
 *     int unlearn(float *w0, float *b0, ..., gradtau_dataset *forget,
 *                 gradtau_dataset *retain, gradtau_dataset *val) {
 *         if (gradtau_abi_version() != GRADTAU_ABI_VERSION) return -1;
 *         const char *spec = "{\"format\": \"gradtau.model/1\", ...}";
 *         gradtau_model *model = NULL;
 *         gradtau_status s = gradtau_model_new(spec, strlen(spec), &model);
 *         if (s != GRADTAU_OK) {
 *             fprintf(stderr, "%s: %s\n", gradtau_status_name(s), gradtau_last_error_message());
 *             return -1;
 *         }
 *         // Lend the host's own weight buffers, by PyTorch state_dict name (no copies kept).
 *         gradtau_model_bind(model, "0.weight", w0, 128 * 64);
 *         gradtau_model_bind(model, "0.bias", b0, 128);
 *         // ... every parameter ...
 *         gradtau_unlearn_options opts;
 *         gradtau_unlearn_options_default(GRADTAU_METHOD_NABLA_TAU, &opts);
 *         opts.seed = 7;
 *         gradtau_report *report = NULL;
 *         s = gradtau_unlearn(model, forget, retain, val, &opts, on_step, NULL, &report);
 *         if (s == GRADTAU_OK) {                     // w0, b0, ... now hold the new weights
 *             printf("%zu steps\n", gradtau_report_steps(report));
 *             gradtau_report_free(report);
 *         }                                          // otherwise they are unchanged
 *         gradtau_model_free(model);
 *         return s == GRADTAU_OK ? 0 : -1;
 *     }
 *
 * API conventions
 *
 * - Names: every symbol starts with gradtau_ (macros and enum values with GRADTAU_);
 *   functions are gradtau_<object>_<verb>; every handle has one constructor (_new, or the
 *   call that returns it) and one destructor (_free).
 * - Status codes: every fallible call returns a gradtau_status. GRADTAU_OK is 0; the other
 *   numbers are fixed forever and never reused. Each function's comment lists what it can
 *   return. gradtau_status_name() names a code; gradtau_last_error_message() describes the
 *   most recent failure on the calling thread (thread-local; valid until the next gradtau
 *   call on that thread).
 * - Out-parameters (the trailing *_out arguments) are written only when the call returns
 *   GRADTAU_OK: no partial successes. Bound weight buffers follow the same rule: they are
 *   written only when gradtau_train / gradtau_unlearn succeed (or with keep_partial).
 *   An empty batch (count 0) passed to gradtau_model_infer / gradtau_model_classify is
 *   valid: its buffers may be NULL and nothing is written.
 * - Pointers: every pointer argument is checked for NULL before anything is touched
 *   (GRADTAU_NULL_POINTER); a NULL buffer with length 0 is an empty buffer. Every buffer comes
 *   with its length in elements, checked against the shapes the model expects, with overflow
 *   checks. Strings are NUL-terminated UTF-8 unless a length is given.
 * - Ownership: handles returned through *_out are owned by the caller and freed with their
 *   _free function; _free(NULL) is a no-op (so freeing a NULL handle twice is safe), while
 *   using a handle after freeing it, or freeing it twice, is undefined behaviour. Strings and
 *   arrays returned by getters belong to the handle they came from (or are static) and live
 *   as long as it does. Buffers lent with gradtau_model_bind stay the host's: gradtau keeps
 *   only the pointer, reads them during calls on that model and writes them only when a
 *   run publishes (see Thread safety).
 *   Data set constructors copy the host's arrays once; the host may free them afterwards.
 *   Options structs and their device strings are only read during the call.
 * - Options structs start with size_t struct_size and have a *_default() initialiser: always
 *   start from it, then change fields; a struct_size from another header version gives
 *   GRADTAU_ABI_MISMATCH.
 * - Thread safety: a const handle pointer means the call does not mutate the handle.
 *   gradtau_dataset, gradtau_report and gradtau_audit_report are immutable and may be used
 *   from any number of threads at once. A gradtau_model serves while it learns:
 *     - reads (gradtau_model_infer, gradtau_model_classify, gradtau_predict, gradtau_losses,
 *       gradtau_audit, gradtau_audit_report_new and the const queries) may run on any
 *       number of threads at once, each with its own scratch memory, also while a run is in
 *       progress on the same model;
 *     - gradtau_train and gradtau_unlearn compute on a private copy of the weights, so reads
 *       during a run see the weights from before it, and publish the result at the end,
 *       atomically: a read sees the old model or the new one, never a mix;
 *     - writers (gradtau_train, gradtau_unlearn, gradtau_model_bind,
 *       gradtau_model_unbind_all, gradtau_model_init_weights,
 *       gradtau_model_set_publish_hook) run one at a time per model: a second one returns
 *       GRADTAU_BUSY at once instead of waiting; reads never get GRADTAU_BUSY;
 *     - neither side starves the other: reads hold the model only while they copy the
 *       weights, and a waiting publish holds off new reads for the length of one copy;
 *     - a host whose own engine reads the bound buffers publishes safely with
 *       gradtau_model_set_publish_hook (take its lock at BEGIN, release it at END), or by
 *       double buffering: bind a second copy of the weights, unlearn into it, then swap its
 *       own pointer when the call returns;
 *     - gradtau_model_set_threads caps the CPU threads of every call on a model (by default
 *       each call may use every core), so a run can be given one core while serving keeps
 *       the others;
 *     - gradtau_model_free must not overlap any other call on the model.
 *   Different models are independent and may be trained or unlearned in parallel.
 * - Cancellation: the progress callback runs on the calling thread after every optimisation
 *   step; returning non-zero stops the run with GRADTAU_CANCELLED and the bound buffers stay
 *   bit-for-bit as they were. Callbacks must not unwind (C++ exceptions, longjmp) into
 *   gradtau.
 * - Panics: an internal Rust panic never unwinds into the host; it becomes GRADTAU_PANIC.
 * - Versions: GRADTAU_VERSION_MAJOR/MINOR/PATCH and gradtau_version() follow Cargo.toml;
 *   check gradtau_abi_version() == GRADTAU_ABI_VERSION at start-up.
 */

#ifndef GRADTAU_H
#define GRADTAU_H

/* Generated by cbindgen from src/ffi/ (see cbindgen.toml). Do not edit by hand. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Major version of the library (semantic versioning; follows Cargo.toml).
#define GRADTAU_VERSION_MAJOR 0

// Minor version of the library.
#define GRADTAU_VERSION_MINOR 1

// Patch version of the library.
#define GRADTAU_VERSION_PATCH 0

// Version of the binary interface this header describes. It changes whenever a struct
// layout, a function signature or the meaning of a status changes incompatibly; compare it
// with `gradtau_abi_version()` at start-up.
#define GRADTAU_ABI_VERSION 1

// The result of every fallible call. The numbers are part of the ABI: they never change and
// a retired code is never reused for another meaning.
enum gradtau_status
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : int32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
    // Success; the out-parameters were written.
    GRADTAU_OK = 0,
    // A required pointer argument was NULL.
    GRADTAU_NULL_POINTER = 1,
    // An argument is outside what the call accepts (length overflow, negative label, unknown
    // enum value, empty set, bad option value, invalid UTF-8, ...).
    GRADTAU_INVALID_ARGUMENT = 2,
    // Two shapes or lengths that must agree do not.
    GRADTAU_SHAPE = 3,
    // A value is NaN or infinite where finite numbers are required.
    GRADTAU_NON_FINITE = 4,
    // The model spec (JSON) is malformed.
    GRADTAU_SPEC = 5,
    // A parameter has no bound buffer, a buffer has the wrong length, or a name is unknown.
    GRADTAU_BINDING = 6,
    // The requested device cannot be used (CUDA compiled out, no driver, no GPU).
    GRADTAU_DEVICE_UNAVAILABLE = 7,
    // An operation is not implemented on the device its data lives on.
    GRADTAU_UNSUPPORTED = 8,
    // The progress callback returned non-zero; the bound buffers are untouched.
    GRADTAU_CANCELLED = 9,
    // Reading or writing a file failed, or its contents are malformed.
    GRADTAU_IO = 10,
    // A CUDA driver, NVRTC or cuBLAS call failed.
    GRADTAU_CUDA = 11,
    // A writing call (a run, a bind, an initialisation, a hook change) is already running on
    // the same model handle, from another thread or re-entered from a callback; nothing was
    // done. Read calls never return it.
    GRADTAU_BUSY = 12,
    // gradtau hit an internal bug (a Rust panic caught at the boundary, or a broken internal
    // invariant). The handles involved stay valid and the bound buffers untouched, but
    // please report it.
    GRADTAU_PANIC = 13,
    // An options struct's `struct_size` does not match this library: initialise it with
    // its `*_default()` function and compile against the header of this library.
    GRADTAU_ABI_MISMATCH = 14,
    // The call would need more memory than the model's memory limit allows (see
    // `gradtau_model_set_memory_limit`), or an allocation failed; nothing was done and the
    // bound buffers are untouched. The message names the node and the bytes.
    GRADTAU_RESOURCE_LIMIT = 15,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum gradtau_status gradtau_status;
#else
typedef int32_t gradtau_status;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// Everything an audit measured: the task's metrics on the three sets and every membership
// attack's scores. Created by `gradtau_audit_report_new`, owned by the caller, freed by
// `gradtau_audit_report_free`. Immutable: the getters may run concurrently. New metrics and
// attacks arrive as new enum values, so the handle never changes layout.
typedef struct gradtau_audit_report gradtau_audit_report;

// A data set: inputs `[N, ...]` and their targets (class labels or float values).
//
// Ownership: the constructors copy the host's arrays once into gradtau-owned memory (the
// engine works on its own tensors), so the host may free or reuse its arrays as soon as the
// constructor returns. The caller owns the handle and frees it with `gradtau_dataset_free`.
//
// Thread safety: immutable after creation; one data set may be used by any number of
// concurrent calls on any threads (e.g. the same retain set for two models).
typedef struct gradtau_dataset gradtau_dataset;

// A model: the architecture compiled from a JSON spec, plus the host buffers bound to its
// parameters. Created by `gradtau_model_new`, freed by `gradtau_model_free`.
//
// Concurrency: reads (`gradtau_predict`, `gradtau_losses`, `gradtau_audit`,
// `gradtau_model_infer`, `gradtau_model_classify` and the `const` queries) may run on any
// number of threads at once, also while a run is in progress; they see the weights from
// before the run until it publishes. Writers (`gradtau_train`, `gradtau_unlearn`,
// `gradtau_model_bind`, `gradtau_model_unbind_all`, `gradtau_model_init_weights`,
// `gradtau_model_set_publish_hook`) run one at a time: a second writer gets `GRADTAU_BUSY`
// at once. Only `gradtau_model_free` must not overlap any other call.
typedef struct gradtau_model gradtau_model;

// What a completed run did. Created by `gradtau_unlearn` / `gradtau_train`, owned by the
// caller, freed by `gradtau_report_free`. Immutable: the getters may run concurrently.
typedef struct gradtau_report gradtau_report;

// What `gradtau_model_infer` writes (a `GRADTAU_OUTPUT_*` value).
typedef int32_t gradtau_output;

// Describes one parameter (or buffer, such as a batchnorm running mean) of a model.
typedef struct gradtau_param_info {
    // `<node>.<param>` as in PyTorch's `state_dict`, NUL-terminated. Owned by the model;
    // valid until `gradtau_model_free`.
    const char *name;
    // The shape, `rank` entries, row-major (PyTorch's layout). Owned by the model; valid
    // until `gradtau_model_free`.
    const size_t *shape;
    size_t rank;
    // Number of floats the bound buffer must hold (the product of the shape).
    size_t numel;
    // False for buffers that are not trained (batchnorm running statistics); they must be
    // bound all the same.
    bool trainable;
} gradtau_param_info;

// When a `gradtau_publish_fn` is called (a `GRADTAU_PUBLISH_*` value).
typedef int32_t gradtau_publish_phase;

// The host's side of publishing new weights into the bound buffers, for hosts whose own
// engine reads those buffers. Called on the thread that made the writing call, first with
// `GRADTAU_PUBLISH_BEGIN` (take your engine's write lock; return non-zero to keep the old
// weights: the call then returns `GRADTAU_CANCELLED`), then, only if BEGIN returned 0, with
// `GRADTAU_PUBLISH_END` once the buffers hold the new weights (release it; the return value is
// ignored). It is called outside gradtau's own lock, so it may call gradtau's read functions
// on the same model; a writing call on the same model returns `GRADTAU_BUSY`. It must not
// unwind (C++ exceptions, longjmp) into gradtau.
typedef int32_t (*gradtau_publish_fn)(gradtau_publish_phase phase, void *user_data);

// Which unlearning method `gradtau_unlearn` runs (a `GRADTAU_METHOD_*` value).
typedef int32_t gradtau_method;

// The variant of ∇τ (a `GRADTAU_NABLA_TAU_MODE_*` value).
typedef int32_t gradtau_nabla_tau_mode;

// Options of `gradtau_unlearn`. Initialise with `gradtau_unlearn_options_default`, then
// change fields; `struct_size` must stay `sizeof(gradtau_unlearn_options)`. Fields a method
// does not use are ignored.
typedef struct gradtau_unlearn_options {
    // `sizeof(gradtau_unlearn_options)`, set by the `_default` function.
    size_t struct_size;
    // A `GRADTAU_METHOD_*` value.
    gradtau_method method;
    // ∇τ only: a `GRADTAU_NABLA_TAU_MODE_*` value.
    gradtau_nabla_tau_mode nabla_tau_mode;
    // Batch size. ∇τ: 0 picks the method's rule (256 in paper mode; adaptive: 256 capped at
    // half the forget set, at least 32). Baselines: must be positive.
    size_t batch_size;
    // Learning rate (AdamW). ∇τ: NaN (the default) picks the mode's rule (paper: 1e-3;
    // adaptive: 1e-3 × 10 × forget fraction, within [1e-3, 3e-3], and for random forgetting
    // up to 4× that on a run of under 300 steps, halved at each check that finds an
    // overshoot); the rate then decays over the forget-epochs.
    float lr;
    float weight_decay;
    // ∇τ only: the learning rate decays linearly to `lr * lr_end_factor`.
    float lr_end_factor;
    // ∇τ only: initial forget weight α₀ in [0, 1]; NaN picks the mode's default (paper:
    // 5/3 · forget fraction; adaptive: 0.4).
    float alpha0;
    // ∇τ adaptive mode only: the largest value α's controller may raise α to, in
    // [α₀, 1]; NaN picks 0.8 (or α₀ if larger). Set it to α₀ to keep α on its schedule.
    float alpha_max;
    // Passes. ∇τ: forget-epochs, 0 picks ⌊3 · retain batches / forget batches⌋ (paper mode:
    // at least 1; adaptive mode: kept within [12, 50]).
    // Baselines: must be positive.
    size_t epochs;
    // ∇τ paper mode only: τ is recomputed every this many forget-epochs.
    size_t tau_every;
    // ∇τ only: run normalisation layers in training mode.
    bool norm_training;
    // ∇τ adaptive mode only: the membership-test margin under which forgetting stops.
    float stop_margin;
    // NegGrad+ only: weight of the retain term, in [0, 1].
    float retain_weight;
    uint64_t seed;
    // `"auto"`, `"cpu"`, `"cuda"` or `"cuda:N"` (NUL-terminated, borrowed for the call);
    // NULL means `"auto"`.
    const char *device;
    // When set, a cancelled or failed run still writes the weights it reached into the
    // bound buffers (the status still reports the cancellation or error).
    bool keep_partial;
    // ∇τ only: stop after this many steps (the report says `truncated`); 0 = no limit.
    size_t max_steps;
} gradtau_unlearn_options;

// The optimizer of `gradtau_train` (a `GRADTAU_OPTIMIZER_*` value).
typedef int32_t gradtau_optimizer;

// Options of `gradtau_train`. Initialise with `gradtau_train_options_default`.
typedef struct gradtau_train_options {
    // `sizeof(gradtau_train_options)`, set by the `_default` function.
    size_t struct_size;
    // A `GRADTAU_OPTIMIZER_*` value.
    gradtau_optimizer optimizer;
    float lr;
    float weight_decay;
    // SGD only.
    float momentum;
    // SGD only.
    bool nesterov;
    size_t epochs;
    size_t batch_size;
    // Clip the global gradient norm to this value; 0 = no clipping.
    float clip_norm;
    uint64_t seed;
    // As in `gradtau_unlearn_options`; NULL means `"cpu"`.
    const char *device;
    // As in `gradtau_unlearn_options`.
    bool keep_partial;
} gradtau_train_options;

// What the progress callback is told after every optimisation step. Valid only during the
// callback.
typedef struct gradtau_progress {
    // `"nabla_tau"`, `"finetune"`, `"neggrad"`, `"neggrad_plus"` or `"train"`; static.
    const char *method;
    // 0-based epoch and the planned number of epochs.
    size_t epoch;
    size_t epochs;
    // 0-based step and the planned number of steps.
    size_t step;
    size_t total_steps;
    // Mean forget-batch loss (NaN where the method uses none, and in ∇τ's repair phase,
    // once the forget term is off and `alpha` is 0).
    float forget_loss;
    // Mean retain (or training) batch loss (NaN where the method uses none).
    float retain_loss;
    float alpha;
    // Current target loss τ (NaN outside ∇τ).
    float tau;
    float lr;
} gradtau_progress;

// Called after every step on the thread that made the call. Return 0 to continue, non-zero
// to cancel: the call then returns `GRADTAU_CANCELLED` and leaves the bound buffers
// bit-for-bit as they were. It must not unwind (C++ exceptions, longjmp) into gradtau, and
// may call gradtau's read functions on the same model (they see the weights from before the
// run); a writing call on the same model returns `GRADTAU_BUSY`.
typedef int32_t (*gradtau_progress_fn)(const struct gradtau_progress *progress, void *user_data);

// One audit row: accuracies on the three sets and the membership-inference attack's
// accuracy (≈ 0.5: the forget set looks unseen). Accuracies and `mia_entropy` are NaN for
// models without class labels. Its layout is frozen (callers hold it by value); the task's
// metric and the other attacks are read from a `gradtau_audit_report`.
typedef struct gradtau_audit_row {
    double retain_accuracy;
    double forget_accuracy;
    double test_accuracy;
    // Attack accuracy on the per-sample loss.
    double mia_loss;
    // Attack accuracy on the softmax entropy.
    double mia_entropy;
} gradtau_audit_row;

// A task metric (a `GRADTAU_METRIC_*` value). The numbers are part of the ABI.
typedef int32_t gradtau_metric;

// One of the sets an audit measures (a `GRADTAU_AUDIT_SET_*` value). The numbers are part
// of the ABI.
typedef int32_t gradtau_audit_set;

// A membership attack on the forget set (members) against the test set (non-members) (a
// `GRADTAU_ATTACK_*` value). The numbers are part of the ABI.
typedef int32_t gradtau_attack;

// What an attack is scored by (a `GRADTAU_SCORE_*` value). The numbers are part of the ABI.
typedef int32_t gradtau_score;

// Why a run ended (a `GRADTAU_STOP_*` value). The numbers are part of the ABI.
typedef int32_t gradtau_stop_reason;







// The model's raw outputs (logits for a classifier, values for a regressor).
#define GRADTAU_OUTPUT_RAW 0

// Probabilities: softmax over the last dimension for a `cross_entropy` model, a sigmoid per
// value for `bce_with_logits`; `GRADTAU_INVALID_ARGUMENT` for an `mse` model.
#define GRADTAU_OUTPUT_PROBABILITIES 1

// Before gradtau writes new weights into the bound buffers.
#define GRADTAU_PUBLISH_BEGIN 0

// After the write (or after a failed write, which leaves the old weights in place).
#define GRADTAU_PUBLISH_END 1

// ∇τ (the default).
#define GRADTAU_METHOD_NABLA_TAU 0

// Fine-tuning on the retain set.
#define GRADTAU_METHOD_FINETUNE 1

// Gradient ascent on the forget set.
#define GRADTAU_METHOD_NEGGRAD 2

// Weighted ascent on the forget set plus descent on the retain set.
#define GRADTAU_METHOD_NEGGRAD_PLUS 3

// Distribution-matching target, non-decaying α, audit-based switch-off (the default).
#define GRADTAU_NABLA_TAU_MODE_ADAPTIVE 0

// The authors' recipe, faithfully.
#define GRADTAU_NABLA_TAU_MODE_PAPER 1

// SGD, with `momentum` and `nesterov` from the options.
#define GRADTAU_OPTIMIZER_SGD 0

// Adam (L2 weight decay added to the gradient).
#define GRADTAU_OPTIMIZER_ADAM 1

// AdamW (decoupled weight decay; the default).
#define GRADTAU_OPTIMIZER_ADAMW 2

// Share of samples classified correctly (`cross_entropy` models).
#define GRADTAU_METRIC_ACCURACY 0

// Mean squared error over every output value (`mse` models; their primary metric).
#define GRADTAU_METRIC_MSE 1

// Mean absolute error over every output value (`mse` models, beside the MSE).
#define GRADTAU_METRIC_MAE 2

// Mean over the labels of each label's F1 at logit 0 (`bce_with_logits` models).
#define GRADTAU_METRIC_MACRO_F1 3

// The data the model keeps.
#define GRADTAU_AUDIT_SET_RETAIN 0

// The data the model was asked to forget (the attacks' members).
#define GRADTAU_AUDIT_SET_FORGET 1

// Unseen data (the attacks' non-members).
#define GRADTAU_AUDIT_SET_TEST 2

// The ∇τ paper's attack: logistic regression on the raw per-sample loss (10 stratified
// splits, 20 % held out). Published tables quote its accuracy.
#define GRADTAU_ATTACK_PAPER 0

// The same protocol on `ln(loss + ε)`, ε = 10⁻⁴ × the mean loss: strong on heavy-tailed
// losses (squared errors) where the paper's attack is weak.
#define GRADTAU_ATTACK_LOG_LOSS 1

// One threshold on the loss, lower ⇒ member: no fit, read as ROC AUC and TPR at 1 % FPR;
// its accuracy is the best threshold's, chosen on the samples it is scored on.
#define GRADTAU_ATTACK_THRESHOLD 2

// The paper's attack on the softmax entropy (accuracy only; classification models only).
#define GRADTAU_ATTACK_ENTROPY 3

// Balanced accuracy (0.5: chance).
#define GRADTAU_SCORE_ACCURACY 0

// ROC AUC (0.5: chance; the logistic attacks' in the direction their fit learned).
#define GRADTAU_SCORE_AUC 1

// True-positive rate at 1 % false positives (Carlini et al. 2022); NaN with fewer than 100
// test samples.
#define GRADTAU_SCORE_TPR_AT_1PCT_FPR 2

// It ran every planned epoch (baselines and training always do; ∇τ's class removal too,
// whose forget term may have switched off earlier, see `gradtau_report_forget_stopped_at`).
#define GRADTAU_STOP_BUDGET 0

// ∇τ adaptive mode, random forgetting: the membership stop test passed and was confirmed,
// and the run ended before its planned epochs.
#define GRADTAU_STOP_FORGOTTEN 1

// Cut short by `max_steps`.
#define GRADTAU_STOP_MAX_STEPS 2





#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The library version as a NUL-terminated string, e.g. `"0.1.0"`. Static storage: never
// freed, valid for the life of the process. Thread-safe.
const char *gradtau_version(void);

// The `GRADTAU_ABI_VERSION` the library was built with. A host compiled against a header
// whose `GRADTAU_ABI_VERSION` differs must not use the library. Thread-safe.
uint32_t gradtau_abi_version(void);

// A classification data set. `inputs` holds `inputs_len` floats laid out row-major with the
// shape `shape[0..rank]` (`shape[0]` = N samples); `labels` holds N class indices
// (non-negative; checked against the model's classes when the set is used).
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (rank 0, size
// overflow, negative label), `GRADTAU_SHAPE` (lengths disagree with the shape).
gradtau_status gradtau_dataset_classes_new(const float *inputs,
                                           size_t inputs_len,
                                           const size_t *shape,
                                           size_t rank,
                                           const int32_t *labels,
                                           size_t labels_len,
                                           struct gradtau_dataset **dataset_out);

// A data set with float targets (for `mse` and `bce_with_logits` models): `targets` holds
// `targets_len` floats with shape `target_shape[0..target_rank]`, whose first entry must
// equal the input's sample count.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (rank 0, size
// overflow), `GRADTAU_SHAPE` (lengths disagree with the shapes or the sample counts differ).
gradtau_status gradtau_dataset_values_new(const float *inputs,
                                          size_t inputs_len,
                                          const size_t *shape,
                                          size_t rank,
                                          const float *targets,
                                          size_t targets_len,
                                          const size_t *target_shape,
                                          size_t target_rank,
                                          struct gradtau_dataset **dataset_out);

// A new data set holding the samples at `indices[0..count]` of `dataset` (copied, in that
// order; repeats allowed).
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (an index out of
// range).
gradtau_status gradtau_dataset_subset(const struct gradtau_dataset *dataset,
                                      const size_t *indices,
                                      size_t count,
                                      struct gradtau_dataset **dataset_out);

// Number of samples, or 0 if `dataset` is NULL.
size_t gradtau_dataset_len(const struct gradtau_dataset *dataset);

// Reads a data set for `model` from files: inputs from `inputs_path` (`.npy` float32/float64
// `[N, input_shape...]`, or an IDX image file, plain or gzip, scaled to [0, 1]) and targets
// from `targets_path` (class labels as `.npy` integers or an IDX label file for a
// `cross_entropy` model; float `.npy` `[N, output_shape...]` otherwise). Paths are
// NUL-terminated UTF-8. On success `*dataset_out` receives a new data set the caller frees
// with `gradtau_dataset_free`. A read of the model only: safe during a run on it.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (a path that is
// not UTF-8, a label out of range), `GRADTAU_IO` (a file that cannot be read or parsed),
// `GRADTAU_SHAPE` (samples that do not fit the model, or counts that differ),
// `GRADTAU_NON_FINITE`.
gradtau_status gradtau_dataset_load(const struct gradtau_model *model,
                                    const char *inputs_path,
                                    const char *targets_path,
                                    struct gradtau_dataset **dataset_out);

// The shape of one sample's inputs (without the sample dimension): `*shape_out` receives a
// pointer to `*rank_out` sizes, owned by the data set and valid until `gradtau_dataset_free`.
// The product of the sizes times `gradtau_dataset_len` is the length
// `gradtau_dataset_inputs` needs.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
gradtau_status gradtau_dataset_sample_shape(const struct gradtau_dataset *dataset,
                                            const size_t **shape_out,
                                            size_t *rank_out);

// Copies the inputs of every sample, row-major `[N, sample shape...]`, into
// `inputs_out[0..len]`; `len` must equal the number of input floats (N times the product of
// the sample shape). Lets a host reuse the samples of a set (the embedded digits, say) as
// unlabelled requests for `gradtau_model_infer`.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_SHAPE` (wrong `len`).
gradtau_status gradtau_dataset_inputs(const struct gradtau_dataset *dataset,
                                      float *inputs_out,
                                      size_t len);

// Copies the class label of every sample into `labels_out[0..len]`; `len` must equal the
// sample count.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_SHAPE` (wrong `len`),
// `GRADTAU_INVALID_ARGUMENT` (the set has float targets).
gradtau_status gradtau_dataset_labels(const struct gradtau_dataset *dataset,
                                      int32_t *labels_out,
                                      size_t len);

// Frees a data set. NULL is a no-op; freeing the same non-NULL handle twice, or freeing it
// while a call uses it, is undefined behaviour.
void gradtau_dataset_free(struct gradtau_dataset *dataset);

// The demo model spec for the digits data (64-128-128-10 MLP, ReLU, cross-entropy) as a
// NUL-terminated JSON string. Static storage. Demo and test convenience.
const char *gradtau_digits_mlp_spec(void);

// The embedded UCI digits data (1797 8x8 images scaled to [0, 1], inputs `[N, 64]`, labels
// 0-9), split with `seed` into train (70 %), validation (10 %) and test (20 %) sets, each a
// new data set the caller frees. Either all three out-parameters are written or none is.
// Demo and test convenience.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
gradtau_status gradtau_digits_split(uint64_t seed,
                                    struct gradtau_dataset **train_out,
                                    struct gradtau_dataset **val_out,
                                    struct gradtau_dataset **test_out);

// Inference on unlabelled inputs: `count` samples, row-major `[count, input_shape...]` in
// `inputs` (`inputs_len` floats, exactly `count * prod(input_shape)`), and writes into `out`
// (`out_len` floats, exactly `count * prod(output_shape)`) the raw outputs or the
// probabilities, as `kind` says. Normalisation layers run in evaluation mode. A count of 0
// is an empty batch: NULL buffers are allowed and nothing is written. `out` is written only
// on success.
//
// A read call: any number may run at once on one model, also during a run on it (they see
// the weights from before the run until it publishes).
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (unknown `kind`,
// probabilities of an `mse` model), `GRADTAU_SHAPE` (lengths that do not match),
// `GRADTAU_NON_FINITE` (NaN or infinity in the inputs or the weights, or outputs that
// overflow), `GRADTAU_BINDING` (a parameter is unbound), `GRADTAU_RESOURCE_LIMIT` (a batch
// too large for the model's memory budget), `GRADTAU_PANIC`.
gradtau_status gradtau_model_infer(const struct gradtau_model *model,
                                   const float *inputs,
                                   size_t inputs_len,
                                   size_t count,
                                   gradtau_output kind,
                                   float *out,
                                   size_t out_len);

// The predicted class (argmax of the outputs) of each of `count` unlabelled samples, for a
// `cross_entropy` model, written to `classes_out` (`classes_len` must equal `count`).
// Inputs, empty batches and concurrency as in `gradtau_model_infer`.
//
// Returns the statuses of `gradtau_model_infer`; `GRADTAU_INVALID_ARGUMENT` for a model
// whose loss is not `cross_entropy`.
gradtau_status gradtau_model_classify(const struct gradtau_model *model,
                                      const float *inputs,
                                      size_t inputs_len,
                                      size_t count,
                                      int32_t *classes_out,
                                      size_t classes_len);

// Inference on a data set with the model's bound weights: writes the model's outputs
// (logits for a classifier) for every sample of `data` into `out`, row-major `[N,
// output_shape...]`; `out_len` must be exactly `N * prod(output_shape)`. The targets of
// `data` are not used (`gradtau_model_infer` needs none). Evaluation mode; `out` is written
// only on success. A read call, like `gradtau_model_infer`.
//
// Outputs that come out NaN or infinite (finite weights whose values overflow, e.g. after a
// diverged run made elsewhere) are not returned: the call fails with `GRADTAU_NON_FINITE`,
// the message names the first such sample, and `out` is untouched.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT`, `GRADTAU_SHAPE`,
// `GRADTAU_NON_FINITE` (NaN in the inputs or weights, or non-finite outputs),
// `GRADTAU_BINDING`, `GRADTAU_RESOURCE_LIMIT` (a batch of 256 would not fit in the model's
// memory budget), `GRADTAU_PANIC`.
gradtau_status gradtau_predict(struct gradtau_model *model,
                               const struct gradtau_dataset *data,
                               float *out,
                               size_t out_len);

// The per-sample training loss of every sample of `data` under the model's bound weights
// (cross-entropy, MSE or BCE-with-logits, as the spec says), written to `out` (`out_len`
// must equal the number of samples). Evaluation mode; `out` is written only on success. A
// read call, like `gradtau_model_infer`. A NaN or infinite loss fails with
// `GRADTAU_NON_FINITE` naming the sample, as in `gradtau_predict`.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT`, `GRADTAU_SHAPE`,
// `GRADTAU_NON_FINITE`, `GRADTAU_BINDING`, `GRADTAU_RESOURCE_LIMIT`, `GRADTAU_PANIC`.
gradtau_status gradtau_losses(struct gradtau_model *model,
                              const struct gradtau_dataset *data,
                              float *out,
                              size_t out_len);

// Compiles a model from its JSON spec (format `gradtau.model/1`, see the crate docs).
//
// `spec_json` points to `spec_len` bytes of UTF-8 (no NUL needed); gradtau copies what it
// needs, so the text may be freed when the call returns. On success `*model_out` receives a
// new model that the caller owns and frees with `gradtau_model_free`.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (not UTF-8),
// `GRADTAU_SPEC` (malformed spec), `GRADTAU_SHAPE` (layers that do not fit together),
// `GRADTAU_RESOURCE_LIMIT` (a layer's size overflows, or one sample's pass with fresh
// weights would not fit in the default memory budget).
gradtau_status gradtau_model_new(const char *spec_json,
                                 size_t spec_len,
                                 struct gradtau_model **model_out);

// Sets the memory budget, in bytes, of every later call on `model` that computes (train,
// unlearn, audit, and the reads: infer, classify, predict, losses). Before it allocates
// anything, such a call estimates its peak memory (parameters, optimizer state, activations
// and gradients of its batches, workspace) and returns `GRADTAU_RESOURCE_LIMIT`, naming the largest node and the bytes,
// when the estimate is above the budget. `bytes` 0 restores the default: 3/4 of the memory
// the machine reports available when the call starts (8 GiB where that cannot be read).
// May be called at any time; a call already running keeps the budget it started with.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
gradtau_status gradtau_model_set_memory_limit(struct gradtau_model *model,
                                              uint64_t bytes);

// Frees a model. NULL is a no-op, so freeing a NULL handle twice is safe; freeing the same
// non-NULL handle twice, or using it afterwards, is undefined behaviour. Must not run
// concurrently with any other call on the model. The host's bound buffers are not touched.
void gradtau_model_free(struct gradtau_model *model);

// Number of parameters (and buffers) of the model, or 0 if `model` is NULL.
size_t gradtau_model_param_count(const struct gradtau_model *model);

// Describes parameter `index` (0-based, spec order) into `*info_out`.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (index out of
// range).
gradtau_status gradtau_model_param(const struct gradtau_model *model,
                                   size_t index,
                                   struct gradtau_param_info *info_out);

// Finds the index of the parameter called `name` (NUL-terminated).
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (not UTF-8),
// `GRADTAU_BINDING` (no such parameter).
gradtau_status gradtau_model_param_index(const struct gradtau_model *model,
                                         const char *name,
                                         size_t *index_out);

// The per-sample input shape (without the batch dimension): `*shape_out` receives a pointer
// to `*rank_out` sizes, owned by the model and valid until `gradtau_model_free`.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
gradtau_status gradtau_model_input_shape(const struct gradtau_model *model,
                                         const size_t **shape_out,
                                         size_t *rank_out);

// The per-sample output shape (e.g. `{10}` for ten classes); ownership as for
// `gradtau_model_input_shape`.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
gradtau_status gradtau_model_output_shape(const struct gradtau_model *model,
                                          const size_t **shape_out,
                                          size_t *rank_out);

// The model's loss: `"cross_entropy"` (class labels), `"mse"` or `"bce_with_logits"` (float
// targets). Static storage. NULL if `model` is NULL.
const char *gradtau_model_loss(const struct gradtau_model *model);

// Lends the host buffer `buffer` (`len` floats, the parameter's row-major values) as the
// parameter `name`. Binding a name again replaces the earlier buffer.
//
// Ownership: the buffer stays the host's. gradtau keeps the pointer until the name is bound
// again, `gradtau_model_unbind_all` or `gradtau_model_free`. It reads the buffer during the
// read calls and once at the start of a run, and writes it only when a run (or
// `gradtau_model_init_weights`) publishes its result, under the model's exclusive lock and
// between the publish hook's two phases. The host must keep it alive, and must not write it
// while a gradtau call on this model may read or write it (outside the publish hook's
// bracket, that is any call in flight). Buffers bound to different parameters must not
// overlap.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (misaligned, or
// overlapping another bound buffer), `GRADTAU_BINDING` (unknown name or wrong length),
// `GRADTAU_BUSY`.
gradtau_status gradtau_model_bind(struct gradtau_model *model,
                                  const char *name,
                                  float *buffer,
                                  size_t len);

// Forgets every bound buffer (the host's memory is not touched).
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_BUSY`.
gradtau_status gradtau_model_unbind_all(struct gradtau_model *model);

// Writes PyTorch's default initialisation (seeded) into every bound buffer. Every parameter
// must be bound; the buffers' previous contents are not read.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_BINDING` (a parameter is unbound),
// `GRADTAU_BUSY`.
gradtau_status gradtau_model_init_weights(struct gradtau_model *model, uint64_t seed);

// Sets the hook gradtau calls around every publish of new weights into this model's bound
// buffers (see `gradtau_publish_fn`); NULL removes it. `user_data` is passed to it untouched
// and must stay valid until the hook is replaced or the model freed. A writing call.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_BUSY` (a run is in progress).
gradtau_status gradtau_model_set_publish_hook(struct gradtau_model *model,
                                              gradtau_publish_fn hook,
                                              void *user_data);

// Caps the CPU threads that every later call on this model uses (training, unlearning,
// inference, audits); 0 (the default) means no cap: as many threads as the machine has
// cores, or `MATMUL_NUM_THREADS` when set. A call already running keeps its cap. Safe to call
// at any time, also while other calls run.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
gradtau_status gradtau_model_set_threads(struct gradtau_model *model, size_t threads);

// The cap set by `gradtau_model_set_threads` (0: none), or 0 if `model` is NULL.
size_t gradtau_model_threads(const struct gradtau_model *model);

// Compiles a model from the bytes of an ONNX file (`len` bytes at `bytes`; opset 13 and
// newer; the supported operators are listed in the README). Its parameters are the graph's
// initializers, under their ONNX names (for a PyTorch export, the `state_dict` names): bind
// the host's own buffers to them as usual, or call `gradtau_model_load_onnx_weights` to
// fill the bound buffers with the values the file holds. `loss` is the loss the model was
// trained with, `"cross_entropy"`, `"mse"` or `"bce_with_logits"` (ONNX does not record
// it). gradtau copies the bytes; the host may free them when the call returns. On success
// `*model_out` receives a new model, freed with `gradtau_model_free`.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (unknown loss),
// `GRADTAU_SPEC` (not an ONNX model, empty bytes included, or a graph gradtau cannot run:
// the message names the node, its op type and the reason), `GRADTAU_SHAPE`.
gradtau_status gradtau_model_from_onnx(const uint8_t *bytes,
                                       size_t len,
                                       const char *loss,
                                       struct gradtau_model **model_out);

// Writes the initializer values of the ONNX file the model was made from into its bound
// buffers (every parameter must be bound), published like a run's result. A writing call.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (the model was
// not made from an ONNX file), `GRADTAU_BINDING`, `GRADTAU_BUSY`, `GRADTAU_CANCELLED` (the
// publish hook refused).
gradtau_status gradtau_model_load_onnx_weights(struct gradtau_model *model);

// The ONNX file the model was made from, with its initializers replaced by the current
// weights of the bound buffers: same graph, names, opset and metadata. On success
// `*bytes_out` receives `*len_out` bytes owned by the caller and freed with
// `gradtau_bytes_free`. A read call: safe during a run (it sees the weights from before).
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (the model was
// not made from an ONNX file), `GRADTAU_BINDING`, `GRADTAU_NON_FINITE`.
gradtau_status gradtau_model_to_onnx(const struct gradtau_model *model,
                                     uint8_t **bytes_out,
                                     size_t *len_out);

// Frees bytes returned by gradtau (`gradtau_model_to_onnx`); `len` is the length it
// returned with them. NULL is a no-op.
void gradtau_bytes_free(uint8_t *bytes, size_t len);

// Fills `*options_out` with the defaults of `method`.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT` (unknown method).
gradtau_status gradtau_unlearn_options_default(gradtau_method method,
                                               struct gradtau_unlearn_options *options_out);

// Fills `*options_out` with the training defaults (AdamW, lr 1e-3, weight decay 0.01, 10
// epochs, batch 64, CPU).
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`.
gradtau_status gradtau_train_options_default(struct gradtau_train_options *options_out);

// Unlearns `forget` from the model's bound weights.
//
// Reads every bound buffer, runs the method chosen in `options` (NULL: ∇τ with its
// defaults) on `forget`, `retain` and `val` (held-out data the model never trained on), and
// writes the new weights into the bound buffers only if the run succeeds: on any error or a
// cancellation the buffers are bit-for-bit unchanged (unless `keep_partial`). `progress` may
// be NULL; `user_data` is passed to it untouched. The data sets are only read.
//
// On success, if `report_out` is not NULL, `*report_out` receives a report the caller
// frees with `gradtau_report_free`.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_ABI_MISMATCH`,
// `GRADTAU_INVALID_ARGUMENT` (bad option, empty set, label out of range), `GRADTAU_SHAPE`
// (samples do not fit the model), `GRADTAU_NON_FINITE` (NaN in weights or data, or a run
// whose loss, weights or final outputs became NaN or infinite: the message names the step,
// and the buffers are untouched even with `keep_partial`), `GRADTAU_BINDING` (a parameter
// is unbound), `GRADTAU_CANCELLED`, `GRADTAU_BUSY`, `GRADTAU_DEVICE_UNAVAILABLE`,
// `GRADTAU_CUDA`, `GRADTAU_RESOURCE_LIMIT` (the run would not fit in the model's memory
// budget, see `gradtau_model_set_memory_limit`), `GRADTAU_PANIC`. Options are validated
// first (`GRADTAU_INVALID_ARGUMENT` names the field and its range), and a forget set that
// shares samples with the retain set (or, for ∇τ, the validation set) is refused with
// `GRADTAU_INVALID_ARGUMENT` and the count.
gradtau_status gradtau_unlearn(struct gradtau_model *model,
                               const struct gradtau_dataset *forget,
                               const struct gradtau_dataset *retain,
                               const struct gradtau_dataset *val,
                               const struct gradtau_unlearn_options *options,
                               gradtau_progress_fn progress,
                               void *user_data,
                               struct gradtau_report **report_out);

// Trains the model's bound weights on `data` (to produce an original model, or the
// retrain-from-scratch reference). Buffers, callback and report as in `gradtau_unlearn`;
// `options` NULL means the defaults.
//
// Returns the statuses of `gradtau_unlearn`.
gradtau_status gradtau_train(struct gradtau_model *model,
                             const struct gradtau_dataset *data,
                             const struct gradtau_train_options *options,
                             gradtau_progress_fn progress,
                             void *user_data,
                             struct gradtau_report **report_out);

// Audits the model's bound weights: accuracy on `retain`, `forget` and `test`, and the
// membership-inference attack (forget = members, `test` = non-members), seeded by `seed`.
// With fewer than 3 forget (or test) samples the attack cannot run and both `mia_*` fields
// are NaN; the accuracies are still computed.
// Reads the buffers, never writes them. On success writes `*row_out`.
// `gradtau_audit_report_new` runs the same audit and keeps the task's metric (MSE for
// regression, macro F1 for multi-label) and the stronger attacks beside these figures.
//
// Returns `GRADTAU_OK`, `GRADTAU_NULL_POINTER`, `GRADTAU_INVALID_ARGUMENT`, `GRADTAU_SHAPE`,
// `GRADTAU_NON_FINITE`, `GRADTAU_BINDING`, `GRADTAU_BUSY`, `GRADTAU_PANIC`.
gradtau_status gradtau_audit(struct gradtau_model *model,
                             const struct gradtau_dataset *retain,
                             const struct gradtau_dataset *forget,
                             const struct gradtau_dataset *test,
                             uint64_t seed,
                             struct gradtau_audit_row *row_out);

// Audits the model's bound weights like `gradtau_audit`, keeping everything it measured:
// the task's metrics (`gradtau_audit_report_metric`, `_value`) and every membership attack
// (`gradtau_audit_report_attack`, `_strongest`). With fewer than 3 forget (or test) samples
// the attacks cannot run and read NaN; the metrics are still computed. Reads the buffers,
// never writes them. On success writes a new report to `*report_out`.
//
// Returns the statuses of `gradtau_audit`.
gradtau_status gradtau_audit_report_new(struct gradtau_model *model,
                                        const struct gradtau_dataset *retain,
                                        const struct gradtau_dataset *forget,
                                        const struct gradtau_dataset *test,
                                        uint64_t seed,
                                        struct gradtau_audit_report **report_out);

// The task's primary metric (`GRADTAU_METRIC_ACCURACY` for classification,
// `GRADTAU_METRIC_MSE` for regression, `GRADTAU_METRIC_MACRO_F1` for multi-label models), or
// -1 if `report` is NULL.
gradtau_metric gradtau_audit_report_metric(const struct gradtau_audit_report *report);

// The value of `metric` on `set`: NaN if this model's task does not report that metric
// (regression reports MSE and MAE, classification accuracy, multi-label macro F1), for an
// unknown metric or set, or if `report` is NULL.
double gradtau_audit_report_value(const struct gradtau_audit_report *report,
                                  gradtau_metric metric,
                                  gradtau_audit_set set);

// An attack's score: NaN where the score does not apply (the entropy attack has only an
// accuracy), was not measured (too few samples; too few test samples for the TPR), for an
// unknown attack or score, or if `report` is NULL.
double gradtau_audit_report_attack(const struct gradtau_audit_report *report,
                                   gradtau_attack attack,
                                   gradtau_score score);

// The one-number verdict: how far the strongest attack on the loss is from chance — the
// logistic attacks' held-out accuracies above 0.5, the ROC AUCs either side of it — 0 when
// the forget set looks unseen, 0.5 when it is told apart perfectly. NaN if the attacks did not run or `report` is NULL.
double gradtau_audit_report_strongest(const struct gradtau_audit_report *report);

// Samples per side the logistic attacks ran on (the smaller of the forget and test sets),
// 0 if they could not run or `report` is NULL.
size_t gradtau_audit_report_attack_samples(const struct gradtau_audit_report *report);

// The short name of a metric (`"accuracy"`, `"mse"`, `"mae"`, `"macro_f1"`), or
// `"unknown"` for a number this library does not define. Never NULL; static storage.
// Thread-safe.
const char *gradtau_metric_name(gradtau_metric metric);

// Frees an audit report. NULL is a no-op; freeing the same non-NULL report twice is
// undefined behaviour.
void gradtau_audit_report_free(struct gradtau_audit_report *report);

// The method that ran (`"nabla_tau"`, ..., `"train"`); owned by the report. NULL if
// `report` is NULL.
const char *gradtau_report_method(const struct gradtau_report *report);

// Planned epochs (forget-epochs for ∇τ); 0 if `report` is NULL.
size_t gradtau_report_epochs(const struct gradtau_report *report);

// Optimisation steps taken; 0 if `report` is NULL.
size_t gradtau_report_steps(const struct gradtau_report *report);

// Wall-clock seconds of the run; NaN if `report` is NULL.
double gradtau_report_seconds(const struct gradtau_report *report);

// The learning rate at the first step (∇τ's default depends on the mode and the forget
// fraction; the rate may decay after that); NaN if `report` is NULL.
float gradtau_report_lr(const struct gradtau_report *report);

// ∇τ: the last α (NaN for other methods or a NULL report).
float gradtau_report_final_alpha(const struct gradtau_report *report);

// ∇τ: the last target loss τ (NaN for other methods or a NULL report).
float gradtau_report_final_tau(const struct gradtau_report *report);

// ∇τ adaptive mode: the forget-epoch at which the forget term switched off, or -1 if it
// never did (or the report is NULL).
int64_t gradtau_report_forget_stopped_at(const struct gradtau_report *report);

// True when the run was cut short by `max_steps` (the stop reason is
// `GRADTAU_STOP_MAX_STEPS`).
bool gradtau_report_truncated(const struct gradtau_report *report);

// Why the run ended: a `GRADTAU_STOP_*` value, or -1 if `report` is NULL.
gradtau_stop_reason gradtau_report_stop_reason(const struct gradtau_report *report);

// The name of a stop reason (`"GRADTAU_STOP_FORGOTTEN"`), or `"GRADTAU_STOP_UNKNOWN"` for a
// number this library does not define. Never NULL; static storage. Thread-safe.
const char *gradtau_stop_reason_name(gradtau_stop_reason reason);

// Frees a report. NULL is a no-op; freeing the same non-NULL report twice is undefined
// behaviour.
void gradtau_report_free(struct gradtau_report *report);

// A message describing the most recent failed call on the calling thread, or `""` when the
// most recent call succeeded. Never NULL. The string belongs to gradtau and stays valid
// until the next gradtau call on the same thread; copy it to keep it. Each thread has its own
// message, so this is thread-safe.
const char *gradtau_last_error_message(void);

// The name of a status code (`"GRADTAU_BUSY"`), or `"GRADTAU_UNKNOWN_STATUS"` for a number
// this library does not define. Never NULL; static storage. Thread-safe.
const char *gradtau_status_name(int32_t status);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* GRADTAU_H */
