// gradtau.hpp - header-only C++17 wrapper over the gradtau C ABI (gradtau.h).
//
// - Handles are move-only RAII objects over std::unique_ptr with the C deleter; get()
//   gives the raw handle for calls this header does not wrap, release() gives up ownership.
// - Every failing call throws gradtau::Error, which carries the gradtau_status and the
//   library's message.
// - Buffers are passed as gradtau::Span (pointer + size), built implicitly from
//   std::vector, std::array or C arrays. Bound weight buffers stay the caller's: keep them
//   alive (and unmoved) while they are bound; gradtau writes them only when a run succeeds.
// - Progress callbacks are any callable `gradtau::Control(const gradtau::Progress &)`.
//   An exception thrown by the callback cancels the run (buffers untouched) and is rethrown
//   from the call that ran it.
// - Thread safety is the C API's: Dataset and Report may be shared across threads. A Model
//   serves while it learns: its reads (infer, classify, predict, losses, audit and the const
//   queries) run on any number of threads at once, also during a train/unlearn run, and see
//   the weights from before the run until it publishes them atomically; its writers (train,
//   unlearn, bind, unbind_all, init_weights, set_publish_hook) run one at a time, and a
//   second one throws GRADTAU_BUSY at once. set_threads caps the CPU threads of its calls.
#ifndef GRADTAU_HPP
#define GRADTAU_HPP

#if !defined(__cplusplus) || __cplusplus < 201703L
#error "gradtau.hpp needs C++17 or later"
#endif

#include <gradtau.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace gradtau {

/// A failed gradtau call: the status code and the library's message.
class Error : public std::runtime_error {
public:
    Error(gradtau_status status, const std::string &message)
        : std::runtime_error(std::string(gradtau_status_name(status)) + ": " + message),
          status_(status) {}

    gradtau_status status() const noexcept { return status_; }
    const char *status_name() const noexcept { return gradtau_status_name(status_); }

private:
    gradtau_status status_;
};

namespace detail {

inline void check(gradtau_status status) {
    if (status != GRADTAU_OK) throw Error(status, gradtau_last_error_message());
}

template <class T, void (*Free)(T *)>
struct Deleter {
    void operator()(T *p) const noexcept { Free(p); }
};

/// The address to hand gradtau for a result vector: an empty result (an empty data set)
/// gets `scratch`, which nothing reads, because an empty vector's data() may be NULL and
/// gradtau's output parameters refuse NULL even with length 0.
template <class T>
T *out_ptr(std::vector<T> &out, T &scratch) noexcept {
    return out.empty() ? &scratch : out.data();
}

}  // namespace detail

/// A non-owning view of `size` contiguous elements (a minimal std::span for C++17).
template <class T>
class Span {
public:
    constexpr Span() noexcept = default;
    constexpr Span(T *data, std::size_t size) noexcept : data_(data), size_(size) {}
    template <std::size_t N>
    constexpr Span(T (&array)[N]) noexcept : data_(array), size_(N) {}
    template <class U, std::size_t N,
              class = std::enable_if_t<std::is_convertible_v<U (*)[], T (*)[]>>>
    constexpr Span(std::array<U, N> &array) noexcept : data_(array.data()), size_(N) {}
    template <class U, std::size_t N,
              class = std::enable_if_t<std::is_convertible_v<const U (*)[], T (*)[]>>>
    constexpr Span(const std::array<U, N> &array) noexcept : data_(array.data()), size_(N) {}
    template <class U, class A,
              class = std::enable_if_t<std::is_convertible_v<U (*)[], T (*)[]>>>
    Span(std::vector<U, A> &v) noexcept : data_(v.data()), size_(v.size()) {}
    template <class U, class A,
              class = std::enable_if_t<std::is_convertible_v<const U (*)[], T (*)[]>>>
    Span(const std::vector<U, A> &v) noexcept : data_(v.data()), size_(v.size()) {}

    constexpr T *data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr T *begin() const noexcept { return data_; }
    constexpr T *end() const noexcept { return data_ + size_; }
    constexpr T &operator[](std::size_t i) const noexcept { return data_[i]; }

private:
    T *data_ = nullptr;
    std::size_t size_ = 0;
};

