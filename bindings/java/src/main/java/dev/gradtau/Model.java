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
import java.util.function.Function;

/**
 * A model: the architecture compiled from a JSON spec ({@code gradtau.model/1}) plus the
 * host's weight buffers bound to its parameters.
 *
 * <p><b>Weights stay yours, in place.</b> {@link #bind} lends gradtau a direct, native-order
 * {@link FloatBuffer} per parameter (by its PyTorch {@code state_dict} name); gradtau reads it
 * during the read calls and once at the start of a run, and writes the new weights straight
 * into it when a train or unlearn call (or {@link #initWeights}) publishes its result (zero
 * copy). On any failure or cancellation the buffers are bit-for-bit unchanged (unless
 * {@code keepPartial}). Do not write a bound buffer while a call on the model may read or
 * write it. The model keeps a reference to every bound buffer, so the memory stays valid
 * while bound.
 *
 * <p><b>Threads.</b> A model serves while it learns:
 * <ul>
 *   <li>reads ({@link #infer}, {@link #classify}, {@link #predict}, {@link #losses},
 *       {@link #audit}, {@link #toOnnx} and the queries) may run on any number of threads at once, each with
 *       its own scratch memory, also while a run is in progress on the same model;
 *   <li>{@link #train} and {@link #unlearn} compute on a private copy of the weights, so reads
 *       during a run see the weights from before it, and publish the result at the end,
 *       atomically: a read sees the old model or the new one, never a mix;
 *   <li>writers ({@link #train}, {@link #unlearn}, {@link #bind}, {@link #unbindAll},
 *       {@link #initWeights}, {@link #loadOnnxWeights}, {@link #setPublishHook}) run one at a time per model: a second
 *       one throws {@link GradtauException} with {@link Status#BUSY} at once instead of
 *       waiting; reads never get {@link Status#BUSY};
 *   <li>neither side starves the other: reads hold the model only while they copy the
 *       weights, and a waiting publish holds off new reads for the length of one copy;
 *   <li>a host whose own engine reads the bound buffers publishes safely with
 *       {@link #setPublishHook} (take its lock at BEGIN, release it at END), or by double
 *       buffering: bind a second copy of the weights to a second model, unlearn there, then
 *       swap its own reference when the call returns;
 *   <li>{@link #setThreads} caps the CPU threads of every call on a model (by default each
 *       call may use every core), so a run can be given one core while serving keeps the
 *       others;
 *   <li>{@link #close()} may come at any time, also while calls run on other threads: the
 *       memory is freed when the last of them returns.
 * </ul>
 * Different models are independent and may be trained or unlearned in parallel.
 *
 * <p>Close the model when done (try-with-resources); a Cleaner frees forgotten ones.
 */
public final class Model implements AutoCloseable {
    private final NativeHandle handle;
    private final Cleaner.Cleanable cleanable;
    private final List<ParamInfo> params;
    private final Map<String, ParamInfo> byName;
    // Keeps every bound buffer (and so its memory) reachable while the native side holds its
    // address. Changed only by the one writer, so it always matches what the library holds.
    private final Map<String, FloatBuffer> bound = new HashMap<>();
    // The native side of the publish hook; freed after the model (see freeModel).
    private final HookContext hookContext = new HookContext();
    // The hook itself, held strongly here: the native context holds it only weakly, so a hook
    // that refers to this model does not keep it from being cleaned. While a writing call may
    // run the hook, this model is reachable (every call fences it).
    private volatile PublishHook publishHook;

    private Model(long pointer, List<ParamInfo> params) {
        this.params = Collections.unmodifiableList(params);
        Map<String, ParamInfo> names = new HashMap<>();
        for (ParamInfo info : params) {
            names.put(info.name(), info);
        }
        this.byName = names;
        // Registered last: once the Cleaner owns the pointer nothing here can fail, so the
        // pointer is freed either by adopt's catch or by the Cleaner, never by both.
        HookContext hook = hookContext;
        this.handle = new NativeHandle("Model", pointer, p -> freeModel(p, hook));
        this.cleanable = Native.CLEANER.register(this, handle);
    }

