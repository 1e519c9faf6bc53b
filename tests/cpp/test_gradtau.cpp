// GoogleTest suite of the C++ wrapper gradtau.hpp.
#include <gradtau.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <atomic>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <thread>
#include <type_traits>

namespace {

static_assert(!std::is_copy_constructible_v<gradtau::Model>);
static_assert(!std::is_copy_assignable_v<gradtau::Model>);
static_assert(std::is_nothrow_move_constructible_v<gradtau::Model>);
static_assert(std::is_nothrow_move_assignable_v<gradtau::Model>);
static_assert(!std::is_copy_constructible_v<gradtau::Dataset>);
static_assert(std::is_nothrow_move_constructible_v<gradtau::Dataset>);
static_assert(!std::is_copy_constructible_v<gradtau::Report>);

// A model whose parameters are bound to std::vector buffers owned by the test.
struct Bound {
    gradtau::Model model;
    std::vector<std::vector<float>> buffers;

    explicit Bound(std::uint64_t seed)
        : model(gradtau::Model::from_json(gradtau::digits_mlp_spec())) {
        for (const auto &p : model.params()) {
            buffers.emplace_back(p.numel);
            model.bind(p.name, buffers.back());
        }
        model.init_weights(seed);
    }
};

// Forget = the first 120 training samples (the split is shuffled), retain = the rest.
struct Sets {
    gradtau::DigitsSplit split = gradtau::digits_split(0);
    gradtau::Dataset forget = pick(0, 120);
    gradtau::Dataset retain = pick(120, split.train.size());