using Shape = std::vector<std::size_t>;
using Progress = gradtau_progress;
using AuditRow = gradtau_audit_row;

/// What a progress callback answers.
enum class Control { Continue, Cancel };

/// A progress callback; see the file comment for exceptions.
using ProgressFn = std::function<Control(const Progress &)>;

/// The library's version string, e.g. "0.1.0".
inline std::string version() { return gradtau_version(); }

/// Throws unless the loaded library implements the ABI this header was compiled against.
inline void check_abi() {
    if (gradtau_abi_version() != GRADTAU_ABI_VERSION)
        throw Error(GRADTAU_ABI_MISMATCH, "the library implements ABI " +
                                              std::to_string(gradtau_abi_version()) +
                                              ", this header ABI " +
                                              std::to_string(GRADTAU_ABI_VERSION));
}

/// Options of Model::unlearn with the defaults of `method`; change fields as needed
/// (`device` is a C string the caller keeps alive during the call).
inline gradtau_unlearn_options unlearn_options(gradtau_method method = GRADTAU_METHOD_NABLA_TAU) {
    gradtau_unlearn_options o;
    detail::check(gradtau_unlearn_options_default(method, &o));
    return o;
}

/// Options of Model::train with the defaults.
inline gradtau_train_options train_options() {
    gradtau_train_options o;
    detail::check(gradtau_train_options_default(&o));
    return o;
}

/// Inputs and targets, copied once from the caller's arrays (which may be freed afterwards).
class Dataset {
public:
    /// Classification: `inputs` row-major with the full shape `shape` ([N, ...]), N labels.
    static Dataset classes(Span<const float> inputs, Span<const std::size_t> shape,
                           Span<const std::int32_t> labels) {
        gradtau_dataset *d = nullptr;
        detail::check(gradtau_dataset_classes_new(inputs.data(), inputs.size(), shape.data(),
                                                  shape.size(), labels.data(), labels.size(),
                                                  &d));
        return Dataset(d);
    }

    /// Float targets with their own full shape ([N, ...]).
    static Dataset values(Span<const float> inputs, Span<const std::size_t> shape,
                          Span<const float> targets, Span<const std::size_t> target_shape) {
        gradtau_dataset *d = nullptr;
        detail::check(gradtau_dataset_values_new(inputs.data(), inputs.size(), shape.data(),
                                                 shape.size(), targets.data(), targets.size(),
                                                 target_shape.data(), target_shape.size(), &d));
        return Dataset(d);
    }

    /// Takes ownership of a handle from the C API.
    explicit Dataset(gradtau_dataset *owned) noexcept : handle_(owned) {}

    /// The samples at `indices`, copied into a new data set.
    Dataset subset(Span<const std::size_t> indices) const {
        gradtau_dataset *d = nullptr;
        detail::check(gradtau_dataset_subset(get(), indices.data(), indices.size(), &d));
        return Dataset(d);
    }

    std::size_t size() const noexcept { return gradtau_dataset_len(get()); }

    std::vector<std::int32_t> labels() const {
        std::vector<std::int32_t> out(size());
        std::int32_t scratch = 0;
        detail::check(gradtau_dataset_labels(get(), detail::out_ptr(out, scratch), out.size()));
        return out;
    }

    /// The inputs of every sample, row-major; `per_sample` is the product of the sample
    /// shape (a model's input shape).
    std::vector<float> inputs(std::size_t per_sample) const {
        std::vector<float> out(size() * per_sample);
        detail::check(gradtau_dataset_inputs(get(), out.data(), out.size()));
        return out;
    }

    const gradtau_dataset *get() const noexcept { return handle_.get(); }
    gradtau_dataset *release() noexcept { return handle_.release(); }

private:
    std::unique_ptr<gradtau_dataset, detail::Deleter<gradtau_dataset, gradtau_dataset_free>>
        handle_;
};

/// The embedded digits data split into train / validation / test (demo and tests).
struct DigitsSplit {
    Dataset train, val, test;
};

inline DigitsSplit digits_split(std::uint64_t seed) {
    gradtau_dataset *train = nullptr, *val = nullptr, *test = nullptr;
    detail::check(gradtau_digits_split(seed, &train, &val, &test));
    return DigitsSplit{Dataset(train), Dataset(val), Dataset(test)};
}

