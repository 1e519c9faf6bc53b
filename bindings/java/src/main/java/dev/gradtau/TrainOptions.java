package dev.gradtau;

import java.util.Objects;

/**
 * Options of {@link Model#train}, mirroring {@code gradtau_train_options}. Immutable; build
 * with {@link #builder()}, which starts from the library's defaults (AdamW, lr 1e-3, weight
 * decay 0.01, 10 epochs, batch 64, CPU).
 */
public final class TrainOptions {
    // Index layout shared with gradtau_jni.c (T_* / TF_*).
    static final int OPTIMIZER = 0;
    static final int NESTEROV = 1;
    static final int EPOCHS = 2;
    static final int BATCH_SIZE = 3;
    static final int SEED = 4;
    static final int KEEP_PARTIAL = 5;
    static final int INTS = 6;
    static final int LR = 0;
    static final int WEIGHT_DECAY = 1;
    static final int MOMENTUM = 2;
    static final int CLIP_NORM = 3;
    static final int FLOATS = 4;

    private final long[] ints;
    private final float[] floats;
    private final String device;

    private TrainOptions(Builder b) {
        this.ints = b.ints.clone();
        this.floats = b.floats.clone();
        this.device = b.device;
    }

    /** The library's training defaults. */
    public static TrainOptions defaults() {
        return builder().build();
    }

    /** A builder starting from the library's training defaults. */
    public static Builder builder() {
        Native.ensureLoaded();
        long[] ints = new long[INTS];
        float[] floats = new float[FLOATS];
        Native.trainDefaults(ints, floats);
        return new Builder(ints, floats, null);
    }

    public Builder toBuilder() {
        return new Builder(ints.clone(), floats.clone(), device);
    }

    long[] ints() {
        return ints.clone();
    }

    float[] floats() {
        return floats.clone();
    }

    public Optimizer optimizer() {
        return Optimizer.fromCode(ints[OPTIMIZER]);
    }

    public boolean nesterov() {
        return ints[NESTEROV] != 0;
    }

    public long epochs() {
        return ints[EPOCHS];
    }

    public long batchSize() {
        return ints[BATCH_SIZE];
    }

    public long seed() {
        return ints[SEED];
    }

    public boolean keepPartial() {
        return ints[KEEP_PARTIAL] != 0;
    }

    public float lr() {
        return floats[LR];
    }

    public float weightDecay() {
        return floats[WEIGHT_DECAY];
    }

    public float momentum() {
        return floats[MOMENTUM];
    }

    public float clipNorm() {
        return floats[CLIP_NORM];
    }

    /** The device; null means {@code "cpu"}. */
    public String device() {
        return device;
    }

    /** Builds {@link TrainOptions}; sizes must not be negative. */
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

        public Builder optimizer(Optimizer optimizer) {
            ints[OPTIMIZER] = Objects.requireNonNull(optimizer, "optimizer").code;
            return this;
        }

        /** SGD only. */
        public Builder nesterov(boolean nesterov) {
            ints[NESTEROV] = nesterov ? 1 : 0;
            return this;
        }

        public Builder epochs(long epochs) {
            ints[EPOCHS] = size(epochs, "epochs");
            return this;
        }

        public Builder batchSize(long batchSize) {
            ints[BATCH_SIZE] = size(batchSize, "batchSize");
            return this;
        }

        public Builder seed(long seed) {
            ints[SEED] = seed;
            return this;
        }

        public Builder keepPartial(boolean keepPartial) {
            ints[KEEP_PARTIAL] = keepPartial ? 1 : 0;
            return this;
        }

        public Builder lr(float lr) {
            floats[LR] = lr;
            return this;
        }

        public Builder weightDecay(float weightDecay) {
            floats[WEIGHT_DECAY] = weightDecay;
            return this;
        }

        /** SGD only. */
        public Builder momentum(float momentum) {
            floats[MOMENTUM] = momentum;
            return this;
        }

        /** Clip the global gradient norm to this value; 0 = no clipping. */
        public Builder clipNorm(float clipNorm) {
            floats[CLIP_NORM] = clipNorm;
            return this;
        }

        /** As in {@link UnlearnOptions.Builder#device}; null means {@code "cpu"}. */
        public Builder device(String device) {
            this.device = device;
            return this;
        }

        public TrainOptions build() {
            return new TrainOptions(this);
        }
    }
}