    /** The Cleaner's action; refers to the hook context only, never to the model. */
    private static void freeModel(long pointer, HookContext hook) {
        Native.modelFree(pointer);
        Native.publishHookFree(hook.pointer);
        hook.pointer = 0;
    }

    /** The native publish-hook context of a model (0: no hook). */
    private static final class HookContext {
        volatile long pointer;
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
        return adopt(Native.modelNew(specJson.getBytes(StandardCharsets.UTF_8)));
    }

    /**
     * Compiles a model from the bytes of an ONNX file (opset 13 and newer; the supported
     * operators are listed in the project README). Its parameters are the graph's initializers
     * under their ONNX names (for a PyTorch export, the {@code state_dict} names): bind buffers
     * to them as usual, then fill them with {@link #loadOnnxWeights()} or with your own values.
     * The library copies the bytes.
     *
     * @param loss the loss the model was trained with, {@code "cross_entropy"}, {@code "mse"}
     *     or {@code "bce_with_logits"} (ONNX does not record it)
     * @throws GradtauException {@link Status#SPEC} (not an ONNX model, or a graph gradtau
     *     cannot run: the message names the node, its op type and the reason),
     *     {@link Status#INVALID_ARGUMENT} (unknown loss), {@link Status#SHAPE}
     */
    public static Model fromOnnx(byte[] onnx, String loss) {
        Objects.requireNonNull(onnx, "onnx");
        Objects.requireNonNull(loss, "loss");
        byte[] cLoss = Native.cString(loss, "loss");
        Native.ensureLoaded();
        return adopt(Native.modelFromOnnx(onnx, cLoss));
    }