/// The demo MLP spec for the digits data.
inline std::string_view digits_mlp_spec() noexcept { return gradtau_digits_mlp_spec(); }

/// What a run did.
/// Why a run ended; the values are the C `GRADTAU_STOP_*` codes.
enum class StopReason : std::int32_t {
    /// Every planned epoch ran.
    Budget = GRADTAU_STOP_BUDGET,
    /// ∇τ adaptive mode, random forgetting: the membership stop test passed and was confirmed.
    Forgotten = GRADTAU_STOP_FORGOTTEN,
    /// Cut short by `max_steps`.
    MaxSteps = GRADTAU_STOP_MAX_STEPS,
};

class Report {
public:
    explicit Report(gradtau_report *owned) noexcept : handle_(owned) {}

    std::string method() const { return gradtau_report_method(get()); }
    std::size_t epochs() const noexcept { return gradtau_report_epochs(get()); }
    std::size_t steps() const noexcept { return gradtau_report_steps(get()); }
    double seconds() const noexcept { return gradtau_report_seconds(get()); }
    /// The learning rate at the first step.
    float lr() const noexcept { return gradtau_report_lr(get()); }
    float final_alpha() const noexcept { return gradtau_report_final_alpha(get()); }
    float final_tau() const noexcept { return gradtau_report_final_tau(get()); }
    bool truncated() const noexcept { return gradtau_report_truncated(get()); }
    /// Why the run ended.
    StopReason stop_reason() const noexcept {
        return static_cast<StopReason>(gradtau_report_stop_reason(get()));
    }
    /// The library's name for it (`"GRADTAU_STOP_FORGOTTEN"`).
    const char *stop_reason_name() const noexcept {
        return gradtau_stop_reason_name(gradtau_report_stop_reason(get()));
    }
    /// The forget-epoch at which ∇τ (adaptive) switched the forget term off, if it did.
    std::optional<std::size_t> forget_stopped_at() const noexcept {
        std::int64_t e = gradtau_report_forget_stopped_at(get());
        if (e < 0) return std::nullopt;
        return static_cast<std::size_t>(e);
    }

    const gradtau_report *get() const noexcept { return handle_.get(); }

private:
    std::unique_ptr<gradtau_report, detail::Deleter<gradtau_report, gradtau_report_free>> handle_;
};

/// A task metric; the values are the C `GRADTAU_METRIC_*` codes.
enum class Metric : gradtau_metric {
    Accuracy = GRADTAU_METRIC_ACCURACY,  ///< classification (`cross_entropy`)
    Mse = GRADTAU_METRIC_MSE,            ///< regression (`mse`), the primary metric
    Mae = GRADTAU_METRIC_MAE,            ///< regression, beside the MSE
    MacroF1 = GRADTAU_METRIC_MACRO_F1,   ///< multi-label (`bce_with_logits`)
};

/// The metric's short name (`"accuracy"`, `"mse"`, `"mae"`, `"macro_f1"`).
inline const char *metric_name(Metric m) noexcept {
    return gradtau_metric_name(static_cast<gradtau_metric>(m));
}

/// One of the sets an audit measures.
enum class AuditSet : gradtau_audit_set {
    Retain = GRADTAU_AUDIT_SET_RETAIN,
    Forget = GRADTAU_AUDIT_SET_FORGET,
    Test = GRADTAU_AUDIT_SET_TEST,
};

/// A membership attack (forget set = members, test set = non-members).
enum class Attack : gradtau_attack {
    Paper = GRADTAU_ATTACK_PAPER,          ///< logistic regression on the raw loss (the paper's)
    LogLoss = GRADTAU_ATTACK_LOG_LOSS,     ///< the same on ln(loss + ε)
    Threshold = GRADTAU_ATTACK_THRESHOLD,  ///< one loss threshold, lower ⇒ member
    Entropy = GRADTAU_ATTACK_ENTROPY,      ///< the paper's on the softmax entropy
};

