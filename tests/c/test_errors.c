/* Every error path of the C ABI: NULL handles and pointers, wrong lengths, malformed JSON,
 * missing bindings, bad options, cancellation; out-parameters and host buffers must be left
 * untouched by every failure. */
#include "common.h"

#include <stdint.h>

static const char *SPEC =
    "{\"format\": \"gradtau.model/1\", \"input\": {\"shape\": [4]},"
    " \"nodes\": [{\"name\": \"fc\", \"op\": \"linear\", \"in_features\": 4, \"out_features\": 3}],"
    " \"loss\": \"cross_entropy\"}";

typedef struct cancel_state {
    size_t calls;
    size_t cancel_at;
    gradtau_model *model;
    gradtau_status reentrant;
} cancel_state;

static int32_t cancel_after(const gradtau_progress *p, void *user_data) {
    cancel_state *s = user_data;
    (void)p;
    s->calls++;
    return s->calls >= s->cancel_at;
}

/* Re-entering the same model from its own callback must be refused, not deadlock. */
static int32_t reenter(const gradtau_progress *p, void *user_data) {
    cancel_state *s = user_data;
    (void)p;
    s->reentrant = gradtau_model_init_weights(s->model, 9);
    return 1;
}

static void check_last_error_mentions(const char *needle) {
    const char *msg = gradtau_last_error_message();
    if (!strstr(msg, needle)) {
        fprintf(stderr, "last error \"%s\" does not mention \"%s\"\n", msg, needle);
        exit(1);
    }
}

static void status_names(void) {
    CHECK(strcmp(gradtau_status_name(GRADTAU_OK), "GRADTAU_OK") == 0);
    CHECK(strcmp(gradtau_status_name(GRADTAU_BUSY), "GRADTAU_BUSY") == 0);
    CHECK(strcmp(gradtau_status_name(GRADTAU_ABI_MISMATCH), "GRADTAU_ABI_MISMATCH") == 0);
    CHECK(strcmp(gradtau_status_name(GRADTAU_RESOURCE_LIMIT), "GRADTAU_RESOURCE_LIMIT") == 0);
    CHECK(strcmp(gradtau_status_name(999), "GRADTAU_UNKNOWN_STATUS") == 0);
    CHECK(strcmp(gradtau_status_name(-1), "GRADTAU_UNKNOWN_STATUS") == 0);
    /* The numbers are ABI: pin them. */
    CHECK(GRADTAU_OK == 0 && GRADTAU_NULL_POINTER == 1 && GRADTAU_INVALID_ARGUMENT == 2 &&
          GRADTAU_SHAPE == 3 && GRADTAU_NON_FINITE == 4 && GRADTAU_SPEC == 5 &&
          GRADTAU_BINDING == 6 && GRADTAU_DEVICE_UNAVAILABLE == 7 && GRADTAU_UNSUPPORTED == 8 &&
          GRADTAU_CANCELLED == 9 && GRADTAU_IO == 10 && GRADTAU_CUDA == 11 &&
          GRADTAU_BUSY == 12 && GRADTAU_PANIC == 13 && GRADTAU_ABI_MISMATCH == 14 &&
          GRADTAU_RESOURCE_LIMIT == 15);
}

