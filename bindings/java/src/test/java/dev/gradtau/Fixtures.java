package dev.gradtau;

import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Shared test fixtures: the digits sets and a model with host-owned buffers. */
final class Fixtures {
    private Fixtures() {}

    /** Digits split 0 with a forget/retain partition of the training set. */
    static final class Sets implements AutoCloseable {
        final Digits.Split split;
        final Dataset forget;
        final Dataset retain;

        private Sets(Digits.Split split, Dataset forget, Dataset retain) {
            this.split = split;
            this.forget = forget;
            this.retain = retain;
        }

        Dataset train() {
            return split.train();
        }

        Dataset val() {
            return split.val();
        }

        Dataset test() {
            return split.test();
        }

        /** Class removal: forget every training image of {@code cls}. */
        static Sets forgetClass(int cls) {
            Digits.Split split = Digits.split(0);
            int[] labels = split.train().labels();
            List<Long> f = new ArrayList<>();
            List<Long> r = new ArrayList<>();
            for (int i = 0; i < labels.length; i++) {
                (labels[i] == cls ? f : r).add((long) i);
            }
            return new Sets(split, split.train().subset(toArray(f)), split.train().subset(toArray(r)));
        }

        /** Random removal: forget the first {@code n} training samples (the split is shuffled). */
        static Sets forgetFirst(int n) {
            Digits.Split split = Digits.split(0);
            long size = split.train().size();
            long[] f = new long[n];
            long[] r = new long[(int) size - n];
            for (int i = 0; i < size; i++) {
                if (i < n) {
                    f[i] = i;
                } else {
                    r[i - n] = i;
                }
            }
            return new Sets(split, split.train().subset(f), split.train().subset(r));
        }

        /** The inputs of the first {@code n} test samples, as a service holds its requests. */
        float[] requests(int n) {
            long[] first = new long[n];
            for (int i = 0; i < n; i++) {
                first[i] = i;
            }
            try (Dataset head = test().subset(first)) {
                return head.inputs();
            }
        }

        private static long[] toArray(List<Long> xs) {
            return xs.stream().mapToLong(Long::longValue).toArray();
        }

        @Override
        public void close() {
            forget.close();
            retain.close();
            split.close();
        }
    }

    /** The digits MLP with a fresh direct buffer bound to every parameter. */
    static final class HostModel implements AutoCloseable {
        final Model model;
        final Map<String, FloatBuffer> buffers = new LinkedHashMap<>();

        HostModel(String spec) {
            model = Model.fromJson(spec);
            for (ParamInfo p : model.params()) {
                buffers.put(p.name(), model.bindNew(p.name()));
            }
        }

        static HostModel digits(long initSeed) {
            HostModel h = new HostModel(Digits.mlpSpec());
            h.model.initWeights(initSeed);
            return h;
        }

        /** {@link #digits(long)} after three epochs of training on {@code data}. */
        static HostModel trained(long initSeed, Dataset data) {
            HostModel h = digits(initSeed);
            h.model.train(data, TrainOptions.builder().epochs(3).device("cpu").build());
            return h;
        }

        /** Every weight, in spec order, as raw float bits (for bit-exact comparisons). */
        int[] snapshot() {
            int total = 0;
            for (FloatBuffer b : buffers.values()) {
                total += b.capacity();
            }
            int[] out = new int[total];
            int at = 0;
            for (FloatBuffer b : buffers.values()) {
                for (int i = 0; i < b.capacity(); i++) {
                    out[at++] = Float.floatToRawIntBits(b.get(i));
                }
            }
            return out;
        }

        boolean allFinite() {
            for (FloatBuffer b : buffers.values()) {
                for (int i = 0; i < b.capacity(); i++) {
                    if (!Float.isFinite(b.get(i))) {
                        return false;
                    }
                }
            }
            return true;
        }

        @Override
        public void close() {
            model.close();
        }
    }
}
