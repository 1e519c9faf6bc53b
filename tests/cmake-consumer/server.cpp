// A C++ "server" built against an installed gradtau package with find_package, from outside
// the repository: it binds its own weight vectors, trains on the embedded digits data,
// removes class 3 with ∇τ and checks the audit.
#include <gradtau.hpp>

#include <cstdio>
#include <vector>

int main() {
    try {
        gradtau::check_abi();
        auto model = gradtau::Model::from_json(gradtau::digits_mlp_spec());
        std::vector<std::vector<float>> weights;  // the server's own buffers
        weights.reserve(model.param_count());
        for (const auto &p : model.params()) {
            weights.emplace_back(p.numel);
            model.bind(p.name, weights.back());
        }
        model.init_weights(1);
        auto data = gradtau::digits_split(3);
        auto train = gradtau::train_options();
        train.epochs = 25;
        train.seed = 1;
        model.train(data.train, train);
        std::vector<std::size_t> forget_idx, retain_idx;
        auto labels = data.train.labels();
        for (std::size_t i = 0; i < labels.size(); i++)
            (labels[i] == 3 ? forget_idx : retain_idx).push_back(i);
        auto forget = data.train.subset(forget_idx), retain = data.train.subset(retain_idx);
        auto before = model.audit(retain, forget, data.test);
        auto opts = gradtau::unlearn_options();
        opts.seed = 3;
        auto report = model.unlearn(forget, retain, data.val, opts);
        auto after = model.audit(retain, forget, data.test);
        std::printf("gradtau %s (C++): %zu steps; forget accuracy %.3f -> %.3f, retain %.3f -> %.3f, "
                    "MIA (loss) %.3f\n",
                    gradtau::version().c_str(), report.steps(), before.forget_accuracy,
                    after.forget_accuracy, before.retain_accuracy, after.retain_accuracy,
                    after.mia_loss);
        bool ok = before.forget_accuracy > 0.95 && before.retain_accuracy > 0.95 &&
                  after.forget_accuracy < 0.2 && after.retain_accuracy > 0.9 && report.steps() > 0;
        if (!ok) std::fprintf(stderr, "the audit does not show class 3 forgotten and the rest kept\n");
        return ok ? 0 : 1;
    } catch (const gradtau::Error &e) {
        std::fprintf(stderr, "gradtau error: %s\n", e.what());
        return 1;
    }
}
