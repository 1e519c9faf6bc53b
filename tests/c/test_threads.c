/* Threads: two models unlearned at the same time give the same weights as one after the
 * other; a second writer on a model that is busy gets GRADTAU_BUSY, not a data race, while
 * reads go on and see the weights from before the run. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

typedef struct job {
    host_model *h;
    const digits_sets *d;
    uint64_t seed;
    gradtau_status status;
} job;

static void run_job(job *j) {
    gradtau_unlearn_options opts;
    CHECK_OK(gradtau_unlearn_options_default(GRADTAU_METHOD_NABLA_TAU, &opts));
    opts.seed = j->seed;
    opts.device = "cpu";
    opts.max_steps = 12;
    j->status = gradtau_unlearn(j->h->model, j->d->forget, j->d->retain, j->d->val, &opts, NULL,
                                NULL, NULL);
}

static void *job_thread(void *arg) {
    run_job(arg);
    return NULL;
}

static void prepare(host_model *h, uint64_t seed) {
    *h = host_model_new(gradtau_digits_mlp_spec());
    CHECK_OK(gradtau_model_init_weights(h->model, seed));
}

static void same_weights_in_parallel(const digits_sets *d) {
    host_model a, b;
    prepare(&a, 1);
    prepare(&b, 2);
    job ja = {&a, d, 11, GRADTAU_PANIC}, jb = {&b, d, 22, GRADTAU_PANIC};
    run_job(&ja);
    run_job(&jb);
    CHECK(ja.status == GRADTAU_OK && jb.status == GRADTAU_OK);
    size_t total;
    float *seq_a = host_model_snapshot(&a, &total);
    float *seq_b = host_model_snapshot(&b, &total);
    host_model_free(&a);
    host_model_free(&b);

    prepare(&a, 1);
    prepare(&b, 2);
    ja.status = jb.status = GRADTAU_PANIC;
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, job_thread, &ja) == 0);
    CHECK(pthread_create(&tb, NULL, job_thread, &jb) == 0);
    CHECK(pthread_join(ta, NULL) == 0 && pthread_join(tb, NULL) == 0);
    CHECK(ja.status == GRADTAU_OK && jb.status == GRADTAU_OK);
    CHECK(host_model_equals(&a, seq_a));
    CHECK(host_model_equals(&b, seq_b));
    CHECK(!host_model_equals(&a, seq_b));
    free(seq_a);
    free(seq_b);
    host_model_free(&a);
    host_model_free(&b);
}

typedef struct gate {
    atomic_int inside;
    atomic_int release;
} gate;

/* Parks the run inside its first progress callback until the main thread releases it. */
static int32_t park(const gradtau_progress *p, void *user_data) {
    gate *g = user_data;
    (void)p;
    atomic_store(&g->inside, 1);
    while (!atomic_load(&g->release)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

typedef struct parked_job {
    host_model *h;
    const digits_sets *d;
    gate *g;
    gradtau_status status;
} parked_job;

static void *parked_thread(void *arg) {
    parked_job *j = arg;
    gradtau_unlearn_options opts;
    CHECK_OK(gradtau_unlearn_options_default(GRADTAU_METHOD_NABLA_TAU, &opts));
    opts.device = "cpu";
    opts.max_steps = 3;
    j->status = gradtau_unlearn(j->h->model, j->d->forget, j->d->retain, j->d->val, &opts, park,
                                j->g, NULL);
    return NULL;
}

static void busy_model(const digits_sets *d) {
    host_model h;
    prepare(&h, 3);
    size_t total;
    float *before = host_model_snapshot(&h, &total);
    gate g;
    atomic_init(&g.inside, 0);
    atomic_init(&g.release, 0);
    parked_job j = {&h, d, &g, GRADTAU_PANIC};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, parked_thread, &j) == 0);
    while (!atomic_load(&g.inside)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    /* The model is mid-run on the other thread. */
    gradtau_report *report = NULL;
    CHECK_STATUS(gradtau_unlearn(h.model, d->forget, d->retain, d->val, NULL, NULL, NULL, &report),
                 GRADTAU_BUSY);
    CHECK(report == NULL);
    CHECK(strstr(gradtau_last_error_message(), "in progress") != NULL);
    CHECK_STATUS(gradtau_model_bind(h.model, "0.bias", h.buffers[1], h.lens[1]), GRADTAU_BUSY);
    CHECK_STATUS(gradtau_model_init_weights(h.model, 4), GRADTAU_BUSY);
    CHECK_STATUS(gradtau_model_unbind_all(h.model), GRADTAU_BUSY);
    CHECK_STATUS(gradtau_model_set_publish_hook(h.model, NULL, NULL), GRADTAU_BUSY);
    CHECK(host_model_equals(&h, before));
    /* Reads are fine while the model is busy, and see the weights from before the run. */
    gradtau_audit_row row, row_before;
    CHECK_OK(gradtau_audit(h.model, d->retain, d->forget, d->test, 0, &row_before));
    size_t n_test = gradtau_dataset_len(d->test);
    float *logits = malloc(n_test * 10 * sizeof(float));
    CHECK(logits);
    CHECK_OK(gradtau_predict(h.model, d->test, logits, n_test * 10));
    free(logits);
    /* Const queries are fine while the model is busy. */
    gradtau_param_info info;
    CHECK_OK(gradtau_model_param(h.model, 1, &info));
    CHECK(gradtau_model_param_count(h.model) == 6 && info.numel == 128);
    atomic_store(&g.release, 1);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(j.status == GRADTAU_OK);
    CHECK(!host_model_equals(&h, before));
    /* And the model is usable again, with the new weights. */
    CHECK_OK(gradtau_audit(h.model, d->retain, d->forget, d->test, 0, &row));
    CHECK(memcmp(&row, &row_before, sizeof row) != 0);
    free(before);
    host_model_free(&h);
}

int main(void) {
    digits_sets d = digits_sets_new(120, -1);
    same_weights_in_parallel(&d);
    busy_model(&d);
    digits_sets_free(&d);
    printf("test_threads: ok\n");
    return 0;
}
