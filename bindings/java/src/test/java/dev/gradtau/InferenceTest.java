package dev.gradtau;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Prediction without labels, on arrays and buffers, and data sets read from files. */
class InferenceTest {
    private static final int N = 16;
    private static final int CLASSES = 10;

    private static Fixtures.Sets sets;
    private static Fixtures.HostModel h;
    private static float[] requests;

    @BeforeAll
    static void setUp() {
        sets = Fixtures.Sets.forgetFirst(60);
        h = Fixtures.HostModel.trained(5, sets.train());
        requests = sets.requests(N);
    }

    @AfterAll
    static void tearDown() {
        h.close();
        sets.close();
    }

    private static FloatBuffer direct(float[] values, ByteOrder order, int pad) {
        FloatBuffer b = ByteBuffer.allocateDirect(4 * (values.length + pad)).order(order).asFloatBuffer();
        b.position(pad);
        b.put(values);
        b.position(pad);
        return b;
    }

    @Test
    void inferMatchesPredictAndClassifyIsTheArgmax() {
        float[] logits = h.model.infer(requests, N, Output.RAW);
        assertEquals(N * CLASSES, logits.length);
        float[] viaDataset = h.model.predict(sets.test());
        assertArrayEquals(Arrays.copyOf(viaDataset, N * CLASSES), logits);
        float[] probs = h.model.infer(requests, N, Output.PROBABILITIES);
        int[] classes = h.model.classify(requests, N);
        assertEquals(N, classes.length);
        int[] labels = sets.test().labels();
        int right = 0;
        for (int i = 0; i < N; i++) {
            float sum = 0;
            int best = 0;
            for (int c = 0; c < CLASSES; c++) {
                sum += probs[i * CLASSES + c];
                if (logits[i * CLASSES + c] > logits[i * CLASSES + best]) {
                    best = c;
                }
            }
            assertEquals(1.0f, sum, 1e-5f);
            assertEquals(best, classes[i]);
            right += classes[i] == labels[i] ? 1 : 0;
        }
        assertTrue(right >= N / 2, right + " of " + N + " right after training");
    }

    @Test
    void everyKindOfBufferGivesTheSameResult() {
        float[] want = h.model.infer(requests, N, Output.RAW);
        int[] wantClasses = h.model.classify(requests, N);
        FloatBuffer inPlace = direct(requests, ByteOrder.nativeOrder(), 3);
        FloatBuffer swapped = direct(requests, ByteOrder.nativeOrder() == ByteOrder.BIG_ENDIAN
                ? ByteOrder.LITTLE_ENDIAN : ByteOrder.BIG_ENDIAN, 0);
        float[] padded = new float[requests.length + 5];
        System.arraycopy(requests, 0, padded, 5, requests.length);
        FloatBuffer heap = FloatBuffer.wrap(padded, 5, requests.length).slice();
        FloatBuffer readOnly = FloatBuffer.wrap(requests).asReadOnlyBuffer();
        for (FloatBuffer b : new FloatBuffer[] {inPlace, swapped, heap, readOnly}) {
            int position = b.position();
            assertArrayEquals(want, h.model.infer(b, N, Output.RAW), b.toString());
            assertArrayEquals(wantClasses, h.model.classify(b, N), b.toString());
            assertEquals(position, b.position());
        }
    }

    @Test
    void anEmptyBatchIsValid() {
        assertEquals(0, h.model.infer(new float[0], 0, Output.RAW).length);
        assertEquals(0, h.model.infer(new float[0], 0, Output.PROBABILITIES).length);
        assertEquals(0, h.model.classify(new float[0], 0).length);
        FloatBuffer none = ByteBuffer.allocateDirect(0).order(ByteOrder.nativeOrder()).asFloatBuffer();
        assertEquals(0, h.model.infer(none, 0, Output.RAW).length);
        assertEquals(0, h.model.classify(FloatBuffer.allocate(0), 0).length);
    }