    /** Wraps a model pointer the library just returned; frees it if wrapping fails. */
    private static Model adopt(long p) {
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

    /**
     * Writes the initializer values of the ONNX file this model was made from into its bound
     * buffers (every parameter must be bound), published like a run's result (through the
     * {@link PublishHook}, if one is set). A writing call.
     *
     * @throws GradtauException {@link Status#INVALID_ARGUMENT} (the model was not made from an
     *     ONNX file), {@link Status#BINDING} (a parameter is unbound), {@link Status#BUSY},
     *     {@link Status#CANCELLED} (the publish hook refused)
     */
    public void loadOnnxWeights() {
        write("loadOnnxWeights", NO_DATA, p -> {
            Native.modelLoadOnnxWeights(p[0]);
            return null;
        });
    }

    /**
     * The ONNX file this model was made from, with its initializers replaced by the current
     * weights of the bound buffers: same graph, names, opset and metadata. A read: safe during
     * a run (it sees the weights from before it).
     *
     * @throws GradtauException {@link Status#INVALID_ARGUMENT} (the model was not made from an
     *     ONNX file), {@link Status#BINDING}, {@link Status#NON_FINITE}
     */
    public byte[] toOnnx() {
        return read(NO_DATA, p -> Native.modelToOnnx(p[0]));
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
        long p = handle.acquireWriter("bind");
        try {
            Native.modelBind(p, cName, view, 0, view.remaining());
            bound.put(name, view);
        } finally {
            handle.releaseWriter();
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

    /**
     * Forgets every bound buffer (their contents are not touched).
     *
     * @throws GradtauException {@link Status#BUSY}
     */
    public void unbindAll() {
        long p = handle.acquireWriter("unbindAll");
        try {
            Native.modelUnbindAll(p);
            bound.clear();
        } finally {
            handle.releaseWriter();
        }
    }

    /**
     * Writes PyTorch's default initialisation (seeded) into every bound buffer, published like
     * a run's result (through the {@link PublishHook}, if one is set).
     *
     * @throws GradtauException {@link Status#BINDING} if a parameter is unbound,
     *     {@link Status#BUSY}, {@link Status#CANCELLED} if the publish hook refused
     */
    public void initWeights(long seed) {
        write("initWeights", NO_DATA, p -> {
            Native.modelInitWeights(p[0], seed);
            return null;
        });
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
     * (held-out data the model never trained on). The run computes on a private copy of the
     * weights, so reads meanwhile see the weights from before it; the new weights are published
     * into the bound buffers (through the {@link PublishHook}, if one is set) only if the run
     * succeeds.
     *
     * @throws GradtauException {@link Status#CANCELLED} if {@code progress} returned false or
     *     the publish hook refused, {@link Status#BUSY} if another writing call is in progress
     *     on this model, {@link Status#BINDING}, {@link Status#SHAPE},
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
     * Audits the bound weights: the task's metric on the three sets (accuracy, MSE and MAE, or
     * macro F1, following the loss) and the membership attacks (forget = members, test =
     * non-members), seeded by {@code seed}. A read: never writes the buffers.
     */
    public AuditRow audit(Dataset retain, Dataset forget, Dataset test, long seed) {
        Objects.requireNonNull(retain, "retain");
        Objects.requireNonNull(forget, "forget");
        Objects.requireNonNull(test, "test");
        return read(new NativeHandle[] {retain.handle(), forget.handle(), test.handle()},
                p -> AuditRow.fromNative(Native.auditReport(p[0], p[1], p[2], p[3], seed)));
    }

    /**
     * The model's outputs (logits for a classifier) for every sample of {@code data} under the
     * bound weights, row-major {@code [N, outputShape...]}: sample {@code i}'s outputs start at
     * {@code i * prod(outputShape())}. The targets of {@code data} are not used
     * ({@link #infer(float[], int, Output)} needs none). Normalisation layers run in evaluation
     * mode. A read: never writes the buffers.
     *
     * @throws GradtauException {@link Status#BINDING} if a parameter is unbound,
     *     {@link Status#SHAPE} if the samples do not fit the model's input,
     *     {@link Status#NON_FINITE}
     */
    public float[] predict(Dataset data) {
        Objects.requireNonNull(data, "data");
        return read(new NativeHandle[] {data.handle()}, p -> Native.predict(p[0], p[1]));
    }

    /**
     * The per-sample training loss (the spec's cross-entropy, MSE or BCE-with-logits) of every
     * sample of {@code data} under the bound weights, one per sample, in evaluation mode. A
     * read: never writes the buffers.
     *
     * @throws GradtauException as {@link #predict(Dataset)}
     */
    public float[] losses(Dataset data) {
        Objects.requireNonNull(data, "data");
        return read(new NativeHandle[] {data.handle()}, p -> Native.losses(p[0], p[1]));
    }

    /**
     * Inference on unlabelled inputs: {@code count} samples laid out row-major
     * {@code [count, inputShape...]} in {@code inputs} (exactly
     * {@code count * prod(inputShape())} floats). Returns a new array
     * {@code [count, outputShape...]} with the raw outputs or the probabilities, as
     * {@code kind} says. Normalisation layers run in evaluation mode. A count of 0 with an
     * empty array is an empty batch and returns an empty array. A read: any number may run at
     * once, also during a run (they see the weights from before the run until it publishes).
     *
     * @throws IllegalArgumentException for a negative count, or an output too large for one
     *     Java array (infer in smaller batches)
     * @throws GradtauException {@link Status#SHAPE} (an input length that does not match),
     *     {@link Status#INVALID_ARGUMENT} (probabilities of an {@code mse} model),
     *     {@link Status#NON_FINITE} (NaN or infinity in the inputs or the weights, or outputs
     *     that overflow), {@link Status#BINDING} (a parameter is unbound)
     */
    public float[] infer(float[] inputs, int count, Output kind) {
        Objects.requireNonNull(inputs, "inputs");
        Objects.requireNonNull(kind, "kind");
        checkCount(count);
        return read(NO_DATA, p -> Native.infer(p[0], inputs, null, 0, inputs.length, count,
                kind.code));
    }

    /**
     * {@link #infer(float[], int, Output)} on the floats from {@code inputs}' position to its
     * limit (its position is not moved). A direct buffer in native order is read in place;
     * any other buffer is copied first.
     */
    public float[] infer(FloatBuffer inputs, int count, Output kind) {
        Objects.requireNonNull(inputs, "inputs");
        Objects.requireNonNull(kind, "kind");
        checkCount(count);
        return withInputs(inputs, (array, direct, offset, len) -> read(NO_DATA,
                p -> Native.infer(p[0], array, direct, offset, len, count, kind.code)));
    }

    /**
     * The predicted class (argmax of the outputs) of each of {@code count} unlabelled samples,
     * for a {@code cross_entropy} model. Inputs, empty batches and concurrency as in
     * {@link #infer(float[], int, Output)}.
     *
     * @throws GradtauException as {@link #infer(float[], int, Output)};
     *     {@link Status#INVALID_ARGUMENT} for a model whose loss is not {@code cross_entropy}
     */
    public int[] classify(float[] inputs, int count) {
        Objects.requireNonNull(inputs, "inputs");
        checkCount(count);
        return read(NO_DATA, p -> Native.classify(p[0], inputs, null, 0, inputs.length, count));
    }

    /** {@link #classify(float[], int)} on a buffer, read as {@link #infer(FloatBuffer, int, Output)} does. */
    public int[] classify(FloatBuffer inputs, int count) {
        Objects.requireNonNull(inputs, "inputs");
        checkCount(count);
        return withInputs(inputs, (array, direct, offset, len) -> read(NO_DATA,
                p -> Native.classify(p[0], array, direct, offset, len, count)));
    }

    private static void checkCount(int count) {
        if (count < 0) {
            throw new IllegalArgumentException("negative sample count " + count);
        }
    }

    /** Where the floats of an inference request are: a Java array region or a direct buffer. */
    @FunctionalInterface
    private interface InputsCall<T> {
        T apply(float[] array, FloatBuffer direct, long offset, long len);
    }

    private static <T> T withInputs(FloatBuffer inputs, InputsCall<T> call) {
        if (inputs.isDirect() && inputs.order() == ByteOrder.nativeOrder()) {
            return call.apply(null, inputs, inputs.position(), inputs.remaining());
        }
        if (inputs.hasArray()) {
            return call.apply(inputs.array(), null, inputs.arrayOffset() + inputs.position(),
                    inputs.remaining());
        }
        float[] copy = new float[inputs.remaining()];
        inputs.duplicate().get(copy);
        return call.apply(copy, null, 0, copy.length);
    }

    /**
     * Caps the CPU threads that every later call on this model uses (training, unlearning,
     * inference, audits); 0 (the default) means no cap: as many threads as the machine has
     * cores, or {@code MATMUL_NUM_THREADS} when set. A call already running keeps its cap. A
     * setting, not a writer: safe at any time, also while other calls run. On a two-core
     * server, {@code setThreads(1)} gives a run one core and leaves the other to serving.
     *
     * @throws IllegalArgumentException for a negative number
     */
    public void setThreads(int threads) {
        if (threads < 0) {
            throw new IllegalArgumentException("negative thread cap " + threads);
        }
        read(NO_DATA, p -> {
            Native.modelSetThreads(p[0], threads);
            return null;
        });
    }

    /**
     * Sets the memory budget, in bytes, of every later call on this model that computes
     * (inference, audits, training, unlearning): before it allocates anything, such a call
     * estimates its peak memory and throws {@link GradtauException} with
     * {@link Status#RESOURCE_LIMIT} (naming the largest node and the bytes, buffers untouched)
     * when the estimate is above the budget. 0 restores the default: 3/4 of the memory the
     * machine reports available when the call starts. A setting, not a writer: safe at any
     * time; a call already running keeps the budget it started with.
     *
     * @throws IllegalArgumentException for a negative number
     */
    public void setMemoryLimit(long bytes) {
        if (bytes < 0) {
            throw new IllegalArgumentException("negative memory limit " + bytes);
        }
        read(NO_DATA, p -> {
            Native.modelSetMemoryLimit(p[0], bytes);
            return null;
        });
    }

    /** The cap set by {@link #setThreads(int)} (0: none). */
    public int threads() {
        return read(NO_DATA, p -> (int) Math.min(Integer.MAX_VALUE, Native.modelThreads(p[0])));
    }

    /**
     * Sets the hook gradtau calls around every publish of new weights into this model's bound
     * buffers (see {@link PublishHook}); {@code null} removes it. The model holds the hook until
     * it is replaced or the model is closed. A writing call.
     *
     * @throws GradtauException {@link Status#BUSY} while another writing call (a run, say) is in
     *     progress on this model
     */
    public void setPublishHook(PublishHook hook) {
        write("setPublishHook", NO_DATA, p -> {
            long context = Native.publishHookSet(p[0], hook);
            long old = hookContext.pointer;
            hookContext.pointer = context;
            publishHook = hook;
            // The library no longer refers to the old context, and no writer can be running
            // its hook: this call is the one writer.
            Native.publishHookFree(old);
            return null;
        });
    }

    // What a publish hook threw at BEGIN on this thread, attached to the CANCELLED it caused.
    private static final ThreadLocal<Throwable> HOOK_FAILURE = new ThreadLocal<>();

    /**
     * Called by the JNI glue around a publish, on the thread of the writing call. Nothing may
     * propagate into the library, so an exception becomes a refusal (at BEGIN) and is kept for
     * the writing call to report.
     */
    @SuppressWarnings("unused")
    private static boolean dispatchPublish(PublishHook hook, int phase) {
        try {
            return hook.onPublish(PublishPhase.fromCode(phase));
        } catch (Throwable t) {
            if (phase == PublishPhase.BEGIN.code) {
                HOOK_FAILURE.set(t);
            }
            return false;
        }
    }

    private Report runTrain(Dataset data, TrainOptions options, Progress progress) {
        Objects.requireNonNull(data, "data");
        Objects.requireNonNull(options, "options");
        OptionsStruct o = options.struct();
        byte[] bytes = o.bytes();
        String[] stringFields = o.stringFields();
        byte[][] stringValues = o.stringValues();
        return write("train", new NativeHandle[] {data.handle()},
                p -> Native.train(p[0], p[1], bytes, stringFields, stringValues, progress));
    }

    private Report runUnlearn(Dataset forget, Dataset retain, Dataset val, UnlearnOptions options,
            Progress progress) {
        OptionsStruct o = options.struct();
        byte[] bytes = o.bytes();
        String[] stringFields = o.stringFields();
        byte[][] stringValues = o.stringValues();
        return write("unlearn", new NativeHandle[] {forget.handle(), retain.handle(), val.handle()},
                p -> Native.unlearn(p[0], p[1], p[2], p[3], bytes, stringFields, stringValues,
                        progress));
    }

    private static final NativeHandle[] NO_DATA = new NativeHandle[0];

    /**
     * Runs a read call: {@code body} gets the model's pointer, then those of {@code data}, all
     * counted as in use until it returns.
     */
    private <T> T read(NativeHandle[] data, Function<long[], T> body) {
        long model = handle.acquire();
        try {
            return withData(model, data, body);
        } finally {
            handle.release();
            // The bound buffers (reachable from this) must outlive the native call.
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Runs a writing call as the model's one writer ({@link Status#BUSY} at once otherwise).
     * A CANCELLED that a throwing publish hook caused gets the hook's exception as its cause.
     */
    private <T> T write(String call, NativeHandle[] data, Function<long[], T> body) {
        long model = handle.acquireWriter(call);
        try {
            HOOK_FAILURE.remove();
            return withData(model, data, body);
        } catch (GradtauException e) {
            Throwable hookFailure = HOOK_FAILURE.get();
            if (hookFailure != null && e.status() == Status.CANCELLED && e.getCause() == null) {
                e.initCause(hookFailure);
            }
            throw e;
        } finally {
            HOOK_FAILURE.remove();
            handle.releaseWriter();
            Reference.reachabilityFence(this);
        }
    }

    private static <T> T withData(long model, NativeHandle[] data, Function<long[], T> body) {
        long[] p = new long[data.length + 1];
        p[0] = model;
        int i = 0;
        try {
            for (; i < data.length; i++) {
                p[i + 1] = data[i].acquire();
            }
            return body.apply(p);
        } finally {
            for (int j = 0; j < i; j++) {
                data[j].release();
            }
        }
    }

    NativeHandle handle() {
        return handle;
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
