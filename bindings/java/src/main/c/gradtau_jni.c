/*
 * gradtau_jni.c - JNI glue between dev.gradtau.Native and the gradtau C ABI.
 *
 * Kept out of the Rust library on purpose: libgradtau.so exports only gradtau_ symbols, and
 * this file is the only place that knows about the JVM. The Java side validates arguments
 * (nulls, closed handles, negative sizes, heap buffers) before calling in; this side still
 * checks every reference it dereferences, so a bug in the Java layer becomes an exception,
 * never a crash.
 *
 * Conventions here:
 * - Every gradtau status other than GRADTAU_OK becomes a pending dev.gradtau.GradtauException
 *   (status + gradtau_last_error_message(), read on this thread before any other gradtau
 *   call); the native method then returns a dummy value that Java never sees.
 * - Strings cross as NUL-terminated UTF-8 byte arrays (Java's String.getBytes(UTF_8) plus a
 *   0), not through GetStringUTFChars, whose "modified UTF-8" differs from UTF-8.
 * - The progress trampoline calls back into Java on the calling thread; an exception thrown
 *   there is stashed, the run is cancelled, and the exception is rethrown as is.
 */
#include <gradtau.h>
#include <jni.h>
#include <math.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The options structs, described field by field for Java (see OptionsStruct.java): the table
 * itself is generated from include/gradtau.h into gradtau_jni_options.h, so no field is
 * listed by hand here. */
typedef struct jni_option_field {
    const char *name;
    const char *kind; /* "i32", "f32", "bool", "size", "u64" or "string" (const char *) */
    size_t offset;
    size_t size;
} jni_option_field;

typedef struct jni_options_struct {
    const char *name; /* "gradtau_unlearn_options" */
    size_t size;
    const jni_option_field *fields;
    size_t count;
    gradtau_status (*fill_default)(int32_t arg, void *out);
} jni_options_struct;

#define JNI_OPTION_FIELD(type, field, kind) \
    {#field, kind, offsetof(type, field), sizeof(((type *)0)->field)}

#include "gradtau_jni_options.h"

static struct {
    jclass string;
    jmethodID string_from_bytes; /* String(byte[], String charsetName) */
    jstring utf8_name;
    jclass gradtau_exception;
    jmethodID gradtau_exception_init; /* (int, String) */
    jclass null_pointer;
    jclass illegal_argument;
    jclass out_of_memory;
    jclass report;
    jmethodID report_init;
    jclass param_info;
    jmethodID param_info_init;
    jclass native;
    jmethodID dispatch_progress;
    jclass option_field;
    jmethodID option_field_init;
} J;

static jclass global_class(JNIEnv *env, const char *name) {
    jclass local = (*env)->FindClass(env, name);
    if (local == NULL) return NULL;
    jclass global = (*env)->NewGlobalRef(env, local);
    (*env)->DeleteLocalRef(env, local);
    return global;
}

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM *vm, void *reserved) {
    (void)reserved;
    JNIEnv *env = NULL;
    if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_8) != JNI_OK) return JNI_ERR;
#define NEED(expr)                      \
    do {                                \
        if ((expr) == NULL) return JNI_ERR; \
    } while (0)
    NEED(J.string = global_class(env, "java/lang/String"));
    NEED(J.string_from_bytes =
             (*env)->GetMethodID(env, J.string, "<init>", "([BLjava/lang/String;)V"));
    jstring utf8 = (*env)->NewStringUTF(env, "UTF-8");
    NEED(utf8);
    NEED(J.utf8_name = (*env)->NewGlobalRef(env, utf8));
    (*env)->DeleteLocalRef(env, utf8);
    NEED(J.gradtau_exception = global_class(env, "dev/gradtau/GradtauException"));
    NEED(J.gradtau_exception_init = (*env)->GetMethodID(env, J.gradtau_exception, "<init>",
                                                        "(ILjava/lang/String;)V"));
    NEED(J.null_pointer = global_class(env, "java/lang/NullPointerException"));
    NEED(J.illegal_argument = global_class(env, "java/lang/IllegalArgumentException"));
    NEED(J.out_of_memory = global_class(env, "java/lang/OutOfMemoryError"));
    NEED(J.report = global_class(env, "dev/gradtau/Report"));
    NEED(J.report_init = (*env)->GetMethodID(env, J.report, "<init>",
                                             "(Ljava/lang/String;JJDFFFJZI)V"));
    NEED(J.param_info = global_class(env, "dev/gradtau/ParamInfo"));
    NEED(J.param_info_init = (*env)->GetMethodID(env, J.param_info, "<init>",
                                                 "(Ljava/lang/String;[JJZ)V"));
    NEED(J.native = global_class(env, "dev/gradtau/Native"));
    NEED(J.dispatch_progress = (*env)->GetStaticMethodID(
             env, J.native, "dispatchProgress",
             "(Ldev/gradtau/Progress;Ljava/lang/String;JJJJFFFFF)Z"));
    NEED(J.option_field = global_class(env, "dev/gradtau/OptionsStruct$Field"));
    NEED(J.option_field_init = (*env)->GetMethodID(env, J.option_field, "<init>",
                                                   "(Ljava/lang/String;Ljava/lang/String;JJ)V"));
#undef NEED
    return JNI_VERSION_1_8;
}

/* A Java String from NUL-terminated UTF-8; NULL (with an exception pending) on failure. */
static jstring utf8_string(JNIEnv *env, const char *s) {
    if (s == NULL) return NULL;
    size_t n = strlen(s);
    if (n > INT32_MAX) {
        (*env)->ThrowNew(env, J.illegal_argument, "string too long for Java");
        return NULL;
    }
    jbyteArray bytes = (*env)->NewByteArray(env, (jsize)n);
    if (bytes == NULL) return NULL;
    (*env)->SetByteArrayRegion(env, bytes, 0, (jsize)n, (const jbyte *)s);
    jstring str = (*env)->NewObject(env, J.string, J.string_from_bytes, bytes, J.utf8_name);
    (*env)->DeleteLocalRef(env, bytes);
    return str;
}

/* Turns a failed status into a pending GradtauException. Returns 1 if it threw. */
static int check(JNIEnv *env, gradtau_status status) {
    if (status == GRADTAU_OK) return 0;
    /* Copy the message first: it lives only until the next gradtau call on this thread. */
    jstring message = utf8_string(env, gradtau_last_error_message());
    if (message == NULL) return 1; /* OutOfMemoryError already pending */
    jobject ex = (*env)->NewObject(env, J.gradtau_exception, J.gradtau_exception_init,
                                   (jint)status, message);
    (*env)->DeleteLocalRef(env, message);
    if (ex == NULL) return 1;
    (*env)->Throw(env, (jthrowable)ex);
    (*env)->DeleteLocalRef(env, ex);
    return 1;
}

static int require(JNIEnv *env, const void *p, const char *what) {
    if (p != NULL) return 0;
    (*env)->ThrowNew(env, J.null_pointer, what);
    return 1;
}

/* A NUL-terminated byte[] (as the Java side builds them) as a malloc'd C string. */
static char *c_string(JNIEnv *env, jbyteArray bytes, const char *what) {
    if (require(env, bytes, what)) return NULL;
    jsize n = (*env)->GetArrayLength(env, bytes);
    char *s = malloc((size_t)n + 1);
    if (s == NULL) {
        (*env)->ThrowNew(env, J.out_of_memory, "gradtau_jni: malloc");
        return NULL;
    }
    (*env)->GetByteArrayRegion(env, bytes, 0, n, (jbyte *)s);
    s[n] = '\0';
    return s;
}