static void model_errors(void) {
    gradtau_model *sentinel = (gradtau_model *)&sentinel;
    gradtau_model *model = sentinel;
    CHECK_STATUS(gradtau_model_new(NULL, 10, &model), GRADTAU_NULL_POINTER);
    CHECK(model == sentinel);
    check_last_error_mentions("spec_json");
    CHECK_STATUS(gradtau_model_new(SPEC, strlen(SPEC), NULL), GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_model_new("{\"format\": ", 11, &model), GRADTAU_SPEC);
    CHECK(model == sentinel && strlen(gradtau_last_error_message()) > 0);
    const char *unknown_op = "{\"format\": \"gradtau.model/1\", \"input\": {\"shape\": [4]},"
                             " \"nodes\": [{\"name\": \"x\", \"op\": \"linnear\"}],"
                             " \"loss\": \"cross_entropy\"}";
    CHECK_STATUS(gradtau_model_new(unknown_op, strlen(unknown_op), &model), GRADTAU_SPEC);
    check_last_error_mentions("linnear");
    const char bad_utf8[] = {'{', (char)0xff, '}'};
    CHECK_STATUS(gradtau_model_new(bad_utf8, sizeof bad_utf8, &model), GRADTAU_INVALID_ARGUMENT);
    CHECK(model == sentinel);
    /* A length that stops inside the text is malformed JSON, not an overread. */
    CHECK_STATUS(gradtau_model_new(SPEC, 20, &model), GRADTAU_SPEC);

    CHECK_OK(gradtau_model_new(SPEC, strlen(SPEC), &model));
    CHECK(model != sentinel && strcmp(gradtau_last_error_message(), "") == 0);

    /* Queries on NULL handles. */
    CHECK(gradtau_model_param_count(NULL) == 0);
    CHECK(gradtau_model_loss(NULL) == NULL);
    gradtau_param_info info;
    CHECK_STATUS(gradtau_model_param(NULL, 0, &info), GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_model_param(model, 0, NULL), GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_model_param(model, 2, &info), GRADTAU_INVALID_ARGUMENT);
    const size_t *shape;
    size_t rank;
    CHECK_STATUS(gradtau_model_input_shape(model, NULL, &rank), GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_model_output_shape(model, &shape, NULL), GRADTAU_NULL_POINTER);
    size_t index = 77;
    CHECK_STATUS(gradtau_model_param_index(model, "fc.gamma", &index), GRADTAU_BINDING);
    CHECK(index == 77);
    CHECK_STATUS(gradtau_model_param_index(model, NULL, &index), GRADTAU_NULL_POINTER);

    /* Binding: NULL, wrong length, unknown name, misaligned, overlapping. */
    float w[12], b[3], big[16];
    CHECK_STATUS(gradtau_model_bind(NULL, "fc.weight", w, 12), GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_model_bind(model, NULL, w, 12), GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_model_bind(model, "fc.weight", NULL, 12), GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_model_bind(model, "fc.weight", w, 11), GRADTAU_BINDING);
    check_last_error_mentions("fc.weight");
    CHECK_STATUS(gradtau_model_bind(model, "fc.weight", w, SIZE_MAX), GRADTAU_INVALID_ARGUMENT);
    CHECK_STATUS(gradtau_model_bind(model, "fc.gamma", w, 12), GRADTAU_BINDING);
    float *misaligned = (float *)((char *)big + 1);
    CHECK_STATUS(gradtau_model_bind(model, "fc.bias", misaligned, 3), GRADTAU_INVALID_ARGUMENT);
    CHECK_OK(gradtau_model_bind(model, "fc.weight", big, 12));
    CHECK_STATUS(gradtau_model_bind(model, "fc.bias", big + 11, 3), GRADTAU_INVALID_ARGUMENT);
    check_last_error_mentions("overlaps");
    /* Rebinding a name replaces its buffer. */
    CHECK_OK(gradtau_model_bind(model, "fc.weight", w, 12));
    CHECK_OK(gradtau_model_bind(model, "fc.bias", big + 11, 3));

    /* A missing binding. */
    CHECK_OK(gradtau_model_unbind_all(model));
    CHECK_OK(gradtau_model_bind(model, "fc.weight", w, 12));
    CHECK_STATUS(gradtau_model_init_weights(model, 1), GRADTAU_BINDING);
    check_last_error_mentions("fc.bias");
    CHECK_OK(gradtau_model_bind(model, "fc.bias", b, 3));
    CHECK_OK(gradtau_model_init_weights(model, 1));
    CHECK_STATUS(gradtau_model_init_weights(NULL, 1), GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_model_unbind_all(NULL), GRADTAU_NULL_POINTER);

    /* Freeing NULL is a no-op, any number of times. */
    gradtau_model_free(NULL);
    gradtau_model_free(NULL);
    gradtau_model_free(model);
}

