package dev.gradtau;

import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.util.Objects;

/**
 * A data set: inputs {@code [N, ...]} and their targets (class labels or float values).
 *
 * <p>The factories copy the Java arrays once into library-owned memory, so the arrays may be
 * reused as soon as they return. Immutable: one data set may be used by any number of
 * concurrent calls, on any threads and models. Close it when done; closing while a call on
 * another thread still uses it is safe (the memory is freed when that call returns).
 */
public final class Dataset implements AutoCloseable {
    private final NativeHandle handle;
    private final Cleaner.Cleanable cleanable;

    private Dataset(long pointer) {
        this.handle = new NativeHandle("Dataset", pointer, Native::datasetFree);
        this.cleanable = Native.CLEANER.register(this, handle);
    }

    /** Wraps a pointer that the library just returned; frees it if wrapping fails. */
    static Dataset adopt(long pointer) {
        try {
            return new Dataset(pointer);
        } catch (RuntimeException | Error e) {
            Native.datasetFree(pointer);
            throw e;
        }
    }

    /**
     * The product of {@code shape}, {@link Long#MAX_VALUE} if it overflows (the library
     * refuses such a shape itself).
     */
    private static long numel(long[] shape) {
        long n = 1;
        try {
            for (int i = 0; i < shape.length; i++) {
                n = Math.multiplyExact(n, shape[i]);
            }
        } catch (ArithmeticException e) {
            return Long.MAX_VALUE;
        }
        return n;
    }

    /**
     * Reads a data set for {@code model} from files: inputs from {@code inputsPath} ({@code .npy}
     * float32/float64 {@code [N, inputShape...]}, or an IDX image file, plain or gzip, scaled to
     * [0, 1]) and targets from {@code targetsPath} (class labels as {@code .npy} integers or an
     * IDX label file for a {@code cross_entropy} model; float {@code .npy}
     * {@code [N, outputShape...]} otherwise). A read of the model: safe during a run on it.
     *
     * @throws GradtauException {@link Status#IO} (a file that cannot be read or parsed; the
     *     message names it), {@link Status#SHAPE} (samples that do not fit the model, or counts
     *     that differ), {@link Status#INVALID_ARGUMENT} (a label out of range),
     *     {@link Status#NON_FINITE}
     */
    public static Dataset load(Model model, String inputsPath, String targetsPath) {
        Objects.requireNonNull(model, "model");
        Objects.requireNonNull(inputsPath, "inputsPath");
        Objects.requireNonNull(targetsPath, "targetsPath");
        byte[] x = Native.cString(inputsPath, "inputsPath");
        byte[] y = Native.cString(targetsPath, "targetsPath");
        NativeHandle m = model.handle();
        long p = m.acquire();
        try {
            return adopt(Native.datasetLoad(p, x, y));
        } finally {
            m.release();
            Reference.reachabilityFence(model);
        }
    }

    /**
     * A classification data set: {@code inputs} laid out row-major with {@code shape}
     * ({@code shape[0]} = N samples), and N non-negative class {@code labels}.
     *
     * @throws GradtauException {@link Status#SHAPE} if the lengths disagree with the shape,
     *     {@link Status#INVALID_ARGUMENT} for an empty shape, an overflowing one or a negative
     *     label
     */
    public static Dataset ofClasses(float[] inputs, long[] shape, int[] labels) {
        Objects.requireNonNull(inputs, "inputs");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(labels, "labels");
        checkShape(shape, "shape");
        Native.ensureLoaded();
        return adopt(Native.datasetClassesNew(inputs, shape, labels));
    }

    /**
     * A data set with float targets (for {@code mse} and {@code bce_with_logits} models):
     * {@code targets} has {@code targetShape}, whose first entry must equal the sample count.
     */
    public static Dataset ofValues(float[] inputs, long[] shape, float[] targets,
            long[] targetShape) {
        Objects.requireNonNull(inputs, "inputs");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(targets, "targets");
        Objects.requireNonNull(targetShape, "targetShape");
        checkShape(shape, "shape");
        checkShape(targetShape, "targetShape");
        Native.ensureLoaded();
        return adopt(Native.datasetValuesNew(inputs, shape, targets, targetShape));
    }

    private static void checkShape(long[] shape, String what) {
        for (long d : shape) {
            if (d < 0) {
                throw new IllegalArgumentException(what + " has a negative dimension: " + d);
            }
        }
    }

    /**
     * A new data set holding the samples at {@code indices} (copied, in that order; repeats
     * allowed).
     *
     * @throws GradtauException {@link Status#INVALID_ARGUMENT} for an index out of range
     */
    public Dataset subset(long[] indices) {
        Objects.requireNonNull(indices, "indices");
        for (long i : indices) {
            if (i < 0) {
                throw new IllegalArgumentException("negative index " + i);
            }
        }
        long p = handle.acquire();
        try {
            return adopt(Native.datasetSubset(p, indices));
        } finally {
            handle.release();
        }
    }

    /** {@link #subset(long[])} with int indices. */
    public Dataset subset(int[] indices) {
        Objects.requireNonNull(indices, "indices");
        long[] wide = new long[indices.length];
        for (int i = 0; i < indices.length; i++) {
            wide[i] = indices[i];
        }
        return subset(wide);
    }

    /** Number of samples. */
    public long size() {
        long p = handle.acquire();
        try {
            return Native.datasetLen(p);
        } finally {
            handle.release();
        }
    }

    /**
     * The class label of every sample.
     *
     * @throws GradtauException {@link Status#INVALID_ARGUMENT} if the set has float targets
     */
    public int[] labels() {
        long p = handle.acquire();
        try {
            return Native.datasetLabels(p);
        } finally {
            handle.release();
        }
    }

    /** The shape of one sample's inputs, without the sample dimension: {@code [64]} for the digits. */
    public long[] sampleShape() {
        long p = handle.acquire();
        try {
            return Native.datasetSampleShape(p);
        } finally {
            handle.release();
        }
    }

    /**
     * The inputs of every sample, row-major {@code [N, sample shape...]}, in a new array: the
     * samples of a set (the embedded digits, say) as unlabelled requests for
     * {@link Model#infer(float[], int, Output)}.
     *
     * @throws IllegalArgumentException if they do not fit one Java array (take a
     *     {@link #subset(long[])} first)
     */
    public float[] inputs() {
        long p = handle.acquire();
        try {
            long n = Native.datasetLen(p);
            long sampleNumel = numel(Native.datasetSampleShape(p));
            long len;
            try {
                len = Math.multiplyExact(n, sampleNumel);
            } catch (ArithmeticException e) {
                len = Long.MAX_VALUE;
            }
            if (len > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("the " + n + " samples of " + sampleNumel
                        + " floats each do not fit one Java array: take a subset first");
            }
            return Native.datasetInputs(p, len);
        } finally {
            handle.release();
        }
    }

    /** Whether {@link #close()} has been called. */
    public boolean isClosed() {
        return handle.isClosed();
    }

    /** Frees the data set; later calls on it throw IllegalStateException. Idempotent. */
    @Override
    public void close() {
        cleanable.clean();
    }

    NativeHandle handle() {
        return handle;
    }
}