/* long[] -> size_t[] (malloc'd; NULL with an exception pending on failure). `*len_out` gets
 * the length. An empty array gives a non-NULL pointer so that "absent" stays distinct. */
static size_t *sizes(JNIEnv *env, jlongArray array, size_t *len_out, const char *what) {
    if (require(env, array, what)) return NULL;
    jsize n = (*env)->GetArrayLength(env, array);
    size_t *out = malloc(((size_t)n + 1) * sizeof *out);
    jlong *tmp = malloc(((size_t)n + 1) * sizeof *tmp);
    if (out == NULL || tmp == NULL) {
        free(out);
        free(tmp);
        (*env)->ThrowNew(env, J.out_of_memory, "gradtau_jni: malloc");
        return NULL;
    }
    (*env)->GetLongArrayRegion(env, array, 0, n, tmp);
    for (jsize i = 0; i < n; i++) {
        if (tmp[i] < 0) {
            free(out);
            free(tmp);
            (*env)->ThrowNew(env, J.illegal_argument, "negative size or index");
            return NULL;
        }
        out[i] = (size_t)tmp[i];
    }
    free(tmp);
    *len_out = (size_t)n;
    return out;
}

static jlongArray long_array(JNIEnv *env, const size_t *values, size_t n) {
    jlongArray out = (*env)->NewLongArray(env, (jsize)n);
    if (out == NULL) return NULL;
    for (size_t i = 0; i < n; i++) {
        jlong v = (jlong)values[i];
        (*env)->SetLongArrayRegion(env, out, (jsize)i, 1, &v);
    }
    return out;
}

#define MODEL(h) ((gradtau_model *)(intptr_t)(h))
#define DATASET(h) ((gradtau_dataset *)(intptr_t)(h))
#define HANDLE(p) ((jlong)(intptr_t)(p))

/* ---- library ------------------------------------------------------------------------- */

JNIEXPORT jint JNICALL Java_dev_gradtau_Native_abiVersion(JNIEnv *env, jclass cls) {
    (void)env;
    (void)cls;
    return (jint)gradtau_abi_version();
}

JNIEXPORT jint JNICALL Java_dev_gradtau_Native_headerAbiVersion(JNIEnv *env, jclass cls) {
    (void)env;
    (void)cls;
    return GRADTAU_ABI_VERSION;
}

JNIEXPORT jstring JNICALL Java_dev_gradtau_Native_version(JNIEnv *env, jclass cls) {
    (void)cls;
    return utf8_string(env, gradtau_version());
}

JNIEXPORT jstring JNICALL Java_dev_gradtau_Native_statusName(JNIEnv *env, jclass cls,
                                                             jint status) {
    (void)cls;
    return utf8_string(env, gradtau_status_name(status));
}

JNIEXPORT jstring JNICALL Java_dev_gradtau_Native_stopReasonName(JNIEnv *env, jclass cls,
                                                                 jint reason) {
    (void)cls;
    return utf8_string(env, gradtau_stop_reason_name(reason));
}

/* ---- data sets ----------------------------------------------------------------------- */

/* The arrays are pinned (or copied by the JVM) only while gradtau copies them once into its
 * own memory; gradtau_dataset_*_new never calls back into the JVM, so a critical region is
 * allowed here. */
JNIEXPORT jlong JNICALL Java_dev_gradtau_Native_datasetClassesNew(JNIEnv *env, jclass cls,
                                                                  jfloatArray inputs,
                                                                  jlongArray shape,
                                                                  jintArray labels) {
    (void)cls;
    if (require(env, inputs, "inputs") || require(env, labels, "labels")) return 0;
    size_t rank = 0;
    size_t *dims = sizes(env, shape, &rank, "shape");
    if (dims == NULL) return 0;
    jsize n_inputs = (*env)->GetArrayLength(env, inputs);
    jsize n_labels = (*env)->GetArrayLength(env, labels);
    gradtau_dataset *d = NULL;
    gradtau_status s = GRADTAU_PANIC;
    float *x = (*env)->GetPrimitiveArrayCritical(env, inputs, NULL);
    int32_t *y = x ? (*env)->GetPrimitiveArrayCritical(env, labels, NULL) : NULL;
    if (x != NULL && y != NULL)
        s = gradtau_dataset_classes_new(x, (size_t)n_inputs, dims, rank, y, (size_t)n_labels, &d);
    if (y != NULL) (*env)->ReleasePrimitiveArrayCritical(env, labels, y, JNI_ABORT);
    if (x != NULL) (*env)->ReleasePrimitiveArrayCritical(env, inputs, x, JNI_ABORT);
    free(dims);
    if (x == NULL || y == NULL) {
        if (!(*env)->ExceptionCheck(env))
            (*env)->ThrowNew(env, J.out_of_memory, "gradtau_jni: cannot pin an array");
        return 0;
    }
    return check(env, s) ? 0 : HANDLE(d);
}

JNIEXPORT jlong JNICALL Java_dev_gradtau_Native_datasetValuesNew(JNIEnv *env, jclass cls,
                                                                 jfloatArray inputs,
                                                                 jlongArray shape,
                                                                 jfloatArray targets,
                                                                 jlongArray target_shape) {
    (void)cls;
    if (require(env, inputs, "inputs") || require(env, targets, "targets")) return 0;
    size_t rank = 0, target_rank = 0;
    size_t *dims = sizes(env, shape, &rank, "shape");
    if (dims == NULL) return 0;
    size_t *target_dims = sizes(env, target_shape, &target_rank, "targetShape");
    if (target_dims == NULL) {
        free(dims);
        return 0;
    }
    jsize n_inputs = (*env)->GetArrayLength(env, inputs);
    jsize n_targets = (*env)->GetArrayLength(env, targets);
    gradtau_dataset *d = NULL;
    gradtau_status s = GRADTAU_PANIC;
    float *x = (*env)->GetPrimitiveArrayCritical(env, inputs, NULL);
    float *t = x ? (*env)->GetPrimitiveArrayCritical(env, targets, NULL) : NULL;
    if (x != NULL && t != NULL)
        s = gradtau_dataset_values_new(x, (size_t)n_inputs, dims, rank, t, (size_t)n_targets,
                                       target_dims, target_rank, &d);
    if (t != NULL) (*env)->ReleasePrimitiveArrayCritical(env, targets, t, JNI_ABORT);
    if (x != NULL) (*env)->ReleasePrimitiveArrayCritical(env, inputs, x, JNI_ABORT);
    free(dims);
    free(target_dims);
    if (x == NULL || t == NULL) {
        if (!(*env)->ExceptionCheck(env))
            (*env)->ThrowNew(env, J.out_of_memory, "gradtau_jni: cannot pin an array");
        return 0;
    }
    return check(env, s) ? 0 : HANDLE(d);
}

