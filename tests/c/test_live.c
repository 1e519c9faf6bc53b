/* A model serves while it unlearns: reader threads predict on the handle during a run and
 * never get GRADTAU_BUSY or a mix of two models; a host engine that reads the bound buffers
 * itself publishes through the hook; the thread cap does not change the result; empty
 * batches are valid. Also run under ThreadSanitizer by scripts/test-native.sh. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>

enum { SAMPLES = 16, FEATURES = 64, CLASSES = 10 };

/* The first SAMPLES test inputs of the digits split, as a host would hold requests. */
static float *request_inputs(const digits_sets *d) {
    size_t n = gradtau_dataset_len(d->test);
    CHECK(n >= SAMPLES);
    const size_t *shape = NULL;
    size_t rank = 0;
    CHECK_OK(gradtau_dataset_sample_shape(d->test, &shape, &rank));
    CHECK(rank == 1 && shape[0] == FEATURES);
    float *all = malloc(n * FEATURES * sizeof(float));
    CHECK(all);
    CHECK_OK(gradtau_dataset_inputs(d->test, all, n * FEATURES));
    return all; /* the first SAMPLES rows are used */
}

static void trained(host_model *h, const digits_sets *d) {
    *h = host_model_new(gradtau_digits_mlp_spec());
    CHECK_OK(gradtau_model_init_weights(h->model, 5));
    gradtau_train_options t;
    CHECK_OK(gradtau_train_options_default(&t));
    t.epochs = 3;
    CHECK_OK(gradtau_train(h->model, d->train, &t, NULL, NULL, NULL));
}

static void unlearn_opts(gradtau_unlearn_options *o) {
    CHECK_OK(gradtau_unlearn_options_default(GRADTAU_METHOD_NABLA_TAU, o));
    o->nabla_tau_mode = GRADTAU_NABLA_TAU_MODE_PAPER; /* runs its planned steps */
    o->device = "cpu";
    o->seed = 3;
    o->epochs = 40; /* one forget batch per epoch on these sets: 40 steps */
}

typedef struct reader {
    const gradtau_model *model;
    const float *inputs;
    const float *before, *after; /* after is filled once the run returned */
    atomic_int *stop;
    long predictions, busy, errors, matched_before, matched_after, torn;
    float *seen; /* results kept to compare with `after` once it is known */
    size_t seen_cap, seen_len;
} reader;

static void *read_loop(void *arg) {
    reader *r = arg;
    float out[SAMPLES * CLASSES];
    while (!atomic_load(r->stop)) {
        gradtau_status s = gradtau_model_infer(r->model, r->inputs, SAMPLES * FEATURES, SAMPLES,
                                               GRADTAU_OUTPUT_RAW, out, SAMPLES * CLASSES);
        r->predictions++;
        if (s == GRADTAU_BUSY) {
            r->busy++;
            continue;
        }
        if (s != GRADTAU_OK) {
            r->errors++;
            continue;
        }
        if (memcmp(out, r->before, sizeof out) == 0) {
            r->matched_before++;
        } else if (r->seen_len < r->seen_cap) {
            memcpy(r->seen + r->seen_len * SAMPLES * CLASSES, out, sizeof out);
            r->seen_len++;
        }
    }
    return NULL;
}