static void dataset_errors(void) {
    float x[8] = {0};
    size_t shape[2] = {2, 4};
    int32_t labels[2] = {0, 2};
    gradtau_dataset *sentinel = (gradtau_dataset *)&sentinel;
    gradtau_dataset *d = sentinel;
    CHECK_STATUS(gradtau_dataset_classes_new(NULL, 8, shape, 2, labels, 2, &d),
                 GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_dataset_classes_new(x, 8, NULL, 2, labels, 2, &d), GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_dataset_classes_new(x, 8, shape, 2, NULL, 2, &d), GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_dataset_classes_new(x, 8, shape, 2, labels, 2, NULL),
                 GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_dataset_classes_new(x, 7, shape, 2, labels, 2, &d), GRADTAU_SHAPE);
    CHECK_STATUS(gradtau_dataset_classes_new(x, 8, shape, 2, labels, 1, &d), GRADTAU_SHAPE);
    CHECK_STATUS(gradtau_dataset_classes_new(x, 8, shape, 0, labels, 2, &d),
                 GRADTAU_INVALID_ARGUMENT);
    size_t huge[2] = {SIZE_MAX / 2, 4};
    CHECK_STATUS(gradtau_dataset_classes_new(x, 8, huge, 2, labels, 2, &d),
                 GRADTAU_INVALID_ARGUMENT);
    check_last_error_mentions("overflows");
    int32_t negative[2] = {0, -1};
    CHECK_STATUS(gradtau_dataset_classes_new(x, 8, shape, 2, negative, 2, &d),
                 GRADTAU_INVALID_ARGUMENT);
    check_last_error_mentions("negative");
    CHECK(d == sentinel);

    /* Float targets. */
    float t[6] = {0};
    size_t tshape[2] = {2, 3}, tbad[2] = {3, 2};
    CHECK_OK(gradtau_dataset_values_new(x, 8, shape, 2, t, 6, tshape, 2, &d));
    int32_t out_labels[2] = {5, 5};
    CHECK_STATUS(gradtau_dataset_labels(d, out_labels, 2), GRADTAU_INVALID_ARGUMENT);
    CHECK(out_labels[0] == 5);
    gradtau_dataset_free(d);
    CHECK_STATUS(gradtau_dataset_values_new(x, 8, shape, 2, t, 6, tbad, 2, &d), GRADTAU_SHAPE);

    CHECK_OK(gradtau_dataset_classes_new(x, 8, shape, 2, labels, 2, &d));
    CHECK(gradtau_dataset_len(d) == 2 && gradtau_dataset_len(NULL) == 0);
    CHECK_STATUS(gradtau_dataset_labels(d, out_labels, 1), GRADTAU_SHAPE);
    CHECK_OK(gradtau_dataset_labels(d, out_labels, 2));
    CHECK(out_labels[0] == 0 && out_labels[1] == 2);
    size_t idx[3] = {1, 1, 2};
    gradtau_dataset *sub = sentinel;
    CHECK_STATUS(gradtau_dataset_subset(d, idx, 3, &sub), GRADTAU_INVALID_ARGUMENT);
    CHECK(sub == sentinel);
    CHECK_OK(gradtau_dataset_subset(d, idx, 2, &sub));
    CHECK(gradtau_dataset_len(sub) == 2);
    /* An empty subset: NULL with count 0 is an empty array. */
    gradtau_dataset *empty = NULL;
    CHECK_OK(gradtau_dataset_subset(d, NULL, 0, &empty));
    CHECK(gradtau_dataset_len(empty) == 0);
    gradtau_dataset_free(empty);
    gradtau_dataset_free(sub);
    gradtau_dataset_free(d);
    gradtau_dataset_free(NULL);
    gradtau_dataset_free(NULL);
    CHECK_STATUS(gradtau_digits_split(0, NULL, &d, &d), GRADTAU_NULL_POINTER);
}