JNIEXPORT jlong JNICALL Java_dev_gradtau_Native_datasetSubset(JNIEnv *env, jclass cls,
                                                              jlong dataset,
                                                              jlongArray indices) {
    (void)cls;
    size_t count = 0;
    size_t *idx = sizes(env, indices, &count, "indices");
    if (idx == NULL) return 0;
    gradtau_dataset *d = NULL;
    gradtau_status s = gradtau_dataset_subset(DATASET(dataset), idx, count, &d);
    free(idx);
    return check(env, s) ? 0 : HANDLE(d);
}

JNIEXPORT jlong JNICALL Java_dev_gradtau_Native_datasetLen(JNIEnv *env, jclass cls,
                                                           jlong dataset) {
    (void)env;
    (void)cls;
    return (jlong)gradtau_dataset_len(DATASET(dataset));
}

JNIEXPORT jintArray JNICALL Java_dev_gradtau_Native_datasetLabels(JNIEnv *env, jclass cls,
                                                                  jlong dataset) {
    (void)cls;
    size_t n = gradtau_dataset_len(DATASET(dataset));
    if (n > INT32_MAX) {
        (*env)->ThrowNew(env, J.illegal_argument, "data set too large for a Java array");
        return NULL;
    }
    int32_t *labels = malloc((n + 1) * sizeof *labels);
    if (labels == NULL) {
        (*env)->ThrowNew(env, J.out_of_memory, "gradtau_jni: malloc");
        return NULL;
    }
    gradtau_status s = gradtau_dataset_labels(DATASET(dataset), labels, n);
    jintArray out = NULL;
    if (!check(env, s)) {
        out = (*env)->NewIntArray(env, (jsize)n);
        if (out != NULL) (*env)->SetIntArrayRegion(env, out, 0, (jsize)n, labels);
    }
    free(labels);
    return out;
}

JNIEXPORT void JNICALL Java_dev_gradtau_Native_datasetFree(JNIEnv *env, jclass cls,
                                                           jlong dataset) {
    (void)env;
    (void)cls;
    gradtau_dataset_free(DATASET(dataset));
}

JNIEXPORT jstring JNICALL Java_dev_gradtau_Native_digitsMlpSpec(JNIEnv *env, jclass cls) {
    (void)cls;
    return utf8_string(env, gradtau_digits_mlp_spec());
}

JNIEXPORT jlongArray JNICALL Java_dev_gradtau_Native_digitsSplit(JNIEnv *env, jclass cls,
                                                                 jlong seed) {
    (void)cls;
    gradtau_dataset *train = NULL, *val = NULL, *test = NULL;
    if (check(env, gradtau_digits_split((uint64_t)seed, &train, &val, &test))) return NULL;
    jlongArray out = (*env)->NewLongArray(env, 3);
    if (out == NULL) {
        gradtau_dataset_free(train);
        gradtau_dataset_free(val);
        gradtau_dataset_free(test);
        return NULL;
    }
    jlong handles[3] = {HANDLE(train), HANDLE(val), HANDLE(test)};
    (*env)->SetLongArrayRegion(env, out, 0, 3, handles);
    return out;
}

/* ---- models -------------------------------------------------------------------------- */

JNIEXPORT jlong JNICALL Java_dev_gradtau_Native_modelNew(JNIEnv *env, jclass cls,
                                                         jbyteArray spec) {
    (void)cls;
    if (require(env, spec, "spec")) return 0;
    jsize n = (*env)->GetArrayLength(env, spec);
    jbyte *bytes = (*env)->GetByteArrayElements(env, spec, NULL);
    if (bytes == NULL) return 0;
    gradtau_model *m = NULL;
    gradtau_status s = gradtau_model_new((const char *)bytes, (size_t)n, &m);
    (*env)->ReleaseByteArrayElements(env, spec, bytes, JNI_ABORT);
    return check(env, s) ? 0 : HANDLE(m);
}

/* The bytes are pinned (or copied by the JVM) only while gradtau copies them. */
JNIEXPORT jlong JNICALL Java_dev_gradtau_Native_modelFromOnnx(JNIEnv *env, jclass cls,
                                                              jbyteArray onnx, jbyteArray loss) {
    (void)cls;
    if (require(env, onnx, "onnx")) return 0;
    char *l = c_string(env, loss, "loss");
    if (l == NULL) return 0;
    jsize n = (*env)->GetArrayLength(env, onnx);
    jbyte *bytes = (*env)->GetByteArrayElements(env, onnx, NULL);
    if (bytes == NULL) {
        free(l);
        return 0;
    }
    gradtau_model *m = NULL;
    /* An empty array goes as NULL with length 0, which gradtau refuses as not ONNX. */
    gradtau_status s =
        gradtau_model_from_onnx(n == 0 ? NULL : (const uint8_t *)bytes, (size_t)n, l, &m);
    (*env)->ReleaseByteArrayElements(env, onnx, bytes, JNI_ABORT);
    free(l);
    return check(env, s) ? 0 : HANDLE(m);
}

JNIEXPORT void JNICALL Java_dev_gradtau_Native_modelLoadOnnxWeights(JNIEnv *env, jclass cls,
                                                                    jlong model) {
    (void)cls;
    check(env, gradtau_model_load_onnx_weights(MODEL(model)));
}

/* Copies the library's bytes into a new byte[], then frees them with gradtau_bytes_free. */
JNIEXPORT jbyteArray JNICALL Java_dev_gradtau_Native_modelToOnnx(JNIEnv *env, jclass cls,
                                                                 jlong model) {
    (void)cls;
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (check(env, gradtau_model_to_onnx(MODEL(model), &bytes, &len))) return NULL;
    jbyteArray out = NULL;
    if (len > INT32_MAX) {
        (*env)->ThrowNew(env, J.illegal_argument,
                         "the ONNX file is larger than one Java array (2 GiB)");
    } else {
        out = (*env)->NewByteArray(env, (jsize)len);
        if (out != NULL) (*env)->SetByteArrayRegion(env, out, 0, (jsize)len, (const jbyte *)bytes);
    }
    gradtau_bytes_free(bytes, len);
    return out;
}

JNIEXPORT void JNICALL Java_dev_gradtau_Native_modelSetMemoryLimit(JNIEnv *env, jclass cls,
                                                                   jlong model, jlong bytes) {
    (void)cls;
    if (bytes < 0) {
        (*env)->ThrowNew(env, J.illegal_argument, "negative memory limit");
        return;
    }
    check(env, gradtau_model_set_memory_limit(MODEL(model), (uint64_t)bytes));
}

JNIEXPORT void JNICALL Java_dev_gradtau_Native_modelFree(JNIEnv *env, jclass cls, jlong model) {
    (void)env;
    (void)cls;
    gradtau_model_free(MODEL(model));
}

JNIEXPORT jlong JNICALL Java_dev_gradtau_Native_modelParamCount(JNIEnv *env, jclass cls,
                                                                jlong model) {
    (void)env;
    (void)cls;
    return (jlong)gradtau_model_param_count(MODEL(model));
}

JNIEXPORT jobject JNICALL Java_dev_gradtau_Native_modelParam(JNIEnv *env, jclass cls,
                                                             jlong model, jlong index) {
    (void)cls;
    if (index < 0) {
        (*env)->ThrowNew(env, J.illegal_argument, "negative parameter index");
        return NULL;
    }
    gradtau_param_info info;
    if (check(env, gradtau_model_param(MODEL(model), (size_t)index, &info))) return NULL;
    jstring name = utf8_string(env, info.name);
    if (name == NULL) return NULL;
    jlongArray shape = long_array(env, info.shape, info.rank);
    if (shape == NULL) return NULL;
    return (*env)->NewObject(env, J.param_info, J.param_info_init, name, shape,
                             (jlong)info.numel, (jboolean)info.trainable);
}

