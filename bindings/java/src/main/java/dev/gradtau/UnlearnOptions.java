package dev.gradtau;

import java.util.Objects;

/**
 * Options of {@link Model#unlearn}, mirroring {@code gradtau_unlearn_options}. Immutable; build
 * with {@link #builder(Method)}, which starts from the library's defaults for the method
 * ({@code gradtau_unlearn_options_default}). Fields a method does not use are ignored. Values
 * the library rejects (a negative learning rate, α₀ outside [0, 1], an unknown device) fail
 * the run with {@link Status#INVALID_ARGUMENT}.
 */
public final class UnlearnOptions {
    // Index layout shared with gradtau_jni.c (U_* / UF_*).
    static final int METHOD = 0;
    static final int MODE = 1;
    static final int BATCH_SIZE = 2;
    static final int EPOCHS = 3;
    static final int TAU_EVERY = 4;
    static final int NORM_TRAINING = 5;
    static final int SEED = 6;
    static final int KEEP_PARTIAL = 7;
    static final int MAX_STEPS = 8;
    static final int INTS = 9;
    static final int LR = 0;
    static final int WEIGHT_DECAY = 1;
    static final int LR_END_FACTOR = 2;
    static final int ALPHA0 = 3;
    static final int STOP_MARGIN = 4;
    static final int RETAIN_WEIGHT = 5;
    static final int ALPHA_MAX = 6;
    static final int FLOATS = 7;

    private final long[] ints;
    private final float[] floats;
    private final String device;

    private UnlearnOptions(Builder b) {
        this.ints = b.ints.clone();
        this.floats = b.floats.clone();
        this.device = b.device;
    }

    /** The defaults of ∇τ. */
    public static UnlearnOptions defaults() {
        return builder(Method.NABLA_TAU).build();
    }

    /** A builder starting from the library's defaults for ∇τ. */
    public static Builder builder() {
        return builder(Method.NABLA_TAU);
    }

    /** A builder starting from the library's defaults for {@code method}. */
    public static Builder builder(Method method) {
        Objects.requireNonNull(method, "method");
        Native.ensureLoaded();
        long[] ints = new long[INTS];
        float[] floats = new float[FLOATS];
        Native.unlearnDefaults(method.code, ints, floats);
        return new Builder(ints, floats, null);
    }

    /** A builder holding these options. */
    public Builder toBuilder() {
        return new Builder(ints.clone(), floats.clone(), device);
    }

    long[] ints() {
        return ints.clone();
    }

    float[] floats() {
        return floats.clone();
    }

    public Method method() {
        return Method.fromCode(ints[METHOD]);
    }

    public NablaTauMode mode() {
        return NablaTauMode.fromCode(ints[MODE]);
    }

    public long batchSize() {
        return ints[BATCH_SIZE];
    }

    public long epochs() {
        return ints[EPOCHS];
    }

    public long tauEvery() {
        return ints[TAU_EVERY];
    }

    public boolean normTraining() {
        return ints[NORM_TRAINING] != 0;
    }

    public long seed() {
        return ints[SEED];
    }

    public boolean keepPartial() {
        return ints[KEEP_PARTIAL] != 0;
    }

    public long maxSteps() {
        return ints[MAX_STEPS];
    }

    public float lr() {
        return floats[LR];
    }

    public float weightDecay() {
        return floats[WEIGHT_DECAY];
    }

    public float lrEndFactor() {
        return floats[LR_END_FACTOR];
    }

    public float alpha0() {
        return floats[ALPHA0];
    }

    public float alphaMax() {
        return floats[ALPHA_MAX];
    }

    public float stopMargin() {
        return floats[STOP_MARGIN];
    }

    public float retainWeight() {
        return floats[RETAIN_WEIGHT];
    }

    /** {@code "auto"}, {@code "cpu"}, {@code "cuda"} or {@code "cuda:N"}; null means auto. */
    public String device() {
        return device;
    }

    /** Builds {@link UnlearnOptions}; sizes must not be negative. */
    public static final class Builder {
        private final long[] ints;
        private final float[] floats;
        private String device;