static void readers_never_wait_and_never_see_a_mix(const digits_sets *d) {
    host_model h;
    trained(&h, d);
    float *inputs = request_inputs(d);
    float before[SAMPLES * CLASSES], after[SAMPLES * CLASSES];
    CHECK_OK(gradtau_model_infer(h.model, inputs, SAMPLES * FEATURES, SAMPLES,
                                 GRADTAU_OUTPUT_RAW, before, SAMPLES * CLASSES));
    atomic_int stop;
    atomic_init(&stop, 0);
    enum { READERS = 2, KEEP = 4096 };
    reader r[READERS];
    pthread_t t[READERS];
    for (int i = 0; i < READERS; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].model = h.model;
        r[i].inputs = inputs;
        r[i].before = before;
        r[i].stop = &stop;
        r[i].seen_cap = KEEP;
        r[i].seen = malloc(KEEP * sizeof(float) * SAMPLES * CLASSES);
        CHECK(r[i].seen);
        CHECK(pthread_create(&t[i], NULL, read_loop, &r[i]) == 0);
    }
    gradtau_unlearn_options o;
    unlearn_opts(&o);
    gradtau_report *report = NULL;
    CHECK_OK(gradtau_unlearn(h.model, d->forget, d->retain, d->val, &o, NULL, NULL, &report));
    CHECK(gradtau_report_steps(report) == 40);
    gradtau_report_free(report);
    /* Let the readers see the new model for a moment, then stop them. */
    CHECK_OK(gradtau_model_infer(h.model, inputs, SAMPLES * FEATURES, SAMPLES,
                                 GRADTAU_OUTPUT_RAW, after, SAMPLES * CLASSES));
    CHECK(memcmp(before, after, sizeof before) != 0);
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_store(&stop, 1);
    long total = 0, before_n = 0, after_n = 0;
    for (int i = 0; i < READERS; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
        CHECK(r[i].busy == 0 && r[i].errors == 0);
        CHECK(r[i].seen_len < r[i].seen_cap); /* every result was kept or matched */
        for (size_t k = 0; k < r[i].seen_len; k++) {
            /* Anything not equal to the model before must be the model after, bit for bit. */
            CHECK(memcmp(r[i].seen + k * SAMPLES * CLASSES, after, sizeof after) == 0);
        }
        total += r[i].predictions;
        before_n += r[i].matched_before;
        after_n += (long)r[i].seen_len;
        free(r[i].seen);
    }
    /* Reads went on during the run (the run takes far longer than one prediction). */
    CHECK(before_n > 0 && after_n > 0);
    printf("  %ld predictions during and after the run: %ld old model, %ld new, 0 busy, 0 torn\n",
           total, before_n, after_n);

    /* The same run on an idle model gives the same weights. */
    host_model alone;
    trained(&alone, d);
    CHECK_OK(gradtau_unlearn(alone.model, d->forget, d->retain, d->val, &o, NULL, NULL, NULL));
    size_t n;
    float *w = host_model_snapshot(&alone, &n);
    CHECK(host_model_equals(&h, w));
    free(w);
    host_model_free(&alone);
    free(inputs);
    host_model_free(&h);
}

/* A host engine that reads the bound buffers itself, under its own lock. */
typedef struct engine {
    pthread_rwlock_t lock;
    host_model *h;
    atomic_int stop;
    double sum_before, sum_after;
    long reads, old_reads, new_reads, mixed;
    int begins, ends;
} engine;

static double buffers_sum(const host_model *h) {
    double s = 0;
    for (size_t i = 0; i < h->count; i++)
        for (size_t k = 0; k < h->lens[i]; k++) s += h->buffers[i][k] * (double)(k % 7 + 1);
    return s;
}

static int32_t engine_publish(gradtau_publish_phase phase, void *user_data) {
    engine *e = user_data;
    if (phase == GRADTAU_PUBLISH_BEGIN) {
        CHECK(pthread_rwlock_wrlock(&e->lock) == 0);
        e->begins++;
    } else {
        e->ends++;
        CHECK(pthread_rwlock_unlock(&e->lock) == 0);
    }
    return 0;
}

static void *engine_reads(void *arg) {
    engine *e = arg;
    while (!atomic_load(&e->stop)) {
        CHECK(pthread_rwlock_rdlock(&e->lock) == 0);
        double s = buffers_sum(e->h);
        CHECK(pthread_rwlock_unlock(&e->lock) == 0);
        e->reads++;
        if (s == e->sum_before) e->old_reads++;
        else if (s == e->sum_after) e->new_reads++;
        else e->mixed++;
    }
    return NULL;
}

static void a_host_engine_publishes_through_the_hook(const digits_sets *d) {
    host_model h;
    trained(&h, d);
    engine e;
    memset(&e, 0, sizeof e);
    CHECK(pthread_rwlock_init(&e.lock, NULL) == 0);
    e.h = &h;
    atomic_init(&e.stop, 0);
    e.sum_before = buffers_sum(&h);
    /* The result the run will publish, from an identical model, so that the engine can tell
     * the new weights from a mix while the run is still going. */
    host_model twin;
    trained(&twin, d);
    gradtau_unlearn_options o;
    unlearn_opts(&o);
    o.epochs = 10;
    CHECK_OK(gradtau_unlearn(twin.model, d->forget, d->retain, d->val, &o, NULL, NULL, NULL));
    e.sum_after = buffers_sum(&twin);
    CHECK(e.sum_after != e.sum_before);

    CHECK_OK(gradtau_model_set_publish_hook(h.model, engine_publish, &e));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, engine_reads, &e) == 0);
    CHECK_OK(gradtau_unlearn(h.model, d->forget, d->retain, d->val, &o, NULL, NULL, NULL));
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_store(&e.stop, 1);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(e.begins == 1 && e.ends == 1);
    /* Never a model that is neither the old one nor the new one. */
    CHECK(e.mixed == 0 && e.old_reads > 0 && e.new_reads > 0);
    size_t n;
    float *w = host_model_snapshot(&twin, &n);
    CHECK(host_model_equals(&h, w));
    free(w);
    /* Removing the hook: later publishes happen without it. */
    CHECK_OK(gradtau_model_set_publish_hook(h.model, NULL, NULL));
    CHECK_OK(gradtau_model_init_weights(h.model, 2));
    CHECK(e.begins == 1);
    host_model_free(&twin);
    CHECK(pthread_rwlock_destroy(&e.lock) == 0);
    host_model_free(&h);
}