    gradtau::Dataset pick(std::size_t from, std::size_t to) const {
        std::vector<std::size_t> idx;
        for (std::size_t i = from; i < to; i++) idx.push_back(i);
        return split.train.subset(idx);
    }
};

gradtau_unlearn_options small_run(std::uint64_t seed = 0) {
    auto o = gradtau::unlearn_options();
    o.device = "cpu";
    o.seed = seed;
    o.max_steps = 6;
    return o;
}

TEST(Version, MatchesTheHeader) {
    EXPECT_NO_THROW(gradtau::check_abi());
    EXPECT_EQ(gradtau::version(), std::to_string(GRADTAU_VERSION_MAJOR) + "." +
                                      std::to_string(GRADTAU_VERSION_MINOR) + "." +
                                      std::to_string(GRADTAU_VERSION_PATCH));
}

TEST(Model, DescribesItsParameters) {
    auto m = gradtau::Model::from_json(gradtau::digits_mlp_spec());
    ASSERT_EQ(m.param_count(), 6u);
    auto p = m.param(0);
    EXPECT_EQ(p.name, "0.weight");
    EXPECT_EQ(p.shape, (gradtau::Shape{128, 64}));
    EXPECT_EQ(p.numel, 128u * 64u);
    EXPECT_TRUE(p.trainable);
    EXPECT_EQ(m.param_index("4.bias"), 5u);
    EXPECT_EQ(m.input_shape(), gradtau::Shape{64});
    EXPECT_EQ(m.output_shape(), gradtau::Shape{10});
    EXPECT_EQ(m.loss(), "cross_entropy");
}

TEST(Model, ErrorsCarryStatusAndMessage) {
    try {
        gradtau::Model::from_json("{\"format\": \"gradtau.model/1\"");
        FAIL() << "no exception";
    } catch (const gradtau::Error &e) {
        EXPECT_EQ(e.status(), GRADTAU_SPEC);
        EXPECT_STREQ(e.status_name(), "GRADTAU_SPEC");
        EXPECT_NE(std::string(e.what()).find("GRADTAU_SPEC: "), std::string::npos);
    }
    auto m = gradtau::Model::from_json(gradtau::digits_mlp_spec());
    std::vector<float> short_buffer(10);
    try {
        m.bind("0.weight", short_buffer);
        FAIL() << "no exception";
    } catch (const gradtau::Error &e) {
        EXPECT_EQ(e.status(), GRADTAU_BINDING);
        EXPECT_NE(std::string(e.what()).find("0.weight"), std::string::npos);
    }
    try {
        m.param_index("nope");
        FAIL() << "no exception";
    } catch (const gradtau::Error &e) {
        EXPECT_EQ(e.status(), GRADTAU_BINDING);
    }
}

TEST(Model, MovesTransferOwnership) {
    auto a = gradtau::Model::from_json(gradtau::digits_mlp_spec());
    gradtau_model *raw = a.get();
    gradtau::Model b = std::move(a);
    EXPECT_EQ(b.get(), raw);
    EXPECT_EQ(a.get(), nullptr);  // NOLINT(bugprone-use-after-move): documented state
    EXPECT_EQ(a.param_count(), 0u);
    gradtau::Model c(b.release());
    EXPECT_EQ(c.get(), raw);
    EXPECT_EQ(b.get(), nullptr);
}

TEST(Dataset, ChecksShapesAndLabels) {
    std::vector<float> x(8, 0.5f);
    std::array<std::size_t, 2> shape{2, 4};
    std::vector<std::int32_t> labels{1, 3};
    auto d = gradtau::Dataset::classes(x, shape, labels);
    EXPECT_EQ(d.size(), 2u);
    EXPECT_EQ(d.labels(), labels);
    std::vector<std::int32_t> negative{1, -3};
    EXPECT_THROW(gradtau::Dataset::classes(x, shape, negative), gradtau::Error);
    std::vector<float> too_short(7);
    try {
        gradtau::Dataset::classes(too_short, shape, labels);
        FAIL() << "no exception";
    } catch (const gradtau::Error &e) {
        EXPECT_EQ(e.status(), GRADTAU_SHAPE);
    }
    std::vector<float> t(6);
    std::array<std::size_t, 2> tshape{2, 3};
    auto v = gradtau::Dataset::values(x, shape, t, tshape);
    EXPECT_EQ(v.size(), 2u);
    EXPECT_THROW(v.labels(), gradtau::Error);
}

// An empty batch (the C header allows NULL with length 0) gives empty results, not
// GRADTAU_NULL_POINTER: an empty std::vector's data() may be NULL.
TEST(Dataset, EmptyBatchGivesEmptyResults) {
    Bound b(1);
    auto split = gradtau::digits_split(0);
    std::vector<std::size_t> none;
    auto empty = split.train.subset(none);
    EXPECT_EQ(empty.size(), 0u);
    EXPECT_TRUE(empty.labels().empty());
    EXPECT_TRUE(b.model.predict(empty).empty());
    EXPECT_TRUE(b.model.losses(empty).empty());
    std::array<std::size_t, 2> shape{0, 64};
    auto built = gradtau::Dataset::classes({}, shape, {});
    EXPECT_EQ(built.size(), 0u);
    EXPECT_TRUE(b.model.predict(built).empty());
}

TEST(Flow, TrainAuditUnlearnAudit) {
    Bound b(1);
    Sets s;
    auto topts = gradtau::train_options();
    topts.epochs = 10;
    auto trained = b.model.train(s.split.train, topts);
    EXPECT_EQ(trained.method(), "train");
    auto before = b.model.audit(s.retain, s.forget, s.split.test);
    EXPECT_GT(before.retain_accuracy, 0.9);
    {
        auto full = b.model.audit_report(s.retain, s.forget, s.split.test);
        EXPECT_EQ(full.metric(), gradtau::Metric::Accuracy);
        EXPECT_STREQ(full.metric_name(), "accuracy");
        EXPECT_STREQ(gradtau::metric_name(gradtau::Metric::MacroF1), "macro_f1");
        EXPECT_EQ(full.value(gradtau::AuditSet::Retain), before.retain_accuracy);
        EXPECT_EQ(full.value(gradtau::AuditSet::Test), before.test_accuracy);
        EXPECT_TRUE(std::isnan(full.value(gradtau::Metric::Mae, gradtau::AuditSet::Test)));
        EXPECT_EQ(full.attack(gradtau::Attack::Paper, gradtau::Score::Accuracy), before.mia_loss);
        EXPECT_EQ(full.attack(gradtau::Attack::Entropy, gradtau::Score::Accuracy),
                  before.mia_entropy);
        double auc = full.attack(gradtau::Attack::Threshold, gradtau::Score::Auc);
        EXPECT_GE(auc, 0.0);
        EXPECT_LE(auc, 1.0);
        EXPECT_GE(full.strongest(), std::abs(auc - 0.5));
        EXPECT_GT(full.attack_samples(), 0u);
    }

    auto snapshot = b.buffers;
    std::size_t calls = 0;
    float first_lr = NAN;
    auto opts = gradtau::unlearn_options();
    opts.device = "cpu";
    auto report = b.model.unlearn(s.forget, s.retain, s.split.val, opts,
                                  [&](const gradtau::Progress &p) {
                                      EXPECT_EQ(p.step, calls);
                                      EXPECT_STREQ(p.method, "nabla_tau");
                                      if (calls == 0) first_lr = p.lr;
                                      calls++;
                                      return gradtau::Control::Continue;
                                  });
    EXPECT_EQ(report.method(), "nabla_tau");
    EXPECT_EQ(report.steps(), calls);
    EXPECT_GT(calls, 0u);
    EXPECT_EQ(report.lr(), first_lr);  // the rate decays from the reported start
    EXPECT_FALSE(report.truncated());
    EXPECT_NE(report.stop_reason(), gradtau::StopReason::MaxSteps);
    EXPECT_EQ(std::string(report.stop_reason_name()).rfind("GRADTAU_STOP_", 0), 0u);
    EXPECT_NE(b.buffers, snapshot);  // the caller's own vectors hold the new weights
    auto after = b.model.audit(s.retain, s.forget, s.split.test);
    EXPECT_GT(after.retain_accuracy, 0.85);
    EXPECT_TRUE(std::isfinite(after.mia_loss));

    // Inference on the bound weights agrees with the audit.
    auto logits = b.model.predict(s.split.test);
    auto labels = s.split.test.labels();
    ASSERT_EQ(logits.size(), labels.size() * 10);
    std::size_t correct = 0;
    for (std::size_t i = 0; i < labels.size(); i++) {
        std::size_t best = 0;
        for (std::size_t k = 1; k < 10; k++) {
            if (logits[i * 10 + k] > logits[i * 10 + best]) best = k;
        }
        correct += static_cast<std::int32_t>(best) == labels[i];
    }
    EXPECT_NEAR(static_cast<double>(correct) / static_cast<double>(labels.size()),
                after.test_accuracy, 1e-9);
    auto losses = b.model.losses(s.forget);
    EXPECT_EQ(losses.size(), s.forget.size());
    for (float l : losses) EXPECT_TRUE(std::isfinite(l) && l >= 0.0f);
}

TEST(Progress, CancelLeavesTheBuffersBitIdentical) {
    Bound b(2);
    Sets s;
    auto snapshot = b.buffers;
    int calls = 0;
    // Paper mode runs every step it is given; adaptive mode may find that this untrained
    // model has nothing to forget and end before the callback is ever called.
    auto opts = small_run();
    opts.nabla_tau_mode = GRADTAU_NABLA_TAU_MODE_PAPER;
    try {
        b.model.unlearn(s.forget, s.retain, s.split.val, opts, [&](const gradtau::Progress &) {
            return ++calls == 2 ? gradtau::Control::Cancel : gradtau::Control::Continue;
        });
        FAIL() << "no exception";
    } catch (const gradtau::Error &e) {
        EXPECT_EQ(e.status(), GRADTAU_CANCELLED);
    }
    EXPECT_EQ(calls, 2);
    EXPECT_EQ(b.buffers, snapshot);
}

TEST(Progress, ExceptionsFromTheCallbackAreRethrown) {
    Bound b(3);
    Sets s;
    auto snapshot = b.buffers;
    EXPECT_THROW(b.model.unlearn(s.forget, s.retain, s.split.val, small_run(),
                                 [](const gradtau::Progress &) -> gradtau::Control {
                                     throw std::out_of_range("host gave up");
                                 }),
                 std::out_of_range);
    EXPECT_EQ(b.buffers, snapshot);
    // The model is not left locked.
    EXPECT_NO_THROW(b.model.unlearn(s.forget, s.retain, s.split.val, small_run()));
    EXPECT_NE(b.buffers, snapshot);
}

TEST(Threads, ParallelModelsMatchSequentialRuns) {
    Sets s;
    Bound a1(4), b1(5);
    a1.model.unlearn(s.forget, s.retain, s.split.val, small_run(1));
    b1.model.unlearn(s.forget, s.retain, s.split.val, small_run(2));
    Bound a2(4), b2(5);
    std::thread ta([&] { a2.model.unlearn(s.forget, s.retain, s.split.val, small_run(1)); });
    std::thread tb([&] { b2.model.unlearn(s.forget, s.retain, s.split.val, small_run(2)); });
    ta.join();
    tb.join();
    EXPECT_EQ(a1.buffers, a2.buffers);
    EXPECT_EQ(b1.buffers, b2.buffers);
    EXPECT_NE(a1.buffers, b1.buffers);
}

TEST(Threads, ReadsGoOnDuringARunAndASecondWriterThrowsBusy) {
    Bound b(6);
    Sets s;
    std::vector<float> x(16 * 64);
    std::vector<float> all(s.split.test.size() * 64);
    ASSERT_EQ(gradtau_dataset_inputs(s.split.test.get(), all.data(), all.size()), GRADTAU_OK);
    std::copy(all.begin(), all.begin() + x.size(), x.begin());
    const std::vector<float> before = b.model.infer(x, 16);
    std::atomic<bool> inside{false}, release{false};
    auto paper = small_run();
    paper.nabla_tau_mode = GRADTAU_NABLA_TAU_MODE_PAPER;
    std::thread t([&] {
        b.model.unlearn(s.forget, s.retain, s.split.val, paper, [&](const gradtau::Progress &) {
            inside = true;
            while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
            return gradtau::Control::Continue;
        });
    });
    while (!inside) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    try {
        b.model.init_weights(1);
        ADD_FAILURE() << "no exception";
    } catch (const gradtau::Error &e) {
        EXPECT_EQ(e.status(), GRADTAU_BUSY);
    }
    // Reads during the run see the weights from before it.
    EXPECT_EQ(b.model.infer(x, 16), before);
    EXPECT_NO_THROW(b.model.audit(s.retain, s.forget, s.split.test));
    EXPECT_EQ(b.model.param_count(), 6u);
    release = true;
    t.join();
    EXPECT_NE(b.model.infer(x, 16), before);
}

TEST(Inference, ProbabilitiesClassesAndEmptyBatches) {
    Bound b(6);
    Sets s;
    std::vector<float> x(s.split.test.size() * 64);
    ASSERT_EQ(gradtau_dataset_inputs(s.split.test.get(), x.data(), x.size()), GRADTAU_OK);
    const std::size_t n = s.split.test.size();
    std::vector<float> logits = b.model.infer(x, n);
    EXPECT_EQ(logits, b.model.predict(s.split.test));
    std::vector<float> p = b.model.infer(x, n, gradtau::Output::Probabilities);
    std::vector<std::int32_t> c = b.model.classify(x, n);
    ASSERT_EQ(c.size(), n);
    for (std::size_t i = 0; i < n; i++) {
        float sum = 0;
        std::int32_t best = 0;
        for (std::int32_t k = 0; k < 10; k++) {
            sum += p[i * 10 + k];
            if (logits[i * 10 + k] > logits[i * 10 + best]) best = k;
        }
        EXPECT_NEAR(sum, 1.0f, 1e-5f);
        EXPECT_EQ(c[i], best);
    }
    EXPECT_TRUE(b.model.infer({}, 0).empty());
    EXPECT_TRUE(b.model.classify({}, 0).empty());
    try {
        b.model.infer(x, n + 1);
        ADD_FAILURE() << "no exception";
    } catch (const gradtau::Error &e) {
        EXPECT_EQ(e.status(), GRADTAU_SHAPE);
    }
}

/// The float32 array of a little-endian .npy file (version 1 header).
std::vector<float> read_npy(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_GT(bytes.size(), 10u) << path;
    std::size_t header = static_cast<unsigned char>(bytes[8]) |
                         static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8;
    std::vector<float> out((bytes.size() - 10 - header) / sizeof(float));
    std::memcpy(out.data(), bytes.data() + 10 + header, out.size() * sizeof(float));
    return out;
}

TEST(Onnx, AnExportedModelPredictsLikeOnnxRuntimeAndWritesBack) {
    const std::string dir = GRADTAU_SOURCE_DIR "/tests/fixtures/onnx/";
    std::ifstream f(dir + "mlp.torchscript.onnx", std::ios::binary);
    std::vector<std::uint8_t> onnx((std::istreambuf_iterator<char>(f)),
                                   std::istreambuf_iterator<char>());
    auto model = gradtau::Model::from_onnx(onnx, "cross_entropy");
    std::vector<std::vector<float>> buffers;
    for (const auto &p : model.params()) {
        buffers.emplace_back(p.numel);
        model.bind(p.name, buffers.back());
    }
    model.load_onnx_weights();
    const std::vector<float> x = read_npy(dir + "mlp.input.npy");
    const std::vector<float> want = read_npy(dir + "mlp.torchscript.ort.npy");
    const std::vector<float> got = model.infer(x, 6);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < got.size(); i++) EXPECT_NEAR(got[i], want[i], 1e-4f);
    // Change a weight, write the file, read it back.
    buffers[0][0] += 1.0f;
    const auto written = model.to_onnx();
    auto again = gradtau::Model::from_onnx(written, "cross_entropy");
    std::vector<std::vector<float>> b2;
    for (const auto &p : again.params()) {
        b2.emplace_back(p.numel);
        again.bind(p.name, b2.back());
    }
    again.load_onnx_weights();
    EXPECT_EQ(b2, buffers);
    try {
        gradtau::Model::from_onnx(std::vector<std::uint8_t>{1, 2, 3}, "cross_entropy");
        ADD_FAILURE() << "no exception";
    } catch (const gradtau::Error &e) {
        EXPECT_EQ(e.status(), GRADTAU_SPEC);
    }
}