JNIEXPORT jlong JNICALL Java_dev_gradtau_Native_modelParamIndex(JNIEnv *env, jclass cls,
                                                                jlong model, jbyteArray name) {
    (void)cls;
    char *n = c_string(env, name, "name");
    if (n == NULL) return -1;
    size_t index = 0;
    gradtau_status s = gradtau_model_param_index(MODEL(model), n, &index);
    free(n);
    return check(env, s) ? -1 : (jlong)index;
}

JNIEXPORT jlongArray JNICALL Java_dev_gradtau_Native_modelShape(JNIEnv *env, jclass cls,
                                                                jlong model, jboolean output) {
    (void)cls;
    const size_t *shape = NULL;
    size_t rank = 0;
    gradtau_status s = output ? gradtau_model_output_shape(MODEL(model), &shape, &rank)
                              : gradtau_model_input_shape(MODEL(model), &shape, &rank);
    if (check(env, s)) return NULL;
    return long_array(env, shape, rank);
}

JNIEXPORT jstring JNICALL Java_dev_gradtau_Native_modelLoss(JNIEnv *env, jclass cls,
                                                            jlong model) {
    (void)cls;
    return utf8_string(env, gradtau_model_loss(MODEL(model)));
}

/* Binds `len` floats starting `offset` floats into the direct buffer `buffer`: the address
 * gradtau keeps is the JVM's own memory for that buffer (no copy), which the Java side keeps
 * reachable for as long as it is bound. */
JNIEXPORT void JNICALL Java_dev_gradtau_Native_modelBind(JNIEnv *env, jclass cls, jlong model,
                                                         jbyteArray name, jobject buffer,
                                                         jlong offset, jlong len) {
    (void)cls;
    if (require(env, buffer, "buffer")) return;
    float *base = (*env)->GetDirectBufferAddress(env, buffer);
    jlong capacity = (*env)->GetDirectBufferCapacity(env, buffer);
    if (base == NULL || capacity < 0) {
        (*env)->ThrowNew(env, J.illegal_argument,
                         "buffer is not a direct buffer (allocate it with "
                         "ByteBuffer.allocateDirect(...).order(ByteOrder.nativeOrder())"
                         ".asFloatBuffer())");
        return;
    }
    if (offset < 0 || len < 0 || offset > capacity || len > capacity - offset) {
        (*env)->ThrowNew(env, J.illegal_argument, "offset/length outside the buffer");
        return;
    }
    char *n = c_string(env, name, "name");
    if (n == NULL) return;
    gradtau_status s = gradtau_model_bind(MODEL(model), n, base + offset, (size_t)len);
    free(n);
    check(env, s);
}

JNIEXPORT void JNICALL Java_dev_gradtau_Native_modelUnbindAll(JNIEnv *env, jclass cls,
                                                              jlong model) {
    (void)cls;
    check(env, gradtau_model_unbind_all(MODEL(model)));
}

JNIEXPORT void JNICALL Java_dev_gradtau_Native_modelInitWeights(JNIEnv *env, jclass cls,
                                                                jlong model, jlong seed) {
    (void)cls;
    check(env, gradtau_model_init_weights(MODEL(model), (uint64_t)seed));
}

/* ---- options ------------------------------------------------------------------------- */

static const jni_options_struct *find_options_struct(const char *name) {
    for (size_t i = 0; i < sizeof option_structs / sizeof option_structs[0]; i++)
        if (strcmp(option_structs[i].name, name) == 0) return &option_structs[i];
    return NULL;
}

static int is_string(const jni_option_field *f) { return strcmp(f->kind, "string") == 0; }

/* The string field of `st` whose name is the Java String `name`, or NULL. */
static const jni_option_field *find_string_field(JNIEnv *env, const jni_options_struct *st,
                                                 jstring name) {
    const char *n = (*env)->GetStringUTFChars(env, name, NULL);
    if (n == NULL) return NULL;
    const jni_option_field *found = NULL;
    for (size_t i = 0; i < st->count; i++)
        if (is_string(&st->fields[i]) && strcmp(st->fields[i].name, n) == 0)
            found = &st->fields[i];
    (*env)->ReleaseStringUTFChars(env, name, n);
    return found;
}

/* The options struct called `name` (a Java String), or NULL with an exception pending. */
static const jni_options_struct *options_struct(JNIEnv *env, jstring name) {
    if (require(env, name, "struct name")) return NULL;
    const char *n = (*env)->GetStringUTFChars(env, name, NULL);
    if (n == NULL) return NULL;
    const jni_options_struct *found = find_options_struct(n);
    (*env)->ReleaseStringUTFChars(env, name, n);
    if (found == NULL)
        (*env)->ThrowNew(env, J.illegal_argument, "libgradtau_jni.so knows no such options struct");
    return found;
}

JNIEXPORT jlong JNICALL Java_dev_gradtau_Native_optionsSize(JNIEnv *env, jclass cls,
                                                           jstring name) {
    (void)cls;
    const jni_options_struct *st = options_struct(env, name);
    return st ? (jlong)st->size : 0;
}

JNIEXPORT jobjectArray JNICALL Java_dev_gradtau_Native_optionFields(JNIEnv *env, jclass cls,
                                                                   jstring name) {
    (void)cls;
    const jni_options_struct *st = options_struct(env, name);
    if (st == NULL) return NULL;
    jobjectArray out = (*env)->NewObjectArray(env, (jsize)st->count, J.option_field, NULL);
    for (size_t i = 0; out != NULL && i < st->count; i++) {
        const jni_option_field *f = &st->fields[i];
        jstring fname = utf8_string(env, f->name);
        jstring kind = fname ? utf8_string(env, f->kind) : NULL;
        jobject obj = kind ? (*env)->NewObject(env, J.option_field, J.option_field_init, fname,
                                               kind, (jlong)f->offset, (jlong)f->size)
                           : NULL;
        if (obj != NULL) (*env)->SetObjectArrayElement(env, out, (jsize)i, obj);
        if (fname != NULL) (*env)->DeleteLocalRef(env, fname);
        if (kind != NULL) (*env)->DeleteLocalRef(env, kind);
        if (obj == NULL) return NULL; /* exception pending */
        (*env)->DeleteLocalRef(env, obj);
    }
    return out;
}

/* Runs the struct's _default function into `bytes` (exactly the struct's size). String fields
 * are returned as name/value pairs and NULLed in the bytes: a pointer means nothing in Java. */
