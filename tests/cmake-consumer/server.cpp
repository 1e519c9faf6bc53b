// The C++ consumer: binds its own weight vectors, trains briefly, unlearns, audits.
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
        model.init_weights(0);
        auto data = gradtau::digits_split(0);
        auto train = gradtau::train_options();
        train.epochs = 3;
        model.train(data.train, train);
        std::vector<std::size_t> forget_idx, retain_idx;
        for (std::size_t i = 0; i < data.train.size(); i++)
            (i < 60 ? forget_idx : retain_idx).push_back(i);
        auto forget = data.train.subset(forget_idx), retain = data.train.subset(retain_idx);
        auto opts = gradtau::unlearn_options();
        opts.device = "cpu";
        opts.max_steps = 4;
        auto report = model.unlearn(forget, retain, data.val, opts);
        auto row = model.audit(retain, forget, data.test);
        std::printf("gradtau %s: %zu steps, retain accuracy %.3f, weights[0][0] = %f\n",
                    gradtau::version().c_str(), report.steps(), row.retain_accuracy,
                    static_cast<double>(weights[0][0]));
        return report.steps() == 4 && row.retain_accuracy > 0.5 ? 0 : 1;
    } catch (const gradtau::Error &e) {
        std::fprintf(stderr, "gradtau error: %s\n", e.what());
        return 1;
    }
}