TEST(Publish, TheHookBracketsThePublishAndCanKeepTheOldWeights) {
    Bound b(6);
    Sets s;
    std::vector<gradtau::PublishPhase> phases;
    bool allow = false;
    b.model.set_publish_hook([&](gradtau::PublishPhase ph) {
        phases.push_back(ph);
        return allow;
    });
    const auto before = b.buffers;
    auto paper = small_run();
    paper.nabla_tau_mode = GRADTAU_NABLA_TAU_MODE_PAPER;  // takes its steps on any model
    try {
        b.model.unlearn(s.forget, s.retain, s.split.val, paper);
        ADD_FAILURE() << "no exception";
    } catch (const gradtau::Error &e) {
        EXPECT_EQ(e.status(), GRADTAU_CANCELLED);
    }
    EXPECT_EQ(b.buffers, before);
    allow = true;
    b.model.unlearn(s.forget, s.retain, s.split.val, paper);
    EXPECT_NE(b.buffers, before);
    EXPECT_EQ(phases, (std::vector<gradtau::PublishPhase>{gradtau::PublishPhase::Begin,
                                                          gradtau::PublishPhase::Begin,
                                                          gradtau::PublishPhase::End}));
    b.model.set_publish_hook({});
    b.model.set_threads(1);
    EXPECT_EQ(b.model.threads(), 1u);
}

}  // namespace
