package dev.gradtau;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/** Every error path surfaces as a Java exception, and failures leave the weights untouched. */
class ErrorsTest {
    private static final String SPEC = "{\"format\": \"gradtau.model/1\", \"input\": {\"shape\": [4]},"
            + " \"nodes\": [{\"name\": \"fc\", \"op\": \"linear\", \"in_features\": 4, \"out_features\": 3}],"
            + " \"loss\": \"cross_entropy\"}";

    private static Fixtures.Sets sets;

    @BeforeAll
    static void setUp() {
        sets = Fixtures.Sets.forgetFirst(60);
    }

    @AfterAll
    static void tearDown() {
        sets.close();
    }

    private static GradtauException fails(Status want, Executable call) {
        GradtauException e = assertThrows(GradtauException.class, call);
        assertEquals(want, e.status(), e.getMessage());
        assertEquals(want.code(), e.code());
        assertTrue(e.getMessage().startsWith("GRADTAU_" + want.name() + ": "), e.getMessage());
        return e;
    }

    private static void mentions(Throwable e, String needle) {
        assertTrue(e.getMessage().contains(needle), "\"" + e.getMessage() + "\" should mention " + needle);
    }

    private static FloatBuffer direct(int n) {
        return ByteBuffer.allocateDirect(4 * n).order(ByteOrder.nativeOrder()).asFloatBuffer();
    }

    private static UnlearnOptions cpu() {
        return UnlearnOptions.builder().device("cpu").build();
    }

    @Test
    void badSpecsNameTheNodeAndField() {
        fails(Status.SPEC, () -> Model.fromJson("{\"format\": "));
        String unknownOp = "{\"format\": \"gradtau.model/1\", \"input\": {\"shape\": [4]},"
                + " \"nodes\": [{\"name\": \"x\", \"op\": \"linnear\"}], \"loss\": \"cross_entropy\"}";
        mentions(fails(Status.SPEC, () -> Model.fromJson(unknownOp)), "linnear");
        String missingField = SPEC.replace("\"in_features\": 4, ", "");
        GradtauException e = fails(Status.SPEC, () -> Model.fromJson(missingField));
        mentions(e, "fc");
        mentions(e, "in_features");
        String wrongType = SPEC.replace("\"out_features\": 3", "\"out_features\": \"three\"");
        mentions(fails(Status.SPEC, () -> Model.fromJson(wrongType)), "out_features");
        assertThrows(NullPointerException.class, () -> Model.fromJson(null));
    }

    @Test
    void bindingErrors() {
        try (Model m = Model.fromJson(SPEC)) {
            FloatBuffer w = direct(12);
            FloatBuffer b = direct(3);
            mentions(fails(Status.BINDING, () -> m.bind("fc.weight", direct(11))), "fc.weight");
            mentions(fails(Status.BINDING, () -> m.bind("fc.gamma", w)), "fc.gamma");
            fails(Status.BINDING, () -> m.paramIndex("fc.gamma"));
            fails(Status.BINDING, () -> m.bindNew("fc.gamma"));

            // Heap, read-only and big-endian buffers never reach the library.
            IllegalArgumentException heap = assertThrows(IllegalArgumentException.class,
                    () -> m.bind("fc.weight", FloatBuffer.allocate(12)));
            mentions(heap, "heap");
            mentions(heap, "allocateDirect");
            assertThrows(IllegalArgumentException.class,
                    () -> m.bind("fc.weight", ByteBuffer.wrap(new byte[48]).order(ByteOrder.nativeOrder()).asFloatBuffer()));
            assertThrows(IllegalArgumentException.class, () -> m.bind("fc.weight", w.asReadOnlyBuffer()));
            ByteOrder other = ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN
                    ? ByteOrder.BIG_ENDIAN : ByteOrder.LITTLE_ENDIAN;
            mentions(assertThrows(IllegalArgumentException.class,
                    () -> m.bind("fc.weight", ByteBuffer.allocateDirect(48).order(other).asFloatBuffer())),
                    "nativeOrder");
            assertThrows(IllegalArgumentException.class, () -> m.bind("fc\0weight", w));
            assertThrows(NullPointerException.class, () -> m.bind(null, w));
            assertThrows(NullPointerException.class, () -> m.bind("fc.weight", null));

            // The bound region is position..limit of the buffer.
            FloatBuffer big = direct(16);
            big.position(2).limit(14);
            m.bind("fc.weight", big);
            // Overlap with another bound buffer is refused by the library.
            FloatBuffer overlapping = direct(16);
            m.bind("fc.weight", overlapping.duplicate().position(0).limit(12).slice());
            mentions(fails(Status.INVALID_ARGUMENT,
                    () -> m.bind("fc.bias", overlapping.duplicate().position(11).limit(14).slice())),
                    "overlaps");
            // A misaligned float view (byte offset 1) is refused, not dereferenced.
            FloatBuffer misaligned = ByteBuffer.allocateDirect(64).position(1)
                    .slice().order(ByteOrder.nativeOrder()).asFloatBuffer().limit(3);
            fails(Status.INVALID_ARGUMENT, () -> m.bind("fc.bias", misaligned));

            // A missing binding.
            m.unbindAll();
            m.bind("fc.weight", w);
            mentions(fails(Status.BINDING, () -> m.initWeights(1)), "fc.bias");
            m.bind("fc.bias", b);
            m.initWeights(1);
            assertTrue(w.get(0) != 0 || w.get(1) != 0, "initWeights writes the host buffer");
        }
    }