static void run_errors(void) {
    host_model h = host_model_new(gradtau_digits_mlp_spec());
    CHECK_OK(gradtau_model_init_weights(h.model, 5));
    digits_sets d = digits_sets_new(60, -1);
    size_t total;
    float *before = host_model_snapshot(&h, &total);
    gradtau_unlearn_options opts;
    CHECK_OK(gradtau_unlearn_options_default(GRADTAU_METHOD_NABLA_TAU, &opts));
    opts.device = "cpu";
    gradtau_report *sentinel = (gradtau_report *)&sentinel;
    gradtau_report *report = sentinel;

    /* NULL handles and pointers. */
    CHECK_STATUS(gradtau_unlearn(NULL, d.forget, d.retain, d.val, &opts, NULL, NULL, &report),
                 GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_unlearn(h.model, NULL, d.retain, d.val, &opts, NULL, NULL, &report),
                 GRADTAU_NULL_POINTER);
    check_last_error_mentions("forget");
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, NULL, d.val, &opts, NULL, NULL, &report),
                 GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, NULL, &opts, NULL, NULL, &report),
                 GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_unlearn_options_default(GRADTAU_METHOD_NABLA_TAU, NULL),
                 GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_train_options_default(NULL), GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_train(h.model, NULL, NULL, NULL, NULL, NULL), GRADTAU_NULL_POINTER);
    gradtau_audit_row row;
    CHECK_STATUS(gradtau_audit(h.model, d.retain, d.forget, d.test, 0, NULL),
                 GRADTAU_NULL_POINTER);
    CHECK_STATUS(gradtau_audit(h.model, d.retain, NULL, d.test, 0, &row), GRADTAU_NULL_POINTER);

    /* Report getters on NULL. */
    CHECK(gradtau_report_method(NULL) == NULL && gradtau_report_steps(NULL) == 0);
    CHECK(gradtau_report_epochs(NULL) == 0 && isnan(gradtau_report_seconds(NULL)));
    CHECK(isnan(gradtau_report_lr(NULL)));
    CHECK(isnan(gradtau_report_final_alpha(NULL)) && isnan(gradtau_report_final_tau(NULL)));
    CHECK(gradtau_report_forget_stopped_at(NULL) == -1 && !gradtau_report_truncated(NULL));
    CHECK(gradtau_report_stop_reason(NULL) == -1);
    CHECK(strcmp(gradtau_stop_reason_name(-1), "GRADTAU_STOP_UNKNOWN") == 0);
    gradtau_report_free(NULL);
    gradtau_report_free(NULL);

    /* Bad options. */
    gradtau_unlearn_options bad = opts;
    bad.struct_size = sizeof bad - 8;
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &bad, NULL, NULL, &report),
                 GRADTAU_ABI_MISMATCH);
    bad = opts;
    bad.method = 42;
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &bad, NULL, NULL, &report),
                 GRADTAU_INVALID_ARGUMENT);
    CHECK_STATUS(gradtau_unlearn_options_default(42, &bad), GRADTAU_INVALID_ARGUMENT);
    bad = opts;
    bad.nabla_tau_mode = 7;
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &bad, NULL, NULL, &report),
                 GRADTAU_INVALID_ARGUMENT);
    bad = opts;
    bad.lr = -1.0f;
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &bad, NULL, NULL, &report),
                 GRADTAU_INVALID_ARGUMENT);
    bad = opts;
    bad.alpha0 = 2.0f;
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &bad, NULL, NULL, &report),
                 GRADTAU_INVALID_ARGUMENT);
    bad = opts;
    bad.alpha_max = 1.5f;
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &bad, NULL, NULL, &report),
                 GRADTAU_INVALID_ARGUMENT);
    CHECK(strstr(gradtau_last_error_message(), "alpha_max") != NULL);
    bad = opts;
    bad.device = "tpu";
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &bad, NULL, NULL, &report),
                 GRADTAU_INVALID_ARGUMENT);
    gradtau_train_options topts;
    CHECK_OK(gradtau_train_options_default(&topts));
    topts.optimizer = 9;
    CHECK_STATUS(gradtau_train(h.model, d.train, &topts, NULL, NULL, &report),
                 GRADTAU_INVALID_ARGUMENT);
    CHECK_OK(gradtau_train_options_default(&topts));
    topts.struct_size += 8;
    CHECK_STATUS(gradtau_train(h.model, d.train, &topts, NULL, NULL, &report),
                 GRADTAU_ABI_MISMATCH);
    CHECK(report == sentinel);
    CHECK(host_model_equals(&h, before));

    /* Data that does not fit the model: wrong sample shape, label out of range, NaN. */
    float x[2 * 5] = {0};
    size_t shape[2] = {2, 5};
    int32_t labels[2] = {0, 1};
    gradtau_dataset *wrong = NULL;
    CHECK_OK(gradtau_dataset_classes_new(x, 10, shape, 2, labels, 2, &wrong));
    CHECK_STATUS(gradtau_unlearn(h.model, wrong, d.retain, d.val, &opts, NULL, NULL, &report),
                 GRADTAU_SHAPE);
    check_last_error_mentions("forget");
    gradtau_dataset_free(wrong);
    float x64[2 * 64] = {0};
    size_t shape64[2] = {2, 64};
    int32_t out_of_range[2] = {0, 10};
    CHECK_OK(gradtau_dataset_classes_new(x64, 128, shape64, 2, out_of_range, 2, &wrong));
    CHECK_STATUS(gradtau_unlearn(h.model, wrong, d.retain, d.val, &opts, NULL, NULL, &report),
                 GRADTAU_INVALID_ARGUMENT);
    CHECK_STATUS(gradtau_audit(h.model, d.retain, wrong, d.test, 0, &row),
                 GRADTAU_INVALID_ARGUMENT);
    gradtau_dataset_free(wrong);
    x64[3] = NAN;
    CHECK_OK(gradtau_dataset_classes_new(x64, 128, shape64, 2, labels, 2, &wrong));
    CHECK_STATUS(gradtau_unlearn(h.model, wrong, d.retain, d.val, &opts, NULL, NULL, &report),
                 GRADTAU_NON_FINITE);
    gradtau_dataset_free(wrong);
    CHECK(host_model_equals(&h, before));

    /* NaN in a bound buffer. */
    float saved = h.buffers[1][0];
    h.buffers[1][0] = NAN;
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &opts, NULL, NULL, &report),
                 GRADTAU_NON_FINITE);
    check_last_error_mentions("0.bias");
    h.buffers[1][0] = saved;

    /* A missing binding: unbind everything, rebind all but one. */
    CHECK_OK(gradtau_model_unbind_all(h.model));
    for (size_t i = 0; i + 1 < h.count; i++) {
        gradtau_param_info info;
        CHECK_OK(gradtau_model_param(h.model, i, &info));
        CHECK_OK(gradtau_model_bind(h.model, info.name, h.buffers[i], h.lens[i]));
    }
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &opts, NULL, NULL, &report),
                 GRADTAU_BINDING);
    check_last_error_mentions("4.bias");
    CHECK_STATUS(gradtau_audit(h.model, d.retain, d.forget, d.test, 0, &row), GRADTAU_BINDING);
    CHECK_OK(gradtau_model_bind(h.model, "4.bias", h.buffers[h.count - 1], h.lens[h.count - 1]));
    CHECK(host_model_equals(&h, before));

    /* Cancel from the callback: the buffers stay bit-identical. */
    cancel_state cs = {0, 3, h.model, GRADTAU_OK};
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &opts, cancel_after, &cs,
                                 &report),
                 GRADTAU_CANCELLED);
    CHECK(cs.calls == 3 && report == sentinel);
    CHECK(host_model_equals(&h, before));
    cs.calls = 0;
    CHECK_STATUS(gradtau_train(h.model, d.train, NULL, cancel_after, &cs, &report),
                 GRADTAU_CANCELLED);
    CHECK(cs.calls == 3 && host_model_equals(&h, before));

    /* Re-entering the model from its own callback is refused with BUSY. */
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &opts, reenter, &cs, NULL),
                 GRADTAU_CANCELLED);
    CHECK(cs.reentrant == GRADTAU_BUSY);
    CHECK(host_model_equals(&h, before));

    /* keep_partial: a cancelled run writes the weights it reached. */
    opts.keep_partial = true;
    cs.calls = 0;
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &opts, cancel_after, &cs,
                                 &report),
                 GRADTAU_CANCELLED);
    CHECK(!host_model_equals(&h, before));
    opts.keep_partial = false;

    /* max_steps truncates and says so. Paper mode: adaptive mode may find nothing left to
     * forget after the partial run above and end before its first step. */
    opts.max_steps = 2;
    opts.nabla_tau_mode = GRADTAU_NABLA_TAU_MODE_PAPER;
    CHECK_OK(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &opts, NULL, NULL, &report));
    CHECK(report != sentinel && gradtau_report_steps(report) == 2);
    CHECK(gradtau_report_truncated(report));
    CHECK(gradtau_report_stop_reason(report) == GRADTAU_STOP_MAX_STEPS);
    CHECK(strcmp(gradtau_stop_reason_name(gradtau_report_stop_reason(report)),
                 "GRADTAU_STOP_MAX_STEPS") == 0);
    gradtau_report_free(report);
    opts.nabla_tau_mode = GRADTAU_NABLA_TAU_MODE_ADAPTIVE;

    /* Last-error messages are per thread and cleared by a success. */
    CHECK_STATUS(gradtau_model_param(NULL, 0, NULL), GRADTAU_NULL_POINTER);
    CHECK(strlen(gradtau_last_error_message()) > 0);
    CHECK_OK(gradtau_audit(h.model, d.retain, d.forget, d.test, 0, &row));
    CHECK(strcmp(gradtau_last_error_message(), "") == 0);

    free(before);
    digits_sets_free(&d);
    host_model_free(&h);
}

static void device_errors(void) {
#ifndef GRADTAU_TEST_HAS_CUDA
    host_model h = host_model_new(gradtau_digits_mlp_spec());
    CHECK_OK(gradtau_model_init_weights(h.model, 5));
    digits_sets d = digits_sets_new(60, -1);
    gradtau_unlearn_options opts;
    CHECK_OK(gradtau_unlearn_options_default(GRADTAU_METHOD_FINETUNE, &opts));
    opts.device = "cuda:0";
    CHECK_STATUS(gradtau_unlearn(h.model, d.forget, d.retain, d.val, &opts, NULL, NULL, NULL),
                 GRADTAU_DEVICE_UNAVAILABLE);
    digits_sets_free(&d);
    host_model_free(&h);
#endif
}

int main(void) {
    status_names();
    model_errors();
    dataset_errors();
    run_errors();
    device_errors();
    printf("test_errors: ok\n");
    return 0;
}