JNIEXPORT jobjectArray JNICALL Java_dev_gradtau_Native_optionsDefault(JNIEnv *env, jclass cls,
                                                                     jstring name, jint arg,
                                                                     jbyteArray bytes) {
    (void)cls;
    const jni_options_struct *st = options_struct(env, name);
    if (st == NULL || require(env, bytes, "bytes")) return NULL;
    if ((size_t)(*env)->GetArrayLength(env, bytes) != st->size) {
        (*env)->ThrowNew(env, J.illegal_argument, "options byte array of the wrong size");
        return NULL;
    }
    any_options o;
    if (check(env, st->fill_default(arg, &o))) return NULL;
    size_t strings = 0;
    for (size_t i = 0; i < st->count; i++)
        if (is_string(&st->fields[i])) {
            const char *v;
            memcpy(&v, (char *)&o + st->fields[i].offset, sizeof v);
            strings += v != NULL;
        }
    jobjectArray pairs = (*env)->NewObjectArray(env, (jsize)(2 * strings), J.string, NULL);
    if (pairs == NULL) return NULL;
    for (size_t i = 0, k = 0; i < st->count; i++) {
        const jni_option_field *f = &st->fields[i];
        if (!is_string(f)) continue;
        const char *v;
        memcpy(&v, (char *)&o + f->offset, sizeof v);
        if (v == NULL) continue;
        jstring key = utf8_string(env, f->name);
        jstring value = key ? utf8_string(env, v) : NULL;
        if (value == NULL) return NULL;
        (*env)->SetObjectArrayElement(env, pairs, (jsize)k++, key);
        (*env)->SetObjectArrayElement(env, pairs, (jsize)k++, value);
        (*env)->DeleteLocalRef(env, key);
        (*env)->DeleteLocalRef(env, value);
        v = NULL;
        memcpy((char *)&o + f->offset, &v, sizeof v);
    }
    (*env)->SetByteArrayRegion(env, bytes, 0, (jsize)st->size, (const jbyte *)&o);
    return pairs;
}

/* The C strings a run's options point at; freed by free_strings after the call. */
typedef struct option_strings {
    char *values[8];
    size_t count;
} option_strings;

static void free_strings(option_strings *s) {
    for (size_t i = 0; i < s->count; i++) free(s->values[i]);
    s->count = 0;
}

/* Points the string field `f` of the struct at `out` to a C copy of the NUL-terminated byte[]
 * `value`, kept in `strings` until free_strings. Returns 1 with an exception pending. */
static int set_string(JNIEnv *env, const jni_option_field *f, jbyteArray value, char *out,
                      option_strings *strings) {
    if (strings->count == sizeof strings->values / sizeof strings->values[0]) {
        (*env)->ThrowNew(env, J.illegal_argument, "too many string options");
        return 1;
    }
    char *v = c_string(env, value, "option value");
    if (v == NULL) return 1;
    strings->values[strings->count++] = v;
    memcpy(out + f->offset, &v, sizeof v);
    return 0;
}

/* Builds the C struct named `name` into `out` from Java's bytes (OptionsStruct), then sets
 * the string fields Java names; every other string field is NULL. Returns 1 with an exception
 * pending on failure (nothing left to free). */
static int read_options(JNIEnv *env, const char *name, jbyteArray bytes, jobjectArray string_names,
                        jobjectArray string_values, any_options *out, option_strings *strings) {
    const jni_options_struct *st = find_options_struct(name);
    strings->count = 0;
    if (st == NULL) {
        (*env)->ThrowNew(env, J.illegal_argument, "libgradtau_jni.so knows no such options struct");
        return 1;
    }
    if (require(env, bytes, "options") || require(env, string_names, "options") ||
        require(env, string_values, "options"))
        return 1;
    jsize n = (*env)->GetArrayLength(env, string_names);
    if ((size_t)(*env)->GetArrayLength(env, bytes) != st->size ||
        (*env)->GetArrayLength(env, string_values) != n) {
        (*env)->ThrowNew(env, J.illegal_argument, "options of the wrong size");
        return 1;
    }
    (*env)->GetByteArrayRegion(env, bytes, 0, (jsize)st->size, (jbyte *)out);
    const char *null_string = NULL;
    for (size_t i = 0; i < st->count; i++)
        if (is_string(&st->fields[i]))
            memcpy((char *)out + st->fields[i].offset, &null_string, sizeof null_string);
    for (jsize k = 0; k < n; k++) {
        jstring key = (*env)->GetObjectArrayElement(env, string_names, k);
        if (require(env, key, "option name")) break;
        const jni_option_field *f = find_string_field(env, st, key);
        (*env)->DeleteLocalRef(env, key);
        if (f == NULL) {
            if (!(*env)->ExceptionCheck(env))
                (*env)->ThrowNew(env, J.illegal_argument, "unknown string option");
            break;
        }
        jbyteArray value = (*env)->GetObjectArrayElement(env, string_values, k);
        int failed = set_string(env, f, value, (char *)out, strings);
        (*env)->DeleteLocalRef(env, value);
        if (failed) break;
    }
    if ((*env)->ExceptionCheck(env)) {
        free_strings(strings);
        return 1;
    }
    return 0;
}

/* ---- runs ---------------------------------------------------------------------------- */

typedef struct progress_ctx {
    JNIEnv *env;
    jobject callback;       /* dev.gradtau.Progress, a local ref of the native call */
    jthrowable thrown;      /* global ref: what the callback threw, rethrown after the run */
    const char *method_ptr; /* gradtau's method strings are static: one Java String each */
    jstring method;
} progress_ctx;

static int32_t trampoline(const gradtau_progress *p, void *user_data) {
    progress_ctx *ctx = user_data;
    JNIEnv *env = ctx->env;
    if (ctx->thrown != NULL) return 1;
    if (p->method != ctx->method_ptr) {
        if (ctx->method != NULL) (*env)->DeleteLocalRef(env, ctx->method);
        ctx->method = utf8_string(env, p->method);
        ctx->method_ptr = p->method;
    }
    jboolean go = JNI_FALSE;
    /* One frame per step, so that a long run does not pile up local references. */
    if (ctx->method != NULL && (*env)->PushLocalFrame(env, 8) == 0) {
        go = (*env)->CallStaticBooleanMethod(
            env, J.native, J.dispatch_progress, ctx->callback, ctx->method, (jlong)p->epoch,
            (jlong)p->epochs, (jlong)p->step, (jlong)p->total_steps, p->forget_loss,
            p->retain_loss, p->alpha, p->tau, p->lr);
        (*env)->PopLocalFrame(env, NULL);
    }
    jthrowable ex = (*env)->ExceptionOccurred(env);
    if (ex != NULL) {
        /* No JNI call may run with an exception pending, and gradtau must not unwind: stash
         * it, cancel the run, and rethrow it once gradtau has returned. */
        (*env)->ExceptionClear(env);
        ctx->thrown = (*env)->NewGlobalRef(env, ex);
        (*env)->DeleteLocalRef(env, ex);
        return 1;
    }
    return go ? 0 : 1;
}

/* After a run: rethrow the callback's exception if it threw (it caused the cancellation),
 * otherwise report the status. Returns 1 if an exception is pending. */
static int finish_run(JNIEnv *env, progress_ctx *ctx, gradtau_status s) {
    if (ctx->method != NULL) (*env)->DeleteLocalRef(env, ctx->method);
    if (ctx->thrown != NULL) {
        (*env)->Throw(env, ctx->thrown);
        (*env)->DeleteGlobalRef(env, ctx->thrown);
        return 1;
    }
    return check(env, s);
}