    @Test
    void datasetErrors() {
        float[] x = new float[8];
        long[] shape = {2, 4};
        int[] labels = {0, 2};
        fails(Status.SHAPE, () -> Dataset.ofClasses(new float[7], shape, labels));
        fails(Status.SHAPE, () -> Dataset.ofClasses(x, shape, new int[] {0}));
        fails(Status.INVALID_ARGUMENT, () -> Dataset.ofClasses(x, new long[0], labels));
        mentions(fails(Status.INVALID_ARGUMENT,
                () -> Dataset.ofClasses(x, new long[] {Long.MAX_VALUE, 4}, labels)), "overflows");
        mentions(fails(Status.INVALID_ARGUMENT, () -> Dataset.ofClasses(x, shape, new int[] {0, -1})),
                "negative");
        fails(Status.SHAPE, () -> Dataset.ofValues(x, shape, new float[6], new long[] {3, 2}));
        assertThrows(IllegalArgumentException.class, () -> Dataset.ofClasses(x, new long[] {-2, 4}, labels));
        assertThrows(NullPointerException.class, () -> Dataset.ofClasses(null, shape, labels));
        assertThrows(NullPointerException.class, () -> Dataset.ofClasses(x, null, labels));
        assertThrows(NullPointerException.class, () -> Dataset.ofClasses(x, shape, null));
        try (Dataset d = Dataset.ofClasses(x, shape, labels)) {
            fails(Status.INVALID_ARGUMENT, () -> d.subset(new long[] {1, 2}));
            assertThrows(IllegalArgumentException.class, () -> d.subset(new long[] {-1}));
            assertThrows(NullPointerException.class, () -> d.subset((long[]) null));
        }
    }

