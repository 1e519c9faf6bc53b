package dev.gradtau;

import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * A model: the architecture compiled from a JSON spec ({@code gradtau.model/1}) plus the
 * host's weight buffers bound to its parameters.
 *
 * <p><b>Weights stay yours, in place.</b> {@link #bind} lends gradtau a direct, native-order
 * {@link FloatBuffer} per parameter (by its PyTorch {@code state_dict} name); gradtau reads it
 * during {@link #initWeights}, {@link #train}, {@link #unlearn}, {@link #audit}, {@link #predict}
 * and {@link #losses}, and writes the new weights straight into it when a train or unlearn call
 * succeeds (zero copy). On any failure or
 * cancellation the buffers are bit-for-bit unchanged (unless {@code keepPartial}). Do not
 * write a bound buffer while a call on the model runs. The model keeps a reference to every
 * bound buffer, so the memory stays valid while bound.
 *
 * <p><b>Threads.</b> The queries ({@link #params()}, shapes, {@link #loss()}) may run any
 * time. The other calls run one at a time per model: a second concurrent call on the same
 * model throws {@link GradtauException} with {@link Status#BUSY} at once instead of waiting.
 * Different models are independent and may run in parallel.
 *
 * <p>Close the model when done (try-with-resources); a Cleaner frees forgotten ones. Closing
 * while a call runs on another thread is safe: the memory is freed when that call returns.
 */
public final class Model implements AutoCloseable {
    private final NativeHandle handle;
    private final Cleaner.Cleanable cleanable;
    private final List<ParamInfo> params;
    private final Map<String, ParamInfo> byName;
    private final Object bindLock = new Object();
    // Keeps every bound buffer (and so its memory) reachable while the native side holds its
    // address. Guarded by bindLock so that it always matches what the library holds.
    private final Map<String, FloatBuffer> bound = new HashMap<>();

    private Model(long pointer, List<ParamInfo> params) {
        this.params = Collections.unmodifiableList(params);
        Map<String, ParamInfo> names = new HashMap<>();
        for (ParamInfo info : params) {
            names.put(info.name(), info);
        }
        this.byName = names;
        // Registered last: once the Cleaner owns the pointer nothing here can fail, so the
        // pointer is freed either by fromJson's catch or by the Cleaner, never by both.
        this.handle = new NativeHandle("Model", pointer, Native::modelFree);
        this.cleanable = Native.CLEANER.register(this, handle);
    }

    /**
     * Compiles a model from its JSON spec.
     *
     * @throws GradtauException {@link Status#SPEC} for a malformed spec (the message names the
     *     node and field), {@link Status#SHAPE} for layers that do not fit together
     */
    public static Model fromJson(String specJson) {
        Objects.requireNonNull(specJson, "specJson");
        Native.ensureLoaded();
        long p = Native.modelNew(specJson.getBytes(StandardCharsets.UTF_8));
        try {
            long n = Native.modelParamCount(p);
            List<ParamInfo> params = new ArrayList<>();
            for (long i = 0; i < n; i++) {
                params.add(Native.modelParam(p, i));
            }
            return new Model(p, params);
        } catch (RuntimeException | Error e) {
            Native.modelFree(p);
            throw e;
        }
    }

    /** Every parameter (and buffer), in spec order. */
    public List<ParamInfo> params() {
        return params;
    }

    /**
     * The parameter called {@code name}.
     *
     * @throws GradtauException {@link Status#BINDING} if there is none
     */
    public ParamInfo param(String name) {
        Objects.requireNonNull(name, "name");
        return params.get((int) paramIndex(name));
    }

    /** The 0-based index of the parameter {@code name} ({@link Status#BINDING} if unknown). */
    public long paramIndex(String name) {
        Objects.requireNonNull(name, "name");
        byte[] cName = Native.cString(name, "name");
        long p = handle.acquire();
        try {
            return Native.modelParamIndex(p, cName);
        } finally {
            handle.release();
        }
    }

    /** The per-sample input shape (without the batch dimension). */
    public long[] inputShape() {
        return shape(false);
    }

    /** The per-sample output shape, e.g. {@code [10]} for ten classes. */
    public long[] outputShape() {
        return shape(true);
    }

    private long[] shape(boolean output) {
        long p = handle.acquire();
        try {
            return Native.modelShape(p, output);
        } finally {
            handle.release();
        }
    }

    /** {@code "cross_entropy"}, {@code "mse"} or {@code "bce_with_logits"}. */
    public String loss() {
        long p = handle.acquire();
        try {
            return Native.modelLoss(p);
        } finally {
            handle.release();
        }
    }

    /**
     * Lends {@code buffer} as the parameter {@code name}: the floats from its position to its
     * limit, which must be exactly the parameter's {@code numel}. Binding a name again replaces
     * the earlier buffer.
     *
     * @param buffer a direct buffer in native byte order, e.g.
     *     {@code ByteBuffer.allocateDirect(4 * n).order(ByteOrder.nativeOrder()).asFloatBuffer()}
     * @throws IllegalArgumentException for a heap, read-only or non-native-order buffer
     * @throws GradtauException {@link Status#BINDING} (unknown name, wrong length),
     *     {@link Status#INVALID_ARGUMENT} (misaligned, overlapping another bound buffer),
     *     {@link Status#BUSY}
     */
    public void bind(String name, FloatBuffer buffer) {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(buffer, "buffer");
        if (!buffer.isDirect()) {
            throw new IllegalArgumentException("bind(\"" + name + "\"): the buffer is a heap buffer;"
                    + " gradtau writes the weights in place, so it needs a direct buffer:"
                    + " ByteBuffer.allocateDirect(4 * n).order(ByteOrder.nativeOrder()).asFloatBuffer()"
                    + " (or Model.bindNew)");
        }
        if (buffer.isReadOnly()) {
            throw new IllegalArgumentException(
                    "bind(\"" + name + "\"): the buffer is read-only, but gradtau writes the new weights into it");
        }
        if (buffer.order() != ByteOrder.nativeOrder()) {
            throw new IllegalArgumentException("bind(\"" + name + "\"): the buffer is " + buffer.order()
                    + " but gradtau reads native-order floats (" + ByteOrder.nativeOrder()
                    + "): create the view with .order(ByteOrder.nativeOrder()).asFloatBuffer()");
        }
        byte[] cName = Native.cString(name, "name");
        // A defensive view: the caller may move position/limit afterwards without changing
        // what is bound, and the view keeps the memory reachable.
        FloatBuffer view = buffer.slice();
        synchronized (bindLock) {
            long p = handle.acquire();
            try {
                Native.modelBind(p, cName, view, 0, view.remaining());
                bound.put(name, view);
            } finally {
                handle.release();
            }
        }
    }

    /**
     * Allocates a zeroed direct native-order buffer of the parameter's size, binds it as
     * {@code name} and returns it.
     */
    public FloatBuffer bindNew(String name) {
        Objects.requireNonNull(name, "name");
        ParamInfo info = byName.get(name);
        if (info == null) {
            paramIndex(name); // throws the library's BINDING error naming the parameter
            throw new IllegalStateException("unknown parameter " + name);
        }
        if (info.numel() > Integer.MAX_VALUE / Float.BYTES) {
            throw new IllegalArgumentException(name + " has " + info.numel()
                    + " floats, more than one Java buffer holds");
        }
        FloatBuffer buffer = ByteBuffer.allocateDirect((int) info.numel() * Float.BYTES)
                .order(ByteOrder.nativeOrder())
                .asFloatBuffer();
        bind(name, buffer);
        return buffer;
    }

    /** Forgets every bound buffer (their contents are not touched). */
    public void unbindAll() {
        synchronized (bindLock) {
            long p = handle.acquire();
            try {
                Native.modelUnbindAll(p);
                bound.clear();
            } finally {
                handle.release();
            }
        }
    }

    /**
     * Writes PyTorch's default initialisation (seeded) into every bound buffer.
     *
     * @throws GradtauException {@link Status#BINDING} if a parameter is unbound,
     *     {@link Status#BUSY}
     */
    public void initWeights(long seed) {
        long p = handle.acquire();
        try {
            Native.modelInitWeights(p, seed);
        } finally {
            handle.release();
            Reference.reachabilityFence(this);
        }
    }

    /** {@link #train(Dataset, TrainOptions, Progress)} with the defaults and no callback. */
    public Report train(Dataset data) {
        return train(data, TrainOptions.defaults());
    }

    /** {@link #train(Dataset, TrainOptions, Progress)} without a callback. */
    public Report train(Dataset data, TrainOptions options) {
        return runTrain(data, options, null);
    }

    /**
     * Trains the bound weights on {@code data}; they are written only if the run succeeds.
     *
     * @throws GradtauException as {@link #unlearn(Dataset, Dataset, Dataset, UnlearnOptions, Progress)}
     */
    public Report train(Dataset data, TrainOptions options, Progress progress) {
        Objects.requireNonNull(progress, "progress");
        return runTrain(data, options, progress);
    }

    /** {@link #unlearn(Dataset, Dataset, Dataset, UnlearnOptions, Progress)} with ∇τ defaults. */
    public Report unlearn(Dataset forget, Dataset retain, Dataset val) {
        return unlearn(forget, retain, val, UnlearnOptions.defaults());
    }

    /** {@link #unlearn(Dataset, Dataset, Dataset, UnlearnOptions, Progress)} without a callback. */
    public Report unlearn(Dataset forget, Dataset retain, Dataset val, UnlearnOptions options) {
        Objects.requireNonNull(forget, "forget");
        Objects.requireNonNull(retain, "retain");
        Objects.requireNonNull(val, "val");
        Objects.requireNonNull(options, "options");
        return runUnlearn(forget, retain, val, options, null);
    }

    /**
     * Unlearns {@code forget} from the bound weights, using {@code retain} and {@code val}
     * (held-out data the model never trained on). The new weights are written into the bound
     * buffers only if the run succeeds.
     *
     * @throws GradtauException {@link Status#CANCELLED} if {@code progress} returned false,
     *     {@link Status#BUSY}, {@link Status#BINDING}, {@link Status#SHAPE},
     *     {@link Status#INVALID_ARGUMENT}, {@link Status#NON_FINITE}, ...
     * @throws RuntimeException whatever {@code progress} threw (the run was cancelled)
     */
    public Report unlearn(Dataset forget, Dataset retain, Dataset val, UnlearnOptions options,
            Progress progress) {
        Objects.requireNonNull(forget, "forget");
        Objects.requireNonNull(retain, "retain");
        Objects.requireNonNull(val, "val");
        Objects.requireNonNull(options, "options");
        Objects.requireNonNull(progress, "progress");
        return runUnlearn(forget, retain, val, options, progress);
    }

    /**
     * Audits the bound weights: accuracy on the three sets and the membership-inference attack
     * (forget = members, test = non-members), seeded by {@code seed}. Never writes the buffers.
     */
    public AuditRow audit(Dataset retain, Dataset forget, Dataset test, long seed) {
        Objects.requireNonNull(retain, "retain");
        Objects.requireNonNull(forget, "forget");
        Objects.requireNonNull(test, "test");
        NativeHandle[] hs = {handle, retain.handle(), forget.handle(), test.handle()};
        long[] p = acquireAll(hs);
        try {
            return Native.audit(p[0], p[1], p[2], p[3], seed);
        } finally {
            releaseAll(hs);
            Reference.reachabilityFence(this);
        }
    }

    /**
     * The model's outputs (logits for a classifier) for every sample of {@code data} under the
     * bound weights, row-major {@code [N, outputShape...]}: sample {@code i}'s outputs start at
     * {@code i * prod(outputShape())}. Normalisation layers run in evaluation mode. Never writes
     * the buffers.
     *
     * @throws GradtauException {@link Status#BINDING} if a parameter is unbound,
     *     {@link Status#SHAPE} if the samples do not fit the model's input,
     *     {@link Status#NON_FINITE}, {@link Status#BUSY}
     */
    public float[] predict(Dataset data) {
        return eval(data, false);
    }

    /**
     * The per-sample training loss (the spec's cross-entropy, MSE or BCE-with-logits) of every
     * sample of {@code data} under the bound weights, one per sample, in evaluation mode. Never
     * writes the buffers.
     *
     * @throws GradtauException as {@link #predict(Dataset)}
     */
    public float[] losses(Dataset data) {
        return eval(data, true);
    }

    private float[] eval(Dataset data, boolean losses) {
        Objects.requireNonNull(data, "data");
        NativeHandle[] hs = {handle, data.handle()};
        long[] p = acquireAll(hs);
        try {
            return losses ? Native.losses(p[0], p[1]) : Native.predict(p[0], p[1]);
        } finally {
            releaseAll(hs);
            Reference.reachabilityFence(this);
        }
    }

    private Report runTrain(Dataset data, TrainOptions options, Progress progress) {
        Objects.requireNonNull(data, "data");
        Objects.requireNonNull(options, "options");
        OptionsStruct o = options.struct();
        byte[] bytes = o.bytes();
        String[] stringFields = o.stringFields();
        byte[][] stringValues = o.stringValues();
        NativeHandle[] hs = {handle, data.handle()};
        long[] p = acquireAll(hs);
        try {
            return Native.train(p[0], p[1], bytes, stringFields, stringValues, progress);
        } finally {
            releaseAll(hs);
            // The bound buffers (reachable from this) must outlive the native call.
            Reference.reachabilityFence(this);
        }
    }

    private Report runUnlearn(Dataset forget, Dataset retain, Dataset val, UnlearnOptions options,
            Progress progress) {
        OptionsStruct o = options.struct();
        byte[] bytes = o.bytes();
        String[] stringFields = o.stringFields();
        byte[][] stringValues = o.stringValues();
        NativeHandle[] hs = {handle, forget.handle(), retain.handle(), val.handle()};
        long[] p = acquireAll(hs);
        try {
            return Native.unlearn(p[0], p[1], p[2], p[3], bytes, stringFields, stringValues,
                    progress);
        } finally {
            releaseAll(hs);
            Reference.reachabilityFence(this);
        }
    }

    private static long[] acquireAll(NativeHandle[] hs) {
        long[] p = new long[hs.length];
        int i = 0;
        try {
            for (; i < hs.length; i++) {
                p[i] = hs[i].acquire();
            }
            return p;
        } catch (RuntimeException e) {
            for (int j = 0; j < i; j++) {
                hs[j].release();
            }
            throw e;
        }
    }

    private static void releaseAll(NativeHandle[] hs) {
        for (NativeHandle h : hs) {
            h.release();
        }
    }

    /** Whether {@link #close()} has been called. */
    public boolean isClosed() {
        return handle.isClosed();
    }

    /**
     * Frees the model; later calls throw IllegalStateException. The bound buffers are not
     * touched. Idempotent.
     */
    @Override
    public void close() {
        // The bound-buffer map is deliberately kept: a call still running on another thread
        // writes those buffers until it returns (the native free waits for it).
        cleanable.clean();
    }
}