static jobject make_report(JNIEnv *env, gradtau_report *r) {
    jstring method = utf8_string(env, gradtau_report_method(r));
    jobject out = NULL;
    if (method != NULL)
        out = (*env)->NewObject(env, J.report, J.report_init, method,
                                (jlong)gradtau_report_epochs(r), (jlong)gradtau_report_steps(r),
                                gradtau_report_seconds(r), gradtau_report_lr(r),
                                gradtau_report_final_alpha(r),
                                gradtau_report_final_tau(r),
                                (jlong)gradtau_report_forget_stopped_at(r),
                                (jboolean)gradtau_report_truncated(r),
                                (jint)gradtau_report_stop_reason(r));
    gradtau_report_free(r);
    return out;
}

JNIEXPORT jobject JNICALL Java_dev_gradtau_Native_unlearn(JNIEnv *env, jclass cls, jlong model,
                                                          jlong forget, jlong retain, jlong val,
                                                          jbyteArray options,
                                                          jobjectArray string_names,
                                                          jobjectArray string_values,
                                                          jobject progress) {
    (void)cls;
    any_options o;
    option_strings strings;
    if (read_options(env, "gradtau_unlearn_options", options, string_names, string_values, &o,
                     &strings))
        return NULL;
    progress_ctx ctx = {env, progress, NULL, NULL, NULL};
    gradtau_report *report = NULL;
    gradtau_status s = gradtau_unlearn(MODEL(model), DATASET(forget), DATASET(retain),
                                       DATASET(val), &o.unlearn, progress ? trampoline : NULL,
                                       &ctx, &report);
    free_strings(&strings);
    if (finish_run(env, &ctx, s)) {
        gradtau_report_free(report);
        return NULL;
    }
    return make_report(env, report);
}

JNIEXPORT jobject JNICALL Java_dev_gradtau_Native_train(JNIEnv *env, jclass cls, jlong model,
                                                        jlong data, jbyteArray options,
                                                        jobjectArray string_names,
                                                        jobjectArray string_values,
                                                        jobject progress) {
    (void)cls;
    any_options o;
    option_strings strings;
    if (read_options(env, "gradtau_train_options", options, string_names, string_values, &o,
                     &strings))
        return NULL;
    progress_ctx ctx = {env, progress, NULL, NULL, NULL};
    gradtau_report *report = NULL;
    gradtau_status s = gradtau_train(MODEL(model), DATASET(data), &o.train,
                                     progress ? trampoline : NULL, &ctx, &report);
    free_strings(&strings);
    if (finish_run(env, &ctx, s)) {
        gradtau_report_free(report);
        return NULL;
    }
    return make_report(env, report);
}

/* The audit report as a flat double[] that AuditRow.fromNative reads:
 *   [0] primary metric code, [1..3] its retain / forget / test values,
 *   [4] second metric code or -1, [5..7] its values,
 *   [8..10] accuracy on retain / forget / test, [11] entropy attack accuracy,
 *   [12..14] paper attack (accuracy, AUC, TPR at 1 % FPR), [15..17] log-loss attack,
 *   [18..20] threshold attack, [21] strongest advantage, [22] attack samples. */
enum { AUDIT_FIELDS = 23 };

static void audit_values(const gradtau_audit_report *r, double *v) {
    static const gradtau_audit_set sets[3] = {GRADTAU_AUDIT_SET_RETAIN, GRADTAU_AUDIT_SET_FORGET,
                                              GRADTAU_AUDIT_SET_TEST};
    static const gradtau_attack attacks[3] = {GRADTAU_ATTACK_PAPER, GRADTAU_ATTACK_LOG_LOSS,
                                              GRADTAU_ATTACK_THRESHOLD};
    static const gradtau_score scores[3] = {GRADTAU_SCORE_ACCURACY, GRADTAU_SCORE_AUC,
                                            GRADTAU_SCORE_TPR_AT_1PCT_FPR};
    gradtau_metric primary = gradtau_audit_report_metric(r);
    v[0] = primary;
    v[4] = -1;
    for (int k = 0; k < 3; k++) {
        v[1 + k] = gradtau_audit_report_value(r, primary, sets[k]);
        v[8 + k] = gradtau_audit_report_value(r, GRADTAU_METRIC_ACCURACY, sets[k]);
    }
    /* A reported metric has a value on the retain set; the others read NaN. */
    for (gradtau_metric m = 0; v[4] < 0 && strcmp(gradtau_metric_name(m), "unknown") != 0; m++) {
        double retain = gradtau_audit_report_value(r, m, GRADTAU_AUDIT_SET_RETAIN);
        if (m == primary || isnan(retain)) continue;
        v[4] = m;
        for (int k = 0; k < 3; k++) v[5 + k] = gradtau_audit_report_value(r, m, sets[k]);
    }
    if (v[4] < 0) v[5] = v[6] = v[7] = NAN;
    v[11] = gradtau_audit_report_attack(r, GRADTAU_ATTACK_ENTROPY, GRADTAU_SCORE_ACCURACY);
    for (int a = 0; a < 3; a++)
        for (int k = 0; k < 3; k++)
            v[12 + 3 * a + k] = gradtau_audit_report_attack(r, attacks[a], scores[k]);
    v[21] = gradtau_audit_report_strongest(r);
    v[22] = (double)gradtau_audit_report_attack_samples(r);
}

JNIEXPORT jdoubleArray JNICALL Java_dev_gradtau_Native_auditReport(JNIEnv *env, jclass cls,
                                                                   jlong model, jlong retain,
                                                                   jlong forget, jlong test,
                                                                   jlong seed) {
    (void)cls;
    gradtau_audit_report *report = NULL;
    if (check(env, gradtau_audit_report_new(MODEL(model), DATASET(retain), DATASET(forget),
                                            DATASET(test), (uint64_t)seed, &report)))
        return NULL;
    double v[AUDIT_FIELDS];
    audit_values(report, v);
    gradtau_audit_report_free(report);
    jdoubleArray out = (*env)->NewDoubleArray(env, AUDIT_FIELDS);
    if (out == NULL) return NULL;
    (*env)->SetDoubleArrayRegion(env, out, 0, AUDIT_FIELDS, v);
    return out;
}

JNIEXPORT jstring JNICALL Java_dev_gradtau_Native_metricName(JNIEnv *env, jclass cls,
                                                             jint metric) {
    (void)cls;
    return utf8_string(env, gradtau_metric_name(metric));
}

/* ---- inference ----------------------------------------------------------------------- */

/* predict (`losses` false) or per-sample losses (`losses` true) of `data` into a new float[].
 * gradtau fills a malloc'd buffer (not a pinned array: the run may take long, and a critical
 * region would stall the GC meanwhile), and the Java array is created only on success, so a
 * failure never leaves a half-written result behind. */
static jfloatArray eval(JNIEnv *env, jlong model, jlong data, int losses) {
    size_t n = gradtau_dataset_len(DATASET(data));
    size_t per_sample = 1;
    if (!losses) {
        const size_t *shape = NULL;
        size_t rank = 0;
        if (check(env, gradtau_model_output_shape(MODEL(model), &shape, &rank))) return NULL;
        for (size_t i = 0; i < rank; i++) {
            if (shape[i] != 0 && per_sample > SIZE_MAX / shape[i]) {
                (*env)->ThrowNew(env, J.illegal_argument, "output too large for a Java array");
                return NULL;
            }
            per_sample *= shape[i];
        }
    }
    if (per_sample != 0 && n > (size_t)INT32_MAX / per_sample) {
        (*env)->ThrowNew(env, J.illegal_argument, "output too large for a Java array");
        return NULL;
    }
    size_t len = n * per_sample;
    float *buf = malloc((len + 1) * sizeof *buf);
    if (buf == NULL) {
        (*env)->ThrowNew(env, J.out_of_memory, "gradtau_jni: malloc");
        return NULL;
    }
    gradtau_status s = losses ? gradtau_losses(MODEL(model), DATASET(data), buf, len)
                              : gradtau_predict(MODEL(model), DATASET(data), buf, len);
    jfloatArray out = NULL;
    if (!check(env, s)) {
        out = (*env)->NewFloatArray(env, (jsize)len);
        if (out != NULL) (*env)->SetFloatArrayRegion(env, out, 0, (jsize)len, buf);
    }
    free(buf);
    return out;
}