    @Test
    void runErrorsLeaveTheWeightsUntouched() {
        try (Fixtures.HostModel h = Fixtures.HostModel.digits(5)) {
            Model m = h.model;
            int[] before = h.snapshot();
            assertThrows(NullPointerException.class, () -> m.unlearn(null, sets.retain, sets.val()));
            assertThrows(NullPointerException.class, () -> m.unlearn(sets.forget, null, sets.val()));
            assertThrows(NullPointerException.class, () -> m.unlearn(sets.forget, sets.retain, null));
            assertThrows(NullPointerException.class,
                    () -> m.unlearn(sets.forget, sets.retain, sets.val(), null));
            assertThrows(NullPointerException.class,
                    () -> m.unlearn(sets.forget, sets.retain, sets.val(), cpu(), null));
            assertThrows(NullPointerException.class, () -> m.train(null));
            assertThrows(NullPointerException.class, () -> m.audit(sets.retain, null, sets.test(), 0));

            // Options the library rejects.
            fails(Status.INVALID_ARGUMENT, () -> m.unlearn(sets.forget, sets.retain, sets.val(),
                    cpu().toBuilder().lr(-1f).build()));
            fails(Status.INVALID_ARGUMENT, () -> m.unlearn(sets.forget, sets.retain, sets.val(),
                    cpu().toBuilder().alpha0(2f).build()));
            mentions(fails(Status.INVALID_ARGUMENT, () -> m.unlearn(sets.forget, sets.retain,
                    sets.val(), cpu().toBuilder().alphaMax(1.5f).build())), "alpha_max");
            fails(Status.INVALID_ARGUMENT, () -> m.unlearn(sets.forget, sets.retain, sets.val(),
                    cpu().toBuilder().device("tpu").build()));
            assertThrows(IllegalArgumentException.class, () -> UnlearnOptions.builder().epochs(-1));
            assertThrows(NullPointerException.class, () -> UnlearnOptions.builder(null));

            // Data that does not fit the model.
            try (Dataset wrong = Dataset.ofClasses(new float[10], new long[] {2, 5}, new int[] {0, 1})) {
                mentions(fails(Status.SHAPE, () -> m.unlearn(wrong, sets.retain, sets.val(), cpu())), "forget");
            }
            try (Dataset outOfRange = Dataset.ofClasses(new float[128], new long[] {2, 64}, new int[] {0, 10})) {
                fails(Status.INVALID_ARGUMENT, () -> m.unlearn(outOfRange, sets.retain, sets.val(), cpu()));
                fails(Status.INVALID_ARGUMENT, () -> m.audit(sets.retain, outOfRange, sets.test(), 0));
            }
            float[] nan = new float[128];
            nan[3] = Float.NaN;
            try (Dataset withNan = Dataset.ofClasses(nan, new long[] {2, 64}, new int[] {0, 1})) {
                fails(Status.NON_FINITE, () -> m.unlearn(withNan, sets.retain, sets.val(), cpu()));
            }
            assertArrayEquals(before, h.snapshot());

            // NaN in a bound buffer, named in the message.
            FloatBuffer bias = h.buffers.get("0.bias");
            float saved = bias.get(0);
            bias.put(0, Float.NaN);
            mentions(fails(Status.NON_FINITE, () -> m.unlearn(sets.forget, sets.retain, sets.val(), cpu())),
                    "0.bias");
            bias.put(0, saved);

            // A missing binding.
            m.unbindAll();
            for (ParamInfo p : m.params()) {
                if (!p.name().equals("4.bias")) {
                    m.bind(p.name(), h.buffers.get(p.name()));
                }
            }
            mentions(fails(Status.BINDING, () -> m.unlearn(sets.forget, sets.retain, sets.val(), cpu())),
                    "4.bias");
            fails(Status.BINDING, () -> m.audit(sets.retain, sets.forget, sets.test(), 0));
            m.bind("4.bias", h.buffers.get("4.bias"));
            assertArrayEquals(before, h.snapshot());
            // No CUDA in this build (or no GPU): a clear status, not a crash.
            UnlearnOptions cuda = UnlearnOptions.builder(Method.FINETUNE).device("cuda:0").build();
            try {
                m.unlearn(sets.forget, sets.retain, sets.val(), cuda);
            } catch (GradtauException e) {
                assertTrue(e.status() == Status.DEVICE_UNAVAILABLE || e.status() == Status.CUDA,
                        e.getMessage());
                assertArrayEquals(before, h.snapshot());
            }
        }
    }

    @Test
    void cancelFromTheCallbackLeavesTheWeightsBitIdentical() {
        try (Fixtures.HostModel h = Fixtures.HostModel.digits(5)) {
            int[] before = h.snapshot();
            AtomicInteger calls = new AtomicInteger();
            fails(Status.CANCELLED, () -> h.model.unlearn(sets.forget, sets.retain, sets.val(), cpu(),
                    s -> calls.incrementAndGet() < 3));
            assertEquals(3, calls.get());
            assertArrayEquals(before, h.snapshot());

            calls.set(0);
            fails(Status.CANCELLED, () -> h.model.train(sets.train(), TrainOptions.defaults(),
                    s -> calls.incrementAndGet() < 3));
            assertEquals(3, calls.get());
            assertArrayEquals(before, h.snapshot());

            // keepPartial: a cancelled run writes the weights it reached.
            calls.set(0);
            fails(Status.CANCELLED, () -> h.model.unlearn(sets.forget, sets.retain, sets.val(),
                    cpu().toBuilder().keepPartial(true).build(), s -> calls.incrementAndGet() < 3));
            assertFalse(java.util.Arrays.equals(before, h.snapshot()));

            // maxSteps truncates and says so.
            Report r = h.model.unlearn(sets.forget, sets.retain, sets.val(),
                    cpu().toBuilder().maxSteps(2).build());
            assertEquals(2, r.steps());
            assertTrue(r.truncated());
        }
    }

