/* A C program built against an installed gradtau, from outside the repository: with
 * pkg-config (README "Install") and with the CMake package (CMakeLists.txt next to it).
 * It binds its own weight buffers, trains on the embedded digits data, removes class 3 with
 * ∇τ and checks the audit: class 3 forgotten, the other classes kept. */
#include <gradtau.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OK(call)                                                                     \
    do {                                                                             \
        gradtau_status s_ = (call);                                                  \
        if (s_ != GRADTAU_OK) {                                                      \
            fprintf(stderr, "%s: %s: %s\n", #call, gradtau_status_name(s_),          \
                    gradtau_last_error_message());                                   \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

int main(void) {
    if (gradtau_abi_version() != GRADTAU_ABI_VERSION) {
        fprintf(stderr, "library ABI %u, header ABI %u\n", gradtau_abi_version(), GRADTAU_ABI_VERSION);
        return 1;
    }
    const char *spec = gradtau_digits_mlp_spec();
    gradtau_model *model = NULL;
    OK(gradtau_model_new(spec, strlen(spec), &model));

    /* The host's own weights: one malloc'd buffer per parameter. */
    size_t n_params = gradtau_model_param_count(model);
    float **weights = calloc(n_params, sizeof *weights);
    for (size_t i = 0; i < n_params; i++) {
        gradtau_param_info info;
        OK(gradtau_model_param(model, i, &info));
        weights[i] = calloc(info.numel, sizeof(float));
        OK(gradtau_model_bind(model, info.name, weights[i], info.numel));
    }
    OK(gradtau_model_init_weights(model, 1));

    gradtau_dataset *train = NULL, *val = NULL, *test = NULL;
    OK(gradtau_digits_split(3, &train, &val, &test));
    size_t n = gradtau_dataset_len(train), n_forget = 0, n_retain = 0;
    int32_t *labels = malloc(n * sizeof *labels);
    size_t *forget_idx = malloc(n * sizeof *forget_idx), *retain_idx = malloc(n * sizeof *retain_idx);
    OK(gradtau_dataset_labels(train, labels, n));
    for (size_t i = 0; i < n; i++) {
        if (labels[i] == 3) forget_idx[n_forget++] = i;
        else retain_idx[n_retain++] = i;
    }
    gradtau_dataset *forget = NULL, *retain = NULL;
    OK(gradtau_dataset_subset(train, forget_idx, n_forget, &forget));
    OK(gradtau_dataset_subset(train, retain_idx, n_retain, &retain));

    gradtau_train_options topts;
    OK(gradtau_train_options_default(&topts));
    topts.epochs = 25;
    topts.seed = 1;
    OK(gradtau_train(model, train, &topts, NULL, NULL, NULL));
    gradtau_audit_row before, after;
    OK(gradtau_audit(model, retain, forget, test, 0, &before));

    gradtau_unlearn_options uopts;
    OK(gradtau_unlearn_options_default(GRADTAU_METHOD_NABLA_TAU, &uopts));
    uopts.seed = 3;
    gradtau_report *report = NULL;
    OK(gradtau_unlearn(model, forget, retain, val, &uopts, NULL, NULL, &report));
    OK(gradtau_audit(model, retain, forget, test, 0, &after));

    printf("gradtau %s (C): %s, %zu steps; forget accuracy %.3f -> %.3f, retain %.3f -> %.3f, "
           "MIA (loss) %.3f\n",
           gradtau_version(), gradtau_report_method(report), gradtau_report_steps(report),
           before.forget_accuracy, after.forget_accuracy, before.retain_accuracy,
           after.retain_accuracy, after.mia_loss);
    int ok = before.forget_accuracy > 0.95 && before.retain_accuracy > 0.95 &&
             after.forget_accuracy < 0.2 && after.retain_accuracy > 0.9 &&
             gradtau_report_steps(report) > 0;

    gradtau_report_free(report);
    gradtau_dataset_free(forget);
    gradtau_dataset_free(retain);
    gradtau_dataset_free(train);
    gradtau_dataset_free(val);
    gradtau_dataset_free(test);
    gradtau_model_free(model);
    for (size_t i = 0; i < n_params; i++) free(weights[i]);
    free(weights);
    free(labels);
    free(forget_idx);
    free(retain_idx);
    if (!ok) fprintf(stderr, "the audit does not show class 3 forgotten and the rest kept\n");
    return ok ? 0 : 1;
}