    @Test
    void badRequestsNameWhatIsWrong() {
        GradtauException e = assertThrows(GradtauException.class,
                () -> h.model.infer(Arrays.copyOf(requests, requests.length - 1), N, Output.RAW));
        assertEquals(Status.SHAPE, e.status());
        assertTrue(e.getMessage().contains("inputs_len"), e.getMessage());
        assertEquals(Status.SHAPE, assertThrows(GradtauException.class,
                () -> h.model.classify(new float[0], 2)).status());
        float[] nan = requests.clone();
        nan[3] = Float.NaN;
        assertEquals(Status.NON_FINITE, assertThrows(GradtauException.class,
                () -> h.model.classify(nan, N)).status());
        assertThrows(IllegalArgumentException.class, () -> h.model.infer(requests, -1, Output.RAW));
        assertThrows(NullPointerException.class, () -> h.model.infer((float[]) null, 0, Output.RAW));
        assertThrows(NullPointerException.class, () -> h.model.infer(requests, N, null));
        assertThrows(NullPointerException.class, () -> h.model.classify((FloatBuffer) null, 0));
        // Probabilities are meaningless for a regressor, and so are classes.
        String mse = "{\"format\": \"gradtau.model/1\", \"input\": {\"shape\": [4]},"
                + " \"nodes\": [{\"name\": \"fc\", \"op\": \"linear\", \"in_features\": 4, \"out_features\": 2}],"
                + " \"loss\": \"mse\"}";
        try (Fixtures.HostModel r = new Fixtures.HostModel(mse)) {
            r.model.initWeights(1);
            float[] x = {1, 2, 3, 4};
            assertEquals(2, r.model.infer(x, 1, Output.RAW).length);
            assertEquals(Status.INVALID_ARGUMENT, assertThrows(GradtauException.class,
                    () -> r.model.infer(x, 1, Output.PROBABILITIES)).status());
            assertEquals(Status.INVALID_ARGUMENT, assertThrows(GradtauException.class,
                    () -> r.model.classify(x, 1)).status());
        }
        // A closed model refuses before anything reaches the library.
        Fixtures.HostModel closed = Fixtures.HostModel.digits(1);
        closed.close();
        assertThrows(IllegalStateException.class, () -> closed.model.infer(requests, N, Output.RAW));
    }

    @Test
    void aDataSetGivesBackItsInputs() {
        Dataset test = sets.test();
        float[] all = test.inputs();
        assertEquals(test.size() * 64, all.length);
        assertArrayEquals(Arrays.copyOf(all, N * 64), requests);
        try (Dataset own = Dataset.ofClasses(new float[] {1, 2, 3, 4, 5, 6}, new long[] {3, 2},
                new int[] {0, 1, 0});
                Dataset tail = own.subset(new long[] {2, 0})) {
            assertArrayEquals(new float[] {1, 2, 3, 4, 5, 6}, own.inputs());
            assertArrayEquals(new float[] {5, 6, 1, 2}, tail.inputs());
        }
    }

    @Test
    void dataSetsLoadFromFiles() throws Exception {
        String spec = Files.readString(Path.of("../../data/specs/fashion_mlp.json"));
        try (Model m = Model.fromJson(spec)) {
            GradtauException e = assertThrows(GradtauException.class,
                    () -> Dataset.load(m, "/nonexistent/x.npy", "/nonexistent/y.npy"));
            assertEquals(Status.IO, e.status());
            assertTrue(e.getMessage().contains("/nonexistent/x.npy"), e.getMessage());
            assertThrows(NullPointerException.class, () -> Dataset.load(m, null, "y"));
            Path dir = Path.of("/usr/share/datasets/fashion-mnist");
            Assumptions.assumeTrue(Files.exists(dir.resolve("t10k-images-idx3-ubyte.gz")),
                    "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
            try (Dataset t10k = Dataset.load(m, dir.resolve("t10k-images-idx3-ubyte.gz").toString(),
                    dir.resolve("t10k-labels-idx1-ubyte.gz").toString());
                    Dataset head = t10k.subset(new long[] {0, 1, 2, 3})) {
                assertEquals(10000, t10k.size());
                // The first t10k labels of Fashion-MNIST: ankle boot, pullover, trouser, trouser.
                assertArrayEquals(new int[] {9, 2, 1, 1}, head.labels());
                float[] x = head.inputs();
                assertEquals(4 * 784, x.length);
                for (float v : x) {
                    assertTrue(v >= 0 && v <= 1, "pixel " + v);
                }
            }
            assertEquals(Status.SHAPE, assertThrows(GradtauException.class, () -> Dataset.load(m,
                    dir.resolve("t10k-images-idx3-ubyte.gz").toString(),
                    dir.resolve("train-labels-idx1-ubyte.gz").toString())).status());
        }
    }
}