    @Test
    void exceptionInTheCallbackCancelsAndIsRethrown() {
        try (Fixtures.HostModel h = Fixtures.HostModel.digits(5)) {
            int[] before = h.snapshot();
            AtomicInteger calls = new AtomicInteger();
            IllegalStateException boom = new IllegalStateException("boom from the callback");
            IllegalStateException thrown = assertThrows(IllegalStateException.class,
                    () -> h.model.unlearn(sets.forget, sets.retain, sets.val(), cpu(), s -> {
                        if (calls.incrementAndGet() == 2) {
                            throw boom;
                        }
                        return true;
                    }));
            assertSame(boom, thrown);
            assertEquals(2, calls.get(), "no step runs after the exception");
            assertArrayEquals(before, h.snapshot());

            // An Error (here an assertion failure) is rethrown as well, and the model stays usable.
            AssertionError assertion = assertThrows(AssertionError.class, () -> h.model.train(
                    sets.train(), TrainOptions.defaults(), s -> {
                        throw new AssertionError("from train");
                    }));
            assertEquals("from train", assertion.getMessage());
            assertArrayEquals(before, h.snapshot());

            // Re-entering the same model from its own callback: BUSY, which then cancels the run.
            AtomicReference<GradtauException> inner = new AtomicReference<>();
            GradtauException busy = fails(Status.BUSY, () -> h.model.unlearn(sets.forget, sets.retain,
                    sets.val(), cpu(), s -> {
                        try {
                            h.model.initWeights(9);
                        } catch (GradtauException e) {
                            inner.set(e);
                            throw e;
                        }
                        return true;
                    }));
            assertSame(inner.get(), busy);
            assertArrayEquals(before, h.snapshot());
            h.model.audit(sets.retain, sets.forget, sets.test(), 0);
        }
    }

    @Test
    void closeTwiceAndUseAfterClose() {
        Model m = Model.fromJson(SPEC);
        FloatBuffer w = m.bindNew("fc.weight");
        m.bindNew("fc.bias");
        m.initWeights(2);
        assertFalse(m.isClosed());
        m.close();
        m.close();
        assertTrue(m.isClosed());
        mentions(assertThrows(IllegalStateException.class, () -> m.initWeights(1)), "closed");
        assertThrows(IllegalStateException.class, () -> m.bind("fc.weight", w));
        assertThrows(IllegalStateException.class, () -> m.loss());
        assertThrows(IllegalStateException.class, () -> m.audit(sets.retain, sets.forget, sets.test(), 0));
        assertThrows(IllegalStateException.class, () -> m.predict(sets.test()));
        assertThrows(IllegalStateException.class, () -> m.losses(sets.test()));
        // Queries answered from the Java side still work; nothing reaches the freed handle.
        assertEquals(2, m.params().size());

        Dataset d = Dataset.ofClasses(new float[4], new long[] {1, 4}, new int[] {0});
        d.close();
        d.close();
        assertThrows(IllegalStateException.class, d::size);
        assertThrows(IllegalStateException.class, d::labels);
        // A closed data set passed to a live model is refused before any native call.
        try (Fixtures.HostModel h = Fixtures.HostModel.digits(1)) {
            assertThrows(IllegalStateException.class, () -> h.model.unlearn(d, sets.retain, sets.val()));
            assertThrows(IllegalStateException.class, () -> h.model.audit(sets.retain, sets.forget, d, 0));
            assertThrows(IllegalStateException.class, () -> h.model.predict(d));
            assertThrows(IllegalStateException.class, () -> h.model.losses(d));
            // ... and the handles acquired before the closed one were released again.
            h.model.close();
            assertTrue(h.model.isClosed());
        }
        assertFalse(sets.retain.isClosed());
    }

    @Test
    void predictAndLossesErrors() {
        try (Fixtures.HostModel h = Fixtures.HostModel.digits(6)) {
            assertThrows(NullPointerException.class, () -> h.model.predict(null));
            assertThrows(NullPointerException.class, () -> h.model.losses(null));
            // 4 features per sample where the digits MLP takes 64.
            try (Dataset narrow = Dataset.ofClasses(new float[8], new long[] {2, 4}, new int[] {0, 1})) {
                fails(Status.SHAPE, () -> h.model.predict(narrow));
                fails(Status.SHAPE, () -> h.model.losses(narrow));
            }
            try (Dataset empty = sets.test().subset(new long[0])) {
                assertEquals(0, h.model.predict(empty).length);
                assertEquals(0, h.model.losses(empty).length);
            }
        }
        try (Model m = Model.fromJson(SPEC)) {
            m.bindNew("fc.weight"); // fc.bias stays unbound
            try (Dataset d = Dataset.ofClasses(new float[4], new long[] {1, 4}, new int[] {0})) {
                fails(Status.BINDING, () -> m.predict(d));
                fails(Status.BINDING, () -> m.losses(d));
            }
        }
    }

    @Test
    void closingAModelFromItsOwnCallbackDefersTheFree() {
        Fixtures.HostModel h = Fixtures.HostModel.digits(5);
        int[] before = h.snapshot();
        fails(Status.CANCELLED, () -> h.model.unlearn(sets.forget, sets.retain, sets.val(), cpu(), s -> {
            h.model.close();
            return false;
        }));
        assertTrue(h.model.isClosed());
        assertArrayEquals(before, h.snapshot());
        assertThrows(IllegalStateException.class, () -> h.model.initWeights(1));
    }
}
