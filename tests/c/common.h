/* Helpers shared by the C test programs: checks that report the failing line and the last
 * gradtau error, and a model with every parameter bound to host buffers. */
#ifndef GRADTAU_TEST_COMMON_H
#define GRADTAU_TEST_COMMON_H

#include <gradtau.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,     \
                    __LINE__, #cond, gradtau_last_error_message());                    \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

#define CHECK_STATUS(call, want)                                                        \
    do {                                                                                \
        gradtau_status got_ = (call);                                                   \
        if (got_ != (want)) {                                                           \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n",    \
                    __FILE__, __LINE__, #call, gradtau_status_name(got_),               \
                    gradtau_status_name(want), gradtau_last_error_message());           \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, GRADTAU_OK)

/* A model and one host-owned buffer per parameter, all bound. */
typedef struct host_model {
    gradtau_model *model;
    size_t count;
    float **buffers;
    size_t *lens;
} host_model;

static inline host_model host_model_new(const char *spec) {
    host_model h;
    memset(&h, 0, sizeof h);
    CHECK_OK(gradtau_model_new(spec, strlen(spec), &h.model));
    h.count = gradtau_model_param_count(h.model);
    CHECK(h.count > 0);
    h.buffers = calloc(h.count, sizeof *h.buffers);
    h.lens = calloc(h.count, sizeof *h.lens);
    CHECK(h.buffers && h.lens);
    for (size_t i = 0; i < h.count; i++) {
        gradtau_param_info info;
        CHECK_OK(gradtau_model_param(h.model, i, &info));
        h.lens[i] = info.numel;
        h.buffers[i] = calloc(info.numel, sizeof(float));
        CHECK(h.buffers[i]);
        CHECK_OK(gradtau_model_bind(h.model, info.name, h.buffers[i], info.numel));
    }
    return h;
}

static inline void host_model_free(host_model *h) {
    gradtau_model_free(h->model);
    for (size_t i = 0; i < h->count; i++) free(h->buffers[i]);
    free(h->buffers);
    free(h->lens);
    memset(h, 0, sizeof *h);
}

/* Copies every buffer into one flat array (caller frees) for bit-exact comparisons. */
static inline float *host_model_snapshot(const host_model *h, size_t *total_out) {
    size_t total = 0;
    for (size_t i = 0; i < h->count; i++) total += h->lens[i];
    float *out = malloc(total * sizeof(float));
    CHECK(out);
    size_t at = 0;
    for (size_t i = 0; i < h->count; i++) {
        memcpy(out + at, h->buffers[i], h->lens[i] * sizeof(float));
        at += h->lens[i];
    }
    *total_out = total;
    return out;
}

static inline int host_model_equals(const host_model *h, const float *snapshot) {
    size_t at = 0;
    for (size_t i = 0; i < h->count; i++) {
        if (memcmp(h->buffers[i], snapshot + at, h->lens[i] * sizeof(float)) != 0) return 0;
        at += h->lens[i];
    }
    return 1;
}

/* The digits splits. With `forget_class` < 0: forget = the first `n_forget` training
 * samples (the split is already shuffled), retain = the rest. Otherwise forget = every
 * training sample of that class (class removal), retain = the others. */
typedef struct digits_sets {
    gradtau_dataset *train, *val, *test, *forget, *retain;
} digits_sets;

static inline digits_sets digits_sets_new(size_t n_forget, int32_t forget_class) {
    digits_sets d;
    CHECK_OK(gradtau_digits_split(0, &d.train, &d.val, &d.test));
    size_t n = gradtau_dataset_len(d.train);
    CHECK(n > n_forget);
    size_t *idx = malloc(n * sizeof *idx);
    int32_t *labels = malloc(n * sizeof *labels);
    CHECK(idx && labels);
    CHECK_OK(gradtau_dataset_labels(d.train, labels, n));
    size_t front = 0, back = n;
    for (size_t i = 0; i < n; i++) {
        int forget = forget_class < 0 ? i < n_forget : labels[i] == forget_class;
        if (forget) idx[front++] = i;
        else idx[--back] = i;
    }
    CHECK(front > 0 && front == back);
    CHECK_OK(gradtau_dataset_subset(d.train, idx, front, &d.forget));
    CHECK_OK(gradtau_dataset_subset(d.train, idx + front, n - front, &d.retain));
    free(idx);
    free(labels);
    return d;
}

static inline void digits_sets_free(digits_sets *d) {
    gradtau_dataset_free(d->train);
    gradtau_dataset_free(d->val);
    gradtau_dataset_free(d->test);
    gradtau_dataset_free(d->forget);
    gradtau_dataset_free(d->retain);
}

#endif