static int32_t refuse(gradtau_publish_phase phase, void *user_data) {
    int *calls = user_data;
    (*calls)++;
    return phase == GRADTAU_PUBLISH_BEGIN ? 1 : 0;
}

static void a_refusing_hook_keeps_the_old_weights(const digits_sets *d) {
    host_model h;
    trained(&h, d);
    size_t n;
    float *before = host_model_snapshot(&h, &n);
    int calls = 0;
    CHECK_OK(gradtau_model_set_publish_hook(h.model, refuse, &calls));
    gradtau_unlearn_options o;
    unlearn_opts(&o);
    o.epochs = 3;
    CHECK_STATUS(gradtau_unlearn(h.model, d->forget, d->retain, d->val, &o, NULL, NULL, NULL),
                 GRADTAU_CANCELLED);
    CHECK(calls == 1 && host_model_equals(&h, before));
    CHECK_STATUS(gradtau_model_init_weights(h.model, 1), GRADTAU_CANCELLED);
    CHECK(calls == 2 && host_model_equals(&h, before));
    free(before);
    host_model_free(&h);
}

static void the_thread_cap_keeps_the_result(const digits_sets *d) {
    host_model a, b;
    trained(&a, d);
    trained(&b, d);
    CHECK(gradtau_model_threads(b.model) == 0);
    CHECK_OK(gradtau_model_set_threads(b.model, 1));
    CHECK(gradtau_model_threads(b.model) == 1);
    gradtau_unlearn_options o;
    unlearn_opts(&o);
    o.epochs = 10;
    CHECK_OK(gradtau_unlearn(a.model, d->forget, d->retain, d->val, &o, NULL, NULL, NULL));
    CHECK_OK(gradtau_unlearn(b.model, d->forget, d->retain, d->val, &o, NULL, NULL, NULL));
    size_t n;
    float *wa = host_model_snapshot(&a, &n);
    CHECK(host_model_equals(&b, wa));
    free(wa);
    host_model_free(&a);
    host_model_free(&b);
}

