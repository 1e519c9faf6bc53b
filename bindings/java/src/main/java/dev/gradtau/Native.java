package dev.gradtau;

import java.lang.ref.Cleaner;
import java.nio.Buffer;
import java.nio.charset.StandardCharsets;

/**
 * The JNI entry points of libgradtau_jni.so and the library loading. Package-private: the
 * public classes validate every argument before anything here is called.
 */
final class Native {
    /** Backstop for handles that are never closed; see {@link NativeHandle}. */
    static final Cleaner CLEANER = Cleaner.create();

    /** System property naming the full path of libgradtau_jni.so. */
    static final String PATH_PROPERTY = "gradtau.jni.path";

    private static final Throwable LOAD_FAILURE = load();

    private Native() {}

    private static Throwable load() {
        String path = System.getProperty(PATH_PROPERTY, "");
        try {
            if (!path.isEmpty()) {
                System.load(path);
            } else {
                NativeLoader.load();
            }
        } catch (UnsatisfiedLinkError | SecurityException e) {
            String where = path.isEmpty()
                    ? "System.loadLibrary(\"gradtau_jni\") found no libgradtau_jni.so on java.library.path="
                            + System.getProperty("java.library.path")
                    : "System.load(\"" + path + "\") (from -D" + PATH_PROPERTY + ") failed";
            UnsatisfiedLinkError error = new UnsatisfiedLinkError(
                    "gradtau: cannot load the JNI library: " + where + ": " + e.getMessage()
                            + ". Build it with scripts/test-java.sh (or see bindings/java/README.md), then"
                            + " pass -D" + PATH_PROPERTY + "=/path/to/libgradtau_jni.so or put its folder on"
                            + " -Djava.library.path; libgradtau.so must be next to it (it is found through"
                            + " the rpath $ORIGIN) or on LD_LIBRARY_PATH.");
            error.initCause(e);
            return error;
        }
        int lib = abiVersion();
        int header = headerAbiVersion();
        if (lib != header) {
            return new UnsatisfiedLinkError("gradtau: libgradtau.so has ABI version " + lib
                    + " but libgradtau_jni.so was compiled against gradtau.h with ABI version "
                    + header + "; rebuild the JNI library against this libgradtau");
        }
        return null;
    }

    /**
     * Throws a fresh, descriptive error if the native libraries could not be loaded. Every
     * public factory calls this first, so the message is the same on every attempt rather than
     * a bare NoClassDefFoundError after the first.
     */
    static void ensureLoaded() {
        if (LOAD_FAILURE != null) {
            UnsatisfiedLinkError e = new UnsatisfiedLinkError(LOAD_FAILURE.getMessage());
            e.initCause(LOAD_FAILURE);
            throw e;
        }
    }

    /** {@code s} as NUL-terminated UTF-8, refusing embedded NULs (C would cut the name). */
    static byte[] cString(String s, String what) {
        if (s.indexOf('\0') >= 0) {
            throw new IllegalArgumentException(what + " contains a NUL character");
        }
        byte[] utf8 = s.getBytes(StandardCharsets.UTF_8);
        byte[] out = new byte[utf8.length + 1];
        System.arraycopy(utf8, 0, out, 0, utf8.length);
        return out;
    }

    /** Called from the C trampoline after every optimisation step. */
    static boolean dispatchProgress(Progress callback, String method, long epoch, long epochs,
            long step, long totalSteps, float forgetLoss, float retainLoss, float alpha, float tau,
            float lr) {
        return callback.onStep(new Progress.Step(method, epoch, epochs, step, totalSteps,
                forgetLoss, retainLoss, alpha, tau, lr));
    }

    static native int abiVersion();

    static native int headerAbiVersion();

    static native String version();

    static native String statusName(int status);

    static native String stopReasonName(int reason);

    static native long datasetClassesNew(float[] inputs, long[] shape, int[] labels);

    static native long datasetValuesNew(float[] inputs, long[] shape, float[] targets,
            long[] targetShape);

    static native long datasetSubset(long dataset, long[] indices);

    static native long datasetLen(long dataset);

    static native int[] datasetLabels(long dataset);

    static native void datasetFree(long dataset);

    static native String digitsMlpSpec();

    static native long[] digitsSplit(long seed);

    static native long modelNew(byte[] specUtf8);

    static native void modelFree(long model);

    static native long modelFromOnnx(byte[] onnx, byte[] lossUtf8);

    static native void modelLoadOnnxWeights(long model);

    static native byte[] modelToOnnx(long model);

    static native void modelSetMemoryLimit(long model, long bytes);

    static native long modelParamCount(long model);

    static native ParamInfo modelParam(long model, long index);

    static native long modelParamIndex(long model, byte[] name);

    static native long[] modelShape(long model, boolean output);

    static native String modelLoss(long model);

    static native void modelBind(long model, byte[] name, Buffer buffer, long offset, long len);

    static native void modelUnbindAll(long model);

    static native void modelInitWeights(long model, long seed);

    /** {@code sizeof} the options struct called {@code struct}. */
    static native long optionsSize(String struct);

    /** Every field of the options struct {@code struct}, in the header's order. */
    static native OptionsStruct.Field[] optionFields(String struct);

    /**
     * Fills {@code bytes} with {@code <struct>_default(arg, ...)}; returns the string fields it
     * set as name/value pairs.
     */
    static native String[] optionsDefault(String struct, int arg, byte[] bytes);

    static native Report unlearn(long model, long forget, long retain, long val, byte[] options,
            String[] stringFields, byte[][] stringValues, Progress progress);

    static native Report train(long model, long data, byte[] options, String[] stringFields,
            byte[][] stringValues, Progress progress);

    /** The audit as a flat array; {@link AuditRow#fromNative} reads it. */
    static native double[] auditReport(long model, long retain, long forget, long test, long seed);

    static native String metricName(int metric);

    static native float[] predict(long model, long data);

    static native float[] losses(long model, long data);

    // ---- serving: label-free inference, the thread cap, the publish hook, data sets read
    // from files. `array` or `direct` holds the inputs (the other is null); `offset` and
    // `len` count floats in it. `kind` is an Output code.

    static native float[] infer(long model, float[] array, Buffer direct, long offset, long len,
            long count, int kind);

    static native int[] classify(long model, float[] array, Buffer direct, long offset, long len,
            long count);

    static native void modelSetThreads(long model, long threads);

    static native long modelThreads(long model);

    /** Sets {@code hook} (null removes it); returns its native context (0 for none). */
    static native long publishHookSet(long model, PublishHook hook);

    /** Frees a context from {@link #publishHookSet}; 0 is a no-op. */
    static native void publishHookFree(long context);

    static native long datasetLoad(long model, byte[] inputsPath, byte[] targetsPath);

    static native long[] datasetSampleShape(long dataset);

    static native float[] datasetInputs(long dataset, long len);
}
