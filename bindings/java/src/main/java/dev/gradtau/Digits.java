package dev.gradtau;

import java.util.Objects;

/**
 * The UCI digits data embedded in the library (1797 8x8 images scaled to [0, 1], inputs
 * {@code [N, 64]}, labels 0-9) and its demo MLP: a first program, or a test, needs no data
 * files. Demo and test convenience over {@code gradtau_digits_split} /
 * {@code gradtau_digits_mlp_spec}.
 */
public final class Digits {
    private Digits() {}

    /** The demo model spec: a 64-128-128-10 MLP with ReLU and cross-entropy. */
    public static String mlpSpec() {
        Native.ensureLoaded();
        return Native.digitsMlpSpec();
    }

    /**
     * The data split with {@code seed} into train (70 %), validation (10 %) and test (20 %).
     * Close the returned split (it closes its three sets).
     */
    public static Split split(long seed) {
        Native.ensureLoaded();
        long[] p = Native.digitsSplit(seed);
        Dataset train = null;
        Dataset val = null;
        try {
            train = Dataset.adopt(p[0]);
            val = Dataset.adopt(p[1]);
            return new Split(train, val, Dataset.adopt(p[2]));
        } catch (RuntimeException | Error e) {
            // adopt frees the pointer it fails on; free the rest here.
            if (train == null) {
                Native.datasetFree(p[1]);
            } else {
                train.close();
            }
            if (val == null) {
                Native.datasetFree(p[2]);
            } else {
                val.close();
            }
            throw e;
        }
    }

    /** The three sets of {@link #split(long)}. */
    public record Split(Dataset train, Dataset val, Dataset test) implements AutoCloseable {
        public Split {
            Objects.requireNonNull(train, "train");
            Objects.requireNonNull(val, "val");
            Objects.requireNonNull(test, "test");
        }

        @Override
        public void close() {
            train.close();
            val.close();
            test.close();
        }
    }
}