JNIEXPORT jfloatArray JNICALL Java_dev_gradtau_Native_predict(JNIEnv *env, jclass cls,
                                                              jlong model, jlong data) {
    (void)cls;
    return eval(env, model, data, 0);
}

JNIEXPORT jfloatArray JNICALL Java_dev_gradtau_Native_losses(JNIEnv *env, jclass cls,
                                                             jlong model, jlong data) {
    (void)cls;
    return eval(env, model, data, 1);
}

/* ---- serving: label-free inference, thread cap, publish hook, data sets from files ------ */

/* Stands in for the inputs of an empty request: gradtau checks the length against the count,
 * so a non-NULL pointer keeps "0 floats for 3 samples" a SHAPE error rather than a NULL one. */
static const float NO_INPUTS[1];

/* The `len` input floats of an infer/classify call, from `offset` in the direct buffer
 * `direct` (read in place) or in `array`. An array region is copied into `*owned` rather than
 * pinned: a read may wait for a publish to finish, and a critical region must not block.
 * NULL with an exception pending on failure. */
static const float *request_inputs(JNIEnv *env, jfloatArray array, jobject direct, jlong offset,
                                   jlong len, float **owned) {
    *owned = NULL;
    if (offset < 0 || len < 0) {
        (*env)->ThrowNew(env, J.illegal_argument, "negative offset or length");
        return NULL;
    }
    jlong capacity;
    const float *base = NULL;
    if (direct != NULL) {
        capacity = (*env)->GetDirectBufferCapacity(env, direct);
        if (capacity < 0) {
            (*env)->ThrowNew(env, J.illegal_argument, "inputs: not a direct buffer");
            return NULL;
        }
    } else {
        if (require(env, array, "inputs")) return NULL;
        capacity = (*env)->GetArrayLength(env, array);
    }
    if (offset > capacity || len > capacity - offset) {
        (*env)->ThrowNew(env, J.illegal_argument, "offset/length outside the inputs");
        return NULL;
    }
    if (len == 0) return NO_INPUTS;
    if (direct != NULL) {
        base = (*env)->GetDirectBufferAddress(env, direct);
        if (base == NULL) {
            (*env)->ThrowNew(env, J.illegal_argument, "inputs: not a direct buffer");
            return NULL;
        }
        return base + offset;
    }
    float *copy = malloc((size_t)len * sizeof *copy);
    if (copy == NULL) {
        (*env)->ThrowNew(env, J.out_of_memory, "gradtau_jni: malloc");
        return NULL;
    }
    (*env)->GetFloatArrayRegion(env, array, (jsize)offset, (jsize)len, copy);
    *owned = copy;
    return copy;
}

/* count * prod(output_shape) into `*len`, refusing what one Java array cannot hold.
 * Returns 1 with an exception pending on failure. */
static int infer_out_len(JNIEnv *env, jlong model, jlong count, size_t *len) {
    const size_t *shape = NULL;
    size_t rank = 0;
    if (check(env, gradtau_model_output_shape(MODEL(model), &shape, &rank))) return 1;
    size_t n = (size_t)count;
    for (size_t i = 0; i < rank; i++) {
        if (shape[i] != 0 && n > (size_t)INT32_MAX / shape[i]) {
            (*env)->ThrowNew(env, J.illegal_argument,
                             "output too large for a Java array: infer in smaller batches");
            return 1;
        }
        n *= shape[i];
    }
    if (n > (size_t)INT32_MAX) {
        (*env)->ThrowNew(env, J.illegal_argument,
                         "output too large for a Java array: infer in smaller batches");
        return 1;
    }
    *len = n;
    return 0;
}

/* Like eval: gradtau writes into malloc'd memory and the Java array is created only on
 * success, so a failure never leaves a half-written result behind. */
JNIEXPORT jfloatArray JNICALL Java_dev_gradtau_Native_infer(JNIEnv *env, jclass cls, jlong model,
                                                            jfloatArray array, jobject direct,
                                                            jlong offset, jlong len, jlong count,
                                                            jint kind) {
    (void)cls;
    if (count < 0) {
        (*env)->ThrowNew(env, J.illegal_argument, "negative sample count");
        return NULL;
    }
    size_t out_len = 0;
    if (infer_out_len(env, model, count, &out_len)) return NULL;
    float *owned = NULL;
    const float *in = request_inputs(env, array, direct, offset, len, &owned);
    if (in == NULL) return NULL;
    float *out = malloc((out_len + 1) * sizeof *out);
    if (out == NULL) {
        free(owned);
        (*env)->ThrowNew(env, J.out_of_memory, "gradtau_jni: malloc");
        return NULL;
    }
    gradtau_status s = gradtau_model_infer(MODEL(model), in, (size_t)len, (size_t)count,
                                           (gradtau_output)kind, out, out_len);
    free(owned);
    jfloatArray result = NULL;
    if (!check(env, s)) {
        result = (*env)->NewFloatArray(env, (jsize)out_len);
        if (result != NULL) (*env)->SetFloatArrayRegion(env, result, 0, (jsize)out_len, out);
    }
    free(out);
    return result;
}

JNIEXPORT jintArray JNICALL Java_dev_gradtau_Native_classify(JNIEnv *env, jclass cls,
                                                             jlong model, jfloatArray array,
                                                             jobject direct, jlong offset,
                                                             jlong len, jlong count) {
    (void)cls;
    if (count < 0 || count > INT32_MAX) {
        (*env)->ThrowNew(env, J.illegal_argument, "sample count outside 0..Integer.MAX_VALUE");
        return NULL;
    }
    float *owned = NULL;
    const float *in = request_inputs(env, array, direct, offset, len, &owned);
    if (in == NULL) return NULL;
    int32_t *classes = malloc(((size_t)count + 1) * sizeof *classes);
    if (classes == NULL) {
        free(owned);
        (*env)->ThrowNew(env, J.out_of_memory, "gradtau_jni: malloc");
        return NULL;
    }
    gradtau_status s = gradtau_model_classify(MODEL(model), in, (size_t)len, (size_t)count,
                                              classes, (size_t)count);
    free(owned);
    jintArray result = NULL;
    if (!check(env, s)) {
        result = (*env)->NewIntArray(env, (jsize)count);
        if (result != NULL)
            (*env)->SetIntArrayRegion(env, result, 0, (jsize)count, (const jint *)classes);
    }
    free(classes);
    return result;
}

JNIEXPORT void JNICALL Java_dev_gradtau_Native_modelSetThreads(JNIEnv *env, jclass cls,
                                                               jlong model, jlong threads) {
    (void)cls;
    if (threads < 0) {
        (*env)->ThrowNew(env, J.illegal_argument, "negative thread cap");
        return;
    }
    check(env, gradtau_model_set_threads(MODEL(model), (size_t)threads));
}