static void labels_free_calls_and_empty_batches(const digits_sets *d) {
    host_model h;
    trained(&h, d);
    float *inputs = request_inputs(d);
    float logits[SAMPLES * CLASSES], probs[SAMPLES * CLASSES];
    int32_t classes[SAMPLES];
    CHECK_OK(gradtau_model_infer(h.model, inputs, SAMPLES * FEATURES, SAMPLES,
                                 GRADTAU_OUTPUT_RAW, logits, SAMPLES * CLASSES));
    CHECK_OK(gradtau_model_infer(h.model, inputs, SAMPLES * FEATURES, SAMPLES,
                                 GRADTAU_OUTPUT_PROBABILITIES, probs, SAMPLES * CLASSES));
    CHECK_OK(gradtau_model_classify(h.model, inputs, SAMPLES * FEATURES, SAMPLES, classes,
                                    SAMPLES));
    /* The labelled path gives the same logits. */
    size_t n = gradtau_dataset_len(d->test);
    float *via_dataset = malloc(n * CLASSES * sizeof(float));
    CHECK(via_dataset);
    CHECK_OK(gradtau_predict(h.model, d->test, via_dataset, n * CLASSES));
    CHECK(memcmp(via_dataset, logits, sizeof logits) == 0);
    free(via_dataset);
    for (int i = 0; i < SAMPLES; i++) {
        float sum = 0;
        int best = 0;
        for (int c = 0; c < CLASSES; c++) {
            sum += probs[i * CLASSES + c];
            if (logits[i * CLASSES + c] > logits[i * CLASSES + best]) best = c;
        }
        CHECK(fabsf(sum - 1.0f) < 1e-5f);
        CHECK(classes[i] == best);
    }
    /* Empty batches: NULL with a count of 0 is fine and writes nothing. */
    CHECK_OK(gradtau_model_infer(h.model, NULL, 0, 0, GRADTAU_OUTPUT_RAW, NULL, 0));
    CHECK_OK(gradtau_model_classify(h.model, NULL, 0, 0, NULL, 0));
    /* Bad arguments name what is wrong and write nothing. */
    float keep[SAMPLES * CLASSES];
    memcpy(keep, logits, sizeof keep);
    CHECK_STATUS(gradtau_model_infer(h.model, inputs, SAMPLES * FEATURES - 1, SAMPLES,
                                     GRADTAU_OUTPUT_RAW, logits, SAMPLES * CLASSES),
                 GRADTAU_SHAPE);
    CHECK(strstr(gradtau_last_error_message(), "inputs_len") != NULL);
    CHECK_STATUS(gradtau_model_infer(h.model, inputs, SAMPLES * FEATURES, SAMPLES,
                                     GRADTAU_OUTPUT_RAW, logits, SAMPLES * CLASSES - 1),
                 GRADTAU_SHAPE);
    CHECK_STATUS(gradtau_model_infer(h.model, inputs, SAMPLES * FEATURES, SAMPLES, 7, logits,
                                     SAMPLES * CLASSES),
                 GRADTAU_INVALID_ARGUMENT);
    CHECK_STATUS(gradtau_model_infer(h.model, NULL, SAMPLES * FEATURES, SAMPLES,
                                     GRADTAU_OUTPUT_RAW, logits, SAMPLES * CLASSES),
                 GRADTAU_NULL_POINTER);
    inputs[3] = NAN;
    CHECK_STATUS(gradtau_model_classify(h.model, inputs, SAMPLES * FEATURES, SAMPLES, classes,
                                        SAMPLES),
                 GRADTAU_NON_FINITE);
    CHECK(memcmp(keep, logits, sizeof keep) == 0);
    free(inputs);
    host_model_free(&h);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    CHECK(f);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    CHECK(n > 0 && fseek(f, 0, SEEK_SET) == 0);
    char *text = malloc((size_t)n + 1);
    CHECK(text && fread(text, 1, (size_t)n, f) == (size_t)n);
    text[n] = 0;
    fclose(f);
    return text;
}

/* A host reads its data set from files through the library (Fashion-MNIST's IDX files as
 * Debian ships them), and bad paths are statuses that name the file. */
static void data_sets_load_from_files(void) {
    const char *images = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *labels = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    char *spec = read_text("data/specs/fashion_mlp.json");
    gradtau_model *m = NULL;
    CHECK_OK(gradtau_model_new(spec, strlen(spec), &m));
    free(spec);
    gradtau_dataset *d = NULL;
    CHECK_STATUS(gradtau_dataset_load(m, "/nonexistent/x.npy", labels, &d), GRADTAU_IO);
    CHECK(strstr(gradtau_last_error_message(), "/nonexistent/x.npy") != NULL && d == NULL);
    FILE *probe = fopen(images, "rb");
    if (!probe) {
        printf("  SKIPPED Fashion-MNIST load: %s not installed (apt-get install dataset-fashion-mnist)\n",
               images);
    } else {
        fclose(probe);
        CHECK_OK(gradtau_dataset_load(m, images, labels, &d));
        CHECK(gradtau_dataset_len(d) == 10000);
        int32_t first[4];
        gradtau_dataset *head = NULL;
        size_t idx[4] = {0, 1, 2, 3};
        CHECK_OK(gradtau_dataset_subset(d, idx, 4, &head));
        CHECK_OK(gradtau_dataset_labels(head, first, 4));
        /* The first t10k labels of Fashion-MNIST: ankle boot, pullover, trouser, trouser. */
        CHECK(first[0] == 9 && first[1] == 2 && first[2] == 1 && first[3] == 1);
        gradtau_dataset_free(head);
        gradtau_dataset_free(d);
        /* Inputs and labels from different sets do not pair up. */
        CHECK_STATUS(gradtau_dataset_load(m, images,
                                          "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
                                          &d),
                     GRADTAU_SHAPE);
    }
    gradtau_model_free(m);
}

int main(void) {
    data_sets_load_from_files();
    digits_sets d = digits_sets_new(120, -1);
    labels_free_calls_and_empty_batches(&d);
    readers_never_wait_and_never_see_a_mix(&d);
    a_host_engine_publishes_through_the_hook(&d);
    a_refusing_hook_keeps_the_old_weights(&d);
    the_thread_cap_keeps_the_result(&d);
    digits_sets_free(&d);
    printf("test_live: ok\n");
    return 0;
}