/// What an attack is scored by.
enum class Score : gradtau_score {
    Accuracy = GRADTAU_SCORE_ACCURACY,
    Auc = GRADTAU_SCORE_AUC,
    TprAt1PctFpr = GRADTAU_SCORE_TPR_AT_1PCT_FPR,
};

/// Everything an audit measured (Model::audit_report): the task's metrics on the three sets
/// and every attack's scores. NaN marks what does not apply or was not measured.
class AuditReport {
public:
    explicit AuditReport(gradtau_audit_report *owned) noexcept : handle_(owned) {}

    /// The task's primary metric (accuracy, MSE or macro F1, following the loss).
    Metric metric() const noexcept {
        return static_cast<Metric>(gradtau_audit_report_metric(get()));
    }
    const char *metric_name() const noexcept { return gradtau::metric_name(metric()); }
    /// `m` on `set`; NaN if the task does not report `m` (MAE is reported for regression).
    double value(Metric m, AuditSet set) const noexcept {
        return gradtau_audit_report_value(get(), static_cast<gradtau_metric>(m),
                                          static_cast<gradtau_audit_set>(set));
    }
    /// The primary metric on `set`.
    double value(AuditSet set) const noexcept { return value(metric(), set); }
    double attack(Attack a, Score s) const noexcept {
        return gradtau_audit_report_attack(get(), static_cast<gradtau_attack>(a),
                                           static_cast<gradtau_score>(s));
    }
    /// The largest distance from chance among the attacks (0: the forget set looks unseen).
    double strongest() const noexcept { return gradtau_audit_report_strongest(get()); }
    /// Samples per side the attacks ran on (0: too few, every attack NaN).
    std::size_t attack_samples() const noexcept {
        return gradtau_audit_report_attack_samples(get());
    }

    const gradtau_audit_report *get() const noexcept { return handle_.get(); }

private:
    std::unique_ptr<gradtau_audit_report,
                    detail::Deleter<gradtau_audit_report, gradtau_audit_report_free>>
        handle_;
};

/// One parameter of a model.
struct ParamInfo {
    std::string name;
    Shape shape;
    std::size_t numel = 0;
    bool trainable = true;
};

namespace detail {

/// Carries a C++ callback through the C `void *user_data`, and an exception back out.
struct ProgressState {
    const ProgressFn *fn;
    std::exception_ptr error;

    static std::int32_t call(const gradtau_progress *p, void *user_data) noexcept {
        auto *self = static_cast<ProgressState *>(user_data);
        try {
            return (*self->fn)(*p) == Control::Cancel ? 1 : 0;
        } catch (...) {
            // Never unwind into the library: remember the exception, cancel, rethrow later.
            self->error = std::current_exception();
            return 1;
        }
    }

    gradtau_progress_fn c_fn() const noexcept { return *fn ? &ProgressState::call : nullptr; }

    void finish(gradtau_status status) const {
        if (error) std::rethrow_exception(error);
        check(status);
    }
};

}  // namespace detail

/// What Model::infer returns.
enum class Output : gradtau_output {
    Raw = GRADTAU_OUTPUT_RAW,                      ///< logits, or a regressor's values
    Probabilities = GRADTAU_OUTPUT_PROBABILITIES,  ///< softmax (cross_entropy) or sigmoid
};

/// When a publish hook is called (see Model::set_publish_hook).
enum class PublishPhase : gradtau_publish_phase {
    Begin = GRADTAU_PUBLISH_BEGIN,
    End = GRADTAU_PUBLISH_END,
};

/// A host's publish hook: at Begin take the engine's write lock and return true (false keeps
/// the old weights: the run throws GRADTAU_CANCELLED); at End release it (the result is
/// ignored). It must not throw: an exception counts as false at Begin and is ignored at End.
using PublishFn = std::function<bool(PublishPhase)>;

/// A model compiled from its JSON spec, with the caller's weight buffers bound to it.
class Model {
public:
    static Model from_json(std::string_view spec) {
        gradtau_model *m = nullptr;
        detail::check(gradtau_model_new(spec.data(), spec.size(), &m));
        return Model(m);
    }