        private Builder(long[] ints, float[] floats, String device) {
            this.ints = ints;
            this.floats = floats;
            this.device = device;
        }

        private static long size(long v, String what) {
            if (v < 0) {
                throw new IllegalArgumentException(what + " must not be negative: " + v);
            }
            return v;
        }

        /** ∇τ only. */
        public Builder mode(NablaTauMode mode) {
            ints[MODE] = Objects.requireNonNull(mode, "mode").code;
            return this;
        }

        /** ∇τ: 0 picks the method's rule. Baselines: must be positive. */
        public Builder batchSize(long batchSize) {
            ints[BATCH_SIZE] = size(batchSize, "batchSize");
            return this;
        }

        /** ∇τ: forget-epochs, 0 picks the method's rule. Baselines: must be positive. */
        public Builder epochs(long epochs) {
            ints[EPOCHS] = size(epochs, "epochs");
            return this;
        }

        /** ∇τ paper mode: τ is recomputed every this many forget-epochs. */
        public Builder tauEvery(long tauEvery) {
            ints[TAU_EVERY] = size(tauEvery, "tauEvery");
            return this;
        }

        /** ∇τ: run normalisation layers in training mode. */
        public Builder normTraining(boolean normTraining) {
            ints[NORM_TRAINING] = normTraining ? 1 : 0;
            return this;
        }

        /** Any 64-bit value (passed as the C {@code uint64_t}). */
        public Builder seed(long seed) {
            ints[SEED] = seed;
            return this;
        }

        /** A cancelled or failed run still writes the weights it reached. */
        public Builder keepPartial(boolean keepPartial) {
            ints[KEEP_PARTIAL] = keepPartial ? 1 : 0;
            return this;
        }

        /** ∇τ: stop after this many steps (the report says truncated); 0 = no limit. */
        public Builder maxSteps(long maxSteps) {
            ints[MAX_STEPS] = size(maxSteps, "maxSteps");
            return this;
        }

        /**
         * AdamW learning rate. ∇τ: NaN (its default) picks the mode's rule (paper: 1e-3;
         * adaptive: 1e-3 × 10 × forget fraction, within [1e-3, 3e-3]).
         */
        public Builder lr(float lr) {
            floats[LR] = lr;
            return this;
        }

        public Builder weightDecay(float weightDecay) {
            floats[WEIGHT_DECAY] = weightDecay;
            return this;
        }

        /** ∇τ: the learning rate decays linearly to {@code lr * lrEndFactor}. */
        public Builder lrEndFactor(float lrEndFactor) {
            floats[LR_END_FACTOR] = lrEndFactor;
            return this;
        }

        /**
         * ∇τ: initial forget weight α₀ in [0, 1]; NaN picks the mode's default (paper: 5/3 ·
         * forget fraction; adaptive: 0.4).
         */
        public Builder alpha0(float alpha0) {
            floats[ALPHA0] = alpha0;
            return this;
        }

        /**
         * ∇τ adaptive mode: the largest value α's controller may raise α to, in [α₀, 1]; NaN
         * picks 0.8. Set it to α₀ to keep α on its schedule.
         */
        public Builder alphaMax(float alphaMax) {
            floats[ALPHA_MAX] = alphaMax;
            return this;
        }

        /** ∇τ adaptive mode: the membership-test margin under which forgetting stops. */
        public Builder stopMargin(float stopMargin) {
            floats[STOP_MARGIN] = stopMargin;
            return this;
        }

        /** NegGrad+: weight of the retain term, in [0, 1]. */
        public Builder retainWeight(float retainWeight) {
            floats[RETAIN_WEIGHT] = retainWeight;
            return this;
        }

        /** {@code "auto"}, {@code "cpu"}, {@code "cuda"} or {@code "cuda:N"}; null = auto. */
        public Builder device(String device) {
            this.device = device;
            return this;
        }

        public UnlearnOptions build() {
            return new UnlearnOptions(this);
        }
    }
}