JNIEXPORT jlong JNICALL Java_dev_gradtau_Native_modelThreads(JNIEnv *env, jclass cls,
                                                             jlong model) {
    (void)env;
    (void)cls;
    size_t t = gradtau_model_threads(MODEL(model));
    return t > (size_t)INT64_MAX ? INT64_MAX : (jlong)t;
}

/* What the C hook needs to call the Java one. The hook is held weakly: dev.gradtau.Model holds
 * it strongly while it is set, and every writing call keeps the Model reachable, so it is
 * alive whenever gradtau can call it; a strong global reference would make a hook that refers
 * to its model keep that model from ever being cleaned. */
typedef struct publish_ctx {
    JavaVM *vm;
    jweak hook;         /* dev.gradtau.PublishHook */
    jclass model_class; /* global ref to dev.gradtau.Model */
    jmethodID dispatch; /* static boolean Model.dispatchPublish(PublishHook, int) */
} publish_ctx;

/* Runs on the thread of the writing call. That is a Java thread inside a native method (the
 * JNIEnv is looked up), but a thread the JVM does not know is attached for the call so that a
 * host mixing C and Java callers cannot crash the JVM. Model.dispatchPublish catches what the
 * hook throws; anything still pending here (an error raised by the upcall itself) is cleared
 * and counts as a refusal at BEGIN, since nothing may unwind into gradtau. */
static int32_t publish_trampoline(gradtau_publish_phase phase, void *user_data) {
    const publish_ctx *ctx = user_data;
    int32_t refuse = phase == GRADTAU_PUBLISH_BEGIN ? 1 : 0;
    JNIEnv *env = NULL;
    int attached = 0;
    jint got = (*ctx->vm)->GetEnv(ctx->vm, (void **)&env, JNI_VERSION_1_8);
    if (got == JNI_EDETACHED) {
        if ((*ctx->vm)->AttachCurrentThreadAsDaemon(ctx->vm, (void **)&env, NULL) != JNI_OK)
            return refuse;
        attached = 1;
    } else if (got != JNI_OK) {
        return refuse;
    }
    jboolean go = JNI_FALSE;
    /* An exception already pending belongs to the caller: leave it, call nothing. */
    if (!(*env)->ExceptionCheck(env)) {
        if ((*env)->PushLocalFrame(env, 4) == 0) {
            jobject hook = (*env)->NewLocalRef(env, ctx->hook);
            if (hook != NULL) {
                go = (*env)->CallStaticBooleanMethod(env, ctx->model_class, ctx->dispatch, hook,
                                                     (jint)phase);
            }
            (*env)->PopLocalFrame(env, NULL);
        }
        if ((*env)->ExceptionCheck(env)) {
            (*env)->ExceptionClear(env);
            go = JNI_FALSE;
        }
    }
    if (attached) (*ctx->vm)->DetachCurrentThread(ctx->vm);
    return go ? 0 : refuse;
}

static void publish_ctx_free(JNIEnv *env, publish_ctx *ctx) {
    if (ctx == NULL) return;
    if (ctx->hook != NULL) (*env)->DeleteWeakGlobalRef(env, ctx->hook);
    if (ctx->model_class != NULL) (*env)->DeleteGlobalRef(env, ctx->model_class);
    free(ctx);
}

JNIEXPORT jlong JNICALL Java_dev_gradtau_Native_publishHookSet(JNIEnv *env, jclass cls,
                                                               jlong model, jobject hook) {
    (void)cls;
    if (hook == NULL) {
        check(env, gradtau_model_set_publish_hook(MODEL(model), NULL, NULL));
        return 0;
    }
    publish_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) {
        (*env)->ThrowNew(env, J.out_of_memory, "gradtau_jni: malloc");
        return 0;
    }
    if ((*env)->GetJavaVM(env, &ctx->vm) != JNI_OK) {
        publish_ctx_free(env, ctx);
        (*env)->ThrowNew(env, J.illegal_argument, "gradtau_jni: no JavaVM for the publish hook");
        return 0;
    }
    ctx->model_class = global_class(env, "dev/gradtau/Model");
    if (ctx->model_class != NULL)
        ctx->dispatch = (*env)->GetStaticMethodID(env, ctx->model_class, "dispatchPublish",
                                                  "(Ldev/gradtau/PublishHook;I)Z");
    if (ctx->dispatch != NULL) ctx->hook = (*env)->NewWeakGlobalRef(env, hook);
    if (ctx->hook == NULL) { /* an exception (NoSuchMethodError, OutOfMemoryError) is pending */
        publish_ctx_free(env, ctx);
        return 0;
    }
    if (check(env, gradtau_model_set_publish_hook(MODEL(model), publish_trampoline, ctx))) {
        publish_ctx_free(env, ctx);
        return 0;
    }
    return HANDLE(ctx);
}

JNIEXPORT void JNICALL Java_dev_gradtau_Native_publishHookFree(JNIEnv *env, jclass cls,
                                                               jlong context) {
    (void)cls;
    publish_ctx_free(env, (publish_ctx *)(intptr_t)context);
}

JNIEXPORT jlong JNICALL Java_dev_gradtau_Native_datasetLoad(JNIEnv *env, jclass cls, jlong model,
                                                            jbyteArray inputs_path,
                                                            jbyteArray targets_path) {
    (void)cls;
    char *x = c_string(env, inputs_path, "inputsPath");
    if (x == NULL) return 0;
    char *y = c_string(env, targets_path, "targetsPath");
    if (y == NULL) {
        free(x);
        return 0;
    }
    gradtau_dataset *d = NULL;
    gradtau_status s = gradtau_dataset_load(MODEL(model), x, y, &d);
    free(x);
    free(y);
    return check(env, s) ? 0 : HANDLE(d);
}

JNIEXPORT jlongArray JNICALL Java_dev_gradtau_Native_datasetSampleShape(JNIEnv *env, jclass cls,
                                                                        jlong dataset) {
    (void)cls;
    const size_t *shape = NULL;
    size_t rank = 0;
    if (check(env, gradtau_dataset_sample_shape(DATASET(dataset), &shape, &rank))) return NULL;
    return long_array(env, shape, rank);
}

JNIEXPORT jfloatArray JNICALL Java_dev_gradtau_Native_datasetInputs(JNIEnv *env, jclass cls,
                                                                    jlong dataset, jlong len) {
    (void)cls;
    if (len < 0 || len > INT32_MAX) {
        (*env)->ThrowNew(env, J.illegal_argument,
                         "the inputs do not fit one Java array: take a subset first");
        return NULL;
    }
    float *buf = malloc(((size_t)len + 1) * sizeof *buf);
    if (buf == NULL) {
        (*env)->ThrowNew(env, J.out_of_memory, "gradtau_jni: malloc");
        return NULL;
    }
    gradtau_status s = gradtau_dataset_inputs(DATASET(dataset), buf, (size_t)len);
    jfloatArray out = NULL;
    if (!check(env, s)) {
        out = (*env)->NewFloatArray(env, (jsize)len);
        if (out != NULL) (*env)->SetFloatArrayRegion(env, out, 0, (jsize)len, buf);
    }
    free(buf);
    return out;
}