    /// A model from the bytes of an ONNX file; its parameters are the initializers, under
    /// their ONNX names. `loss`: "cross_entropy", "mse" or "bce_with_logits".
    static Model from_onnx(Span<const std::uint8_t> onnx, const std::string &loss) {
        gradtau_model *m = nullptr;
        detail::check(gradtau_model_from_onnx(onnx.data(), onnx.size(), loss.c_str(), &m));
        return Model(m);
    }

    /// Takes ownership of a handle from the C API.
    explicit Model(gradtau_model *owned) noexcept : handle_(owned) {}

    std::size_t param_count() const noexcept { return gradtau_model_param_count(get()); }

    ParamInfo param(std::size_t index) const {
        gradtau_param_info info;
        detail::check(gradtau_model_param(get(), index, &info));
        return ParamInfo{info.name, Shape(info.shape, info.shape + info.rank), info.numel,
                         info.trainable};
    }

    std::vector<ParamInfo> params() const {
        std::vector<ParamInfo> out;
        for (std::size_t i = 0; i < param_count(); i++) out.push_back(param(i));
        return out;
    }

    std::size_t param_index(const std::string &name) const {
        std::size_t i = 0;
        detail::check(gradtau_model_param_index(get(), name.c_str(), &i));
        return i;
    }

    Shape input_shape() const {
        const std::size_t *s = nullptr;
        std::size_t rank = 0;
        detail::check(gradtau_model_input_shape(get(), &s, &rank));
        return Shape(s, s + rank);
    }

    Shape output_shape() const {
        const std::size_t *s = nullptr;
        std::size_t rank = 0;
        detail::check(gradtau_model_output_shape(get(), &s, &rank));
        return Shape(s, s + rank);
    }

    std::string loss() const { return gradtau_model_loss(get()); }

    /// Lends `buffer` as parameter `name` (the caller keeps it alive while bound).
    void bind(const std::string &name, Span<float> buffer) {
        detail::check(gradtau_model_bind(get(), name.c_str(), buffer.data(), buffer.size()));
    }

    void unbind_all() { detail::check(gradtau_model_unbind_all(get())); }

    void init_weights(std::uint64_t seed) {
        detail::check(gradtau_model_init_weights(get(), seed));
    }

    Report train(const Dataset &data, const gradtau_train_options &options = train_options(),
                 const ProgressFn &progress = {}) {
        detail::ProgressState st{&progress, nullptr};
        gradtau_report *r = nullptr;
        gradtau_status s = gradtau_train(get(), data.get(), &options, st.c_fn(), &st, &r);
        Report report(s == GRADTAU_OK ? r : nullptr);
        st.finish(s);
        return report;
    }

    Report unlearn(const Dataset &forget, const Dataset &retain, const Dataset &val,
                   const gradtau_unlearn_options &options = unlearn_options(),
                   const ProgressFn &progress = {}) {
        detail::ProgressState st{&progress, nullptr};
        gradtau_report *r = nullptr;
        gradtau_status s = gradtau_unlearn(get(), forget.get(), retain.get(), val.get(),
                                           &options, st.c_fn(), &st, &r);
        Report report(s == GRADTAU_OK ? r : nullptr);
        st.finish(s);
        return report;
    }

    AuditRow audit(const Dataset &retain, const Dataset &forget, const Dataset &test,
                   std::uint64_t seed = 0) {
        AuditRow row{};
        detail::check(gradtau_audit(get(), retain.get(), forget.get(), test.get(), seed, &row));
        return row;
    }

    /// The same audit with the task's metric and every attack (see AuditReport).
    AuditReport audit_report(const Dataset &retain, const Dataset &forget, const Dataset &test,
                             std::uint64_t seed = 0) {
        gradtau_audit_report *r = nullptr;
        detail::check(
            gradtau_audit_report_new(get(), retain.get(), forget.get(), test.get(), seed, &r));
        return AuditReport(r);
    }

    /// Model outputs (logits for a classifier) for every sample, row-major [N, output...].
    std::vector<float> predict(const Dataset &data) {
        std::size_t per = 1;
        for (std::size_t d : output_shape()) per *= d;
        std::vector<float> out(data.size() * per);
        float scratch = 0;
        detail::check(gradtau_predict(get(), data.get(), detail::out_ptr(out, scratch), out.size()));
        return out;
    }

