/* The whole flow a C host runs: spec -> bind its own buffers -> train -> audit -> unlearn ->
 * audit, on the embedded digits data. */
#include "common.h"

typedef struct progress_log {
    size_t calls;
    size_t last_step;
    int saw_nabla_tau;
} progress_log;

static int32_t on_step(const gradtau_progress *p, void *user_data) {
    progress_log *log = user_data;
    CHECK(p->step == log->calls);
    CHECK(p->step < p->total_steps);
    CHECK(isfinite(p->retain_loss));
    if (strcmp(p->method, "nabla_tau") == 0) log->saw_nabla_tau = 1;
    log->last_step = p->step;
    log->calls++;
    return 0;
}

static int finite_all(const host_model *h) {
    for (size_t i = 0; i < h->count; i++)
        for (size_t j = 0; j < h->lens[i]; j++)
            if (!isfinite(h->buffers[i][j])) return 0;
    return 1;
}

int main(void) {
    CHECK(gradtau_abi_version() == GRADTAU_ABI_VERSION);
    char want_version[64];
    snprintf(want_version, sizeof want_version, "%d.%d.%d", GRADTAU_VERSION_MAJOR,
             GRADTAU_VERSION_MINOR, GRADTAU_VERSION_PATCH);
    CHECK(strcmp(gradtau_version(), want_version) == 0);

    host_model h = host_model_new(gradtau_digits_mlp_spec());
    CHECK(h.count == 6);
    CHECK(strcmp(gradtau_model_loss(h.model), "cross_entropy") == 0);
    const size_t *shape;
    size_t rank;
    CHECK_OK(gradtau_model_input_shape(h.model, &shape, &rank));
    CHECK(rank == 1 && shape[0] == 64);
    CHECK_OK(gradtau_model_output_shape(h.model, &shape, &rank));
    CHECK(rank == 1 && shape[0] == 10);
    gradtau_param_info info;
    CHECK_OK(gradtau_model_param(h.model, 0, &info));
    CHECK(strcmp(info.name, "0.weight") == 0 && info.rank == 2 && info.shape[0] == 128 &&
          info.shape[1] == 64 && info.numel == 128 * 64 && info.trainable);
    size_t index;
    CHECK_OK(gradtau_model_param_index(h.model, "4.bias", &index));
    CHECK(index == 5);

    /* Class removal: forget every training image of a 3. */
    digits_sets d = digits_sets_new(0, 3);
    CHECK(gradtau_dataset_len(d.forget) > 100);
    CHECK(gradtau_dataset_len(d.retain) + gradtau_dataset_len(d.forget) ==
          gradtau_dataset_len(d.train));

    /* An original model: trained on forget + retain until it over-fits. */
    CHECK_OK(gradtau_model_init_weights(h.model, 1));
    gradtau_train_options topts;
    CHECK_OK(gradtau_train_options_default(&topts));
    topts.epochs = 25;
    topts.seed = 1;
    progress_log tlog = {0, 0, 0};
    gradtau_report *report = NULL;
    CHECK_OK(gradtau_train(h.model, d.train, &topts, on_step, &tlog, &report));
    CHECK(strcmp(gradtau_report_method(report), "train") == 0);
    CHECK(gradtau_report_steps(report) == tlog.calls && tlog.calls > 0);
    CHECK(gradtau_report_lr(report) == topts.lr);
    CHECK(gradtau_report_stop_reason(report) == GRADTAU_STOP_BUDGET);
    gradtau_report_free(report);
    CHECK(finite_all(&h));

    gradtau_audit_row before;
    CHECK_OK(gradtau_audit(h.model, d.retain, d.forget, d.test, 0, &before));
    printf("before: retain %.3f forget %.3f test %.3f mia_loss %.3f mia_entropy %.3f\n",
           before.retain_accuracy, before.forget_accuracy, before.test_accuracy,
           before.mia_loss, before.mia_entropy);
    CHECK(before.retain_accuracy > 0.95 && before.test_accuracy > 0.9);

    /* The audit report: the same audit, with the task's metric named and every attack. */
    {
        gradtau_audit_report *ar = NULL;
        CHECK_OK(gradtau_audit_report_new(h.model, d.retain, d.forget, d.test, 0, &ar));
        CHECK(gradtau_audit_report_metric(ar) == GRADTAU_METRIC_ACCURACY);
        CHECK(strcmp(gradtau_metric_name(gradtau_audit_report_metric(ar)), "accuracy") == 0);
        CHECK(strcmp(gradtau_metric_name(GRADTAU_METRIC_MSE), "mse") == 0);
        CHECK(strcmp(gradtau_metric_name(99), "unknown") == 0);
        CHECK(gradtau_audit_report_value(ar, GRADTAU_METRIC_ACCURACY, GRADTAU_AUDIT_SET_RETAIN) ==
              before.retain_accuracy);
        CHECK(gradtau_audit_report_value(ar, GRADTAU_METRIC_ACCURACY, GRADTAU_AUDIT_SET_FORGET) ==
              before.forget_accuracy);
        CHECK(gradtau_audit_report_value(ar, GRADTAU_METRIC_ACCURACY, GRADTAU_AUDIT_SET_TEST) ==
              before.test_accuracy);
        CHECK(isnan(gradtau_audit_report_value(ar, GRADTAU_METRIC_MSE, GRADTAU_AUDIT_SET_TEST)));
        CHECK(isnan(gradtau_audit_report_value(ar, GRADTAU_METRIC_ACCURACY, 7)));
        CHECK(gradtau_audit_report_attack(ar, GRADTAU_ATTACK_PAPER, GRADTAU_SCORE_ACCURACY) ==
              before.mia_loss);
        CHECK(gradtau_audit_report_attack(ar, GRADTAU_ATTACK_ENTROPY, GRADTAU_SCORE_ACCURACY) ==
              before.mia_entropy);
        CHECK(isnan(gradtau_audit_report_attack(ar, GRADTAU_ATTACK_ENTROPY, GRADTAU_SCORE_AUC)));
        double auc = gradtau_audit_report_attack(ar, GRADTAU_ATTACK_THRESHOLD, GRADTAU_SCORE_AUC);
        double log_acc =
            gradtau_audit_report_attack(ar, GRADTAU_ATTACK_LOG_LOSS, GRADTAU_SCORE_ACCURACY);
        double strongest = gradtau_audit_report_strongest(ar);
        printf("before: auc %.3f log-loss attack %.3f strongest %.3f (%zu samples)\n", auc, log_acc,
               strongest, gradtau_audit_report_attack_samples(ar));
        /* The memorised forget set ranks below unseen data. */
        CHECK(auc > 0.5 && auc <= 1.0 && log_acc >= 0.0 && log_acc <= 1.0);
        CHECK(strongest >= auc - 0.5 && strongest <= 0.5);
        CHECK(gradtau_audit_report_attack_samples(ar) > 0);
        CHECK(isnan(gradtau_audit_report_strongest(NULL)));
        CHECK(gradtau_audit_report_metric(NULL) == -1);
        gradtau_audit_report_free(ar);
        gradtau_audit_report_free(NULL);
    }

    size_t total;
    float *trained = host_model_snapshot(&h, &total);
    gradtau_unlearn_options opts;
    CHECK_OK(gradtau_unlearn_options_default(GRADTAU_METHOD_NABLA_TAU, &opts));
    CHECK(opts.struct_size == sizeof opts && isnan(opts.alpha0) && isnan(opts.alpha_max) &&
          isnan(opts.lr));
    opts.seed = 3;
    opts.device = "cpu";
    progress_log ulog = {0, 0, 0};
    CHECK_OK(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &opts, on_step, &ulog, &report));
    CHECK(strcmp(gradtau_report_method(report), "nabla_tau") == 0);
    CHECK(ulog.saw_nabla_tau && gradtau_report_steps(report) == ulog.calls && ulog.calls > 0);
    CHECK(gradtau_report_epochs(report) > 0 && gradtau_report_seconds(report) >= 0.0);
    CHECK(!gradtau_report_truncated(report));
    CHECK(gradtau_report_stop_reason(report) == GRADTAU_STOP_BUDGET ||
          gradtau_report_stop_reason(report) == GRADTAU_STOP_FORGOTTEN);
    /* Adaptive mode's rate: 1e-3 × 10 × forget fraction, within [1e-3, 3e-3]. */
    CHECK(gradtau_report_lr(report) >= 1e-3f && gradtau_report_lr(report) <= 3e-3f);
    printf("unlearn: %zu steps, %zu epochs, forget term stopped at %lld, alpha %.3f tau %.3f\n",
           gradtau_report_steps(report), gradtau_report_epochs(report),
           (long long)gradtau_report_forget_stopped_at(report), gradtau_report_final_alpha(report),
           gradtau_report_final_tau(report));
    gradtau_report_free(report);
    /* The host's own buffers now hold the unlearned weights. */
    CHECK(!host_model_equals(&h, trained));
    CHECK(finite_all(&h));

    gradtau_audit_row after;
    CHECK_OK(gradtau_audit(h.model, d.retain, d.forget, d.test, 0, &after));
    printf("after:  retain %.3f forget %.3f test %.3f mia_loss %.3f mia_entropy %.3f\n",
           after.retain_accuracy, after.forget_accuracy, after.test_accuracy, after.mia_loss,
           after.mia_entropy);
    CHECK(before.forget_accuracy > 0.95);
    CHECK(after.forget_accuracy < 0.2);
    CHECK(after.retain_accuracy > 0.9);

    /* Auditing reads the buffers and never writes them. */
    float *unlearned = host_model_snapshot(&h, &total);
    gradtau_audit_row again;
    CHECK_OK(gradtau_audit(h.model, d.retain, d.forget, d.test, 0, &again));
    CHECK(host_model_equals(&h, unlearned));
    CHECK(memcmp(&again, &after, sizeof again) == 0);

    /* Inference on the bound weights: logits agree with the audit's test accuracy, and the
       per-sample losses on the forget set are high now that it is forgotten. */
    {
        size_t n_test = gradtau_dataset_len(d.test);
        float *logits = malloc(n_test * 10 * sizeof *logits);
        int32_t *labels = malloc(n_test * sizeof *labels);
        CHECK(logits != NULL && labels != NULL);
        CHECK_OK(gradtau_predict(h.model, d.test, logits, n_test * 10));
        CHECK_OK(gradtau_dataset_labels(d.test, labels, n_test));
        size_t correct = 0;
        for (size_t i = 0; i < n_test; i++) {
            size_t best = 0;
            for (size_t k = 1; k < 10; k++) {
                if (logits[i * 10 + k] > logits[i * 10 + best]) best = k;
            }
            correct += (int32_t)best == labels[i];
        }
        CHECK(fabs((double)correct / (double)n_test - after.test_accuracy) < 1e-9);
        /* A wrong length is refused before anything is written. */
        logits[0] = 42.0f;
        CHECK(gradtau_predict(h.model, d.test, logits, n_test * 10 - 1) == GRADTAU_SHAPE);
        CHECK(logits[0] == 42.0f);
        free(logits);
        free(labels);

        size_t n_forget = gradtau_dataset_len(d.forget);
        float *losses = malloc(n_forget * sizeof *losses);
        CHECK(losses != NULL);
        CHECK_OK(gradtau_losses(h.model, d.forget, losses, n_forget));
        double mean = 0.0;
        for (size_t i = 0; i < n_forget; i++) mean += losses[i];
        mean /= (double)n_forget;
        printf("mean forget loss after unlearning: %.3f\n", mean);
        CHECK(mean > 1.0);
        CHECK(gradtau_losses(h.model, d.forget, NULL, n_forget) == GRADTAU_NULL_POINTER);
        free(losses);
    }

    /* A baseline through the same entry point. */
    CHECK_OK(gradtau_unlearn_options_default(GRADTAU_METHOD_NEGGRAD_PLUS, &opts));
    CHECK(opts.epochs == 3 && opts.batch_size == 256);
    opts.epochs = 1;
    CHECK_OK(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &opts, NULL, NULL, NULL));
    CHECK(!host_model_equals(&h, unlearned));

    free(trained);
    free(unlearned);
    digits_sets_free(&d);
    host_model_free(&h);
    printf("test_flow: ok\n");
    return 0;
}