    /// The per-sample training loss of every sample.
    std::vector<float> losses(const Dataset &data) {
        std::vector<float> out(data.size());
        float scratch = 0;
        detail::check(gradtau_losses(get(), data.get(), detail::out_ptr(out, scratch), out.size()));
        return out;
    }

    /// Outputs for `count` unlabelled samples, row-major [count, input...] in `inputs`; the
    /// result is row-major [count, output...]. A read: safe during a run on this model.
    std::vector<float> infer(Span<const float> inputs, std::size_t count,
                             Output kind = Output::Raw) const {
        std::vector<float> out(count * per_sample(output_shape()));
        detail::check(gradtau_model_infer(get(), inputs.data(), inputs.size(), count,
                                          static_cast<gradtau_output>(kind), out.data(),
                                          out.size()));
        return out;
    }

    /// The predicted class of each of `count` unlabelled samples (cross_entropy models).
    std::vector<std::int32_t> classify(Span<const float> inputs, std::size_t count) const {
        std::vector<std::int32_t> out(count);
        detail::check(gradtau_model_classify(get(), inputs.data(), inputs.size(), count,
                                             out.data(), out.size()));
        return out;
    }

    /// Caps the CPU threads of every later call on this model (0: no cap).
    void set_threads(std::size_t threads) {
        detail::check(gradtau_model_set_threads(get(), threads));
    }

    std::size_t threads() const noexcept { return gradtau_model_threads(get()); }

    /// Caps the memory a call on this model may plan for (0: the default budget).
    void set_memory_limit(std::uint64_t bytes) {
        detail::check(gradtau_model_set_memory_limit(get(), bytes));
    }

    /// A model from an ONNX file: writes the file's initializer values into the bound
    /// buffers (a writer, published like a run).
    void load_onnx_weights() { detail::check(gradtau_model_load_onnx_weights(get())); }

    /// The ONNX file this model came from, with the current weights as its initializers.
    std::vector<std::uint8_t> to_onnx() const {
        std::uint8_t *bytes = nullptr;
        std::size_t len = 0;
        detail::check(gradtau_model_to_onnx(get(), &bytes, &len));
        std::vector<std::uint8_t> out(bytes, bytes + len);
        gradtau_bytes_free(bytes, len);
        return out;
    }

    /// Sets the hook called around every publish of new weights into the bound buffers (an
    /// empty function removes it). A writer: throws GRADTAU_BUSY during a run.
    void set_publish_hook(PublishFn hook) {
        auto fresh = hook ? std::make_unique<PublishFn>(std::move(hook)) : nullptr;
        detail::check(gradtau_model_set_publish_hook(
            get(), fresh ? &Model::publish_trampoline : nullptr, fresh.get()));
        hook_ = std::move(fresh);  // the library now calls the new one, never the old
    }

    gradtau_model *get() const noexcept { return handle_.get(); }
    gradtau_model *release() noexcept { return handle_.release(); }

private:
    static std::size_t per_sample(const Shape &shape) {
        std::size_t n = 1;
        for (std::size_t d : shape) n *= d;
        return n;
    }

    static std::int32_t publish_trampoline(gradtau_publish_phase phase, void *user_data) noexcept {
        try {
            bool go = (*static_cast<PublishFn *>(user_data))(static_cast<PublishPhase>(phase));
            return go ? 0 : 1;
        } catch (...) {
            return 1;
        }
    }

    // Declared before handle_ so that it outlives it: the model may call it until freed.
    std::unique_ptr<PublishFn> hook_;
    std::unique_ptr<gradtau_model, detail::Deleter<gradtau_model, gradtau_model_free>> handle_;
};

/// Reads a data set for `model` from files (.npy, or IDX plain or gzip): inputs, and class
/// labels or float targets as the model's loss needs.
inline Dataset load_dataset(const Model &model, const std::string &inputs_path,
                            const std::string &targets_path) {
    gradtau_dataset *d = nullptr;
    detail::check(
        gradtau_dataset_load(model.get(), inputs_path.c_str(), targets_path.c_str(), &d));
    return Dataset(d);
}

}  // namespace gradtau

#endif  // GRADTAU_HPP
