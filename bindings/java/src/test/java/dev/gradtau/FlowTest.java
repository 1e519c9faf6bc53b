package dev.gradtau;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The whole flow a Java service runs: spec -> bind -> train -> audit -> unlearn -> audit. */
class FlowTest {
    @Test
    void versionAndAbi() {
        assertEquals(1, Gradtau.abiVersion());
        assertTrue(Gradtau.version().matches("\\d+\\.\\d+\\.\\d+.*"), Gradtau.version());
        assertEquals("GRADTAU_BUSY", Gradtau.statusName(12));
        assertEquals("GRADTAU_UNKNOWN_STATUS", Gradtau.statusName(999));
    }

    @Test
    void statusNumbersArePinnedAndMatchTheLibrary() {
        int[] codes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
        Status[] want = {Status.OK, Status.NULL_POINTER, Status.INVALID_ARGUMENT, Status.SHAPE,
            Status.NON_FINITE, Status.SPEC, Status.BINDING, Status.DEVICE_UNAVAILABLE,
            Status.UNSUPPORTED, Status.CANCELLED, Status.IO, Status.CUDA, Status.BUSY,
            Status.PANIC, Status.ABI_MISMATCH};
        for (int i = 0; i < codes.length; i++) {
            assertEquals(want[i], Status.fromCode(codes[i]));
            assertEquals(codes[i], want[i].code());
            assertEquals("GRADTAU_" + want[i].name(), Gradtau.statusName(codes[i]));
        }
        assertEquals(Status.UNKNOWN, Status.fromCode(9999));
        assertEquals(Status.UNKNOWN, Status.fromCode(-1));
    }

    @Test
    void modelQueries() {
        try (Model m = Model.fromJson(Digits.mlpSpec())) {
            assertEquals(6, m.params().size());
            ParamInfo w0 = m.params().get(0);
            assertEquals("0.weight", w0.name());
            assertArrayEquals(new long[] {128, 64}, w0.shape());
            assertEquals(128 * 64, w0.numel());
            assertTrue(w0.trainable());
            assertEquals(5, m.paramIndex("4.bias"));
            assertEquals(10, m.param("4.bias").numel());
            assertArrayEquals(new long[] {64}, m.inputShape());
            assertArrayEquals(new long[] {10}, m.outputShape());
            assertEquals("cross_entropy", m.loss());
        }
    }

    @Test
    void optionsMirrorTheLibraryDefaults() {
        UnlearnOptions nt = UnlearnOptions.defaults();
        assertEquals(Method.NABLA_TAU, nt.method());
        assertEquals(NablaTauMode.ADAPTIVE, nt.mode());
        assertTrue(Float.isNaN(nt.alpha0()));
        assertTrue(Float.isNaN(nt.alphaMax()));
        assertTrue(Float.isNaN(nt.lr()));
        assertEquals(0, nt.batchSize());
        UnlearnOptions ngp = UnlearnOptions.builder(Method.NEGGRAD_PLUS).build();
        assertEquals(Method.NEGGRAD_PLUS, ngp.method());
        assertEquals(3, ngp.epochs());
        assertEquals(256, ngp.batchSize());
        UnlearnOptions changed =
                nt.toBuilder().seed(-1).maxSteps(5).alphaMax(0.6f).device("cpu").build();
        assertEquals(-1, changed.seed());
        assertEquals(0.6f, changed.alphaMax());
        assertEquals(5, changed.maxSteps());
        assertEquals("cpu", changed.device());
        assertEquals(0, nt.maxSteps(), "builders do not share state with built options");
        TrainOptions t = TrainOptions.defaults();
        assertEquals(Optimizer.ADAMW, t.optimizer());
        assertEquals(10, t.epochs());
        assertEquals(64, t.batchSize());
        assertEquals(1e-3f, t.lr());
    }

    @Test
    void datasets() {
        float[] x = new float[8];
        int[] y = {0, 2};
        try (Dataset d = Dataset.ofClasses(x, new long[] {2, 4}, y)) {
            assertEquals(2, d.size());
            assertArrayEquals(y, d.labels());
            y[0] = 7; // copied at construction
            assertArrayEquals(new int[] {0, 2}, d.labels());
            try (Dataset sub = d.subset(new int[] {1, 1, 0})) {
                assertArrayEquals(new int[] {2, 2, 0}, sub.labels());
            }
            try (Dataset empty = d.subset(new long[0])) {
                assertEquals(0, empty.size());
            }
        }
        try (Dataset v = Dataset.ofValues(x, new long[] {2, 4}, new float[6], new long[] {2, 3})) {
            assertEquals(2, v.size());
            GradtauException e = org.junit.jupiter.api.Assertions.assertThrows(
                    GradtauException.class, v::labels);
            assertEquals(Status.INVALID_ARGUMENT, e.status());
        }
    }

    /** An empty batch (NULL with length 0 in C) gives empty results, not NULL_POINTER. */
    @Test
    void emptyBatchGivesEmptyResults() {
        try (Fixtures.HostModel h = Fixtures.HostModel.digits(1);
                Digits.Split split = Digits.split(0);
                Dataset empty = split.train().subset(new long[0]);
                Dataset built = Dataset.ofClasses(new float[0], new long[] {0, 64}, new int[0])) {
            for (Dataset d : new Dataset[] {empty, built}) {
                assertEquals(0, d.size());
                assertArrayEquals(new int[0], d.labels());
                assertArrayEquals(new float[0], h.model.predict(d));
                assertArrayEquals(new float[0], h.model.losses(d));
            }
        }
    }

    @Test
    void trainAuditUnlearnAuditOnDigitsClassRemoval() {
        try (Fixtures.Sets d = Fixtures.Sets.forgetClass(3);
                Fixtures.HostModel h = Fixtures.HostModel.digits(1)) {
            assertTrue(d.forget.size() > 100);
            assertEquals(d.train().size(), d.forget.size() + d.retain.size());
            assertTrue(Arrays.stream(d.forget.labels()).allMatch(l -> l == 3));

            // An original model, trained on forget + retain until it over-fits.
            List<Progress.Step> trainSteps = new ArrayList<>();
            Report trained = h.model.train(d.train(),
                    TrainOptions.builder().epochs(25).seed(1).build(), s -> trainSteps.add(s));
            assertEquals("train", trained.method());
            assertEquals(trainSteps.size(), trained.steps());
            assertTrue(h.allFinite());

            AuditRow before = h.model.audit(d.retain, d.forget, d.test(), 0);
            System.out.println("before: " + before);
            assertTrue(before.retainAccuracy() > 0.95, before.toString());
            assertTrue(before.forgetAccuracy() > 0.95, before.toString());
            assertTrue(before.testAccuracy() > 0.9, before.toString());
            // The task's metric is named and agrees with the accuracies; every attack is there.
            assertEquals(Metric.ACCURACY, before.metric().metric());
            assertEquals("accuracy", before.metricName());
            assertEquals(before.retainAccuracy(), before.metric().retain());
            assertEquals(before.testAccuracy(), before.metric().test());
            assertEquals(null, before.secondary());
            assertEquals(before.miaLoss(), before.paper().accuracy());
            double auc = before.threshold().auc();
            assertTrue(auc >= 0 && auc <= 1, before.toString());
            assertTrue(before.strongest() >= Math.abs(auc - 0.5), before.toString());
            assertTrue(before.attackSamples() > 0, before.toString());
            assertEquals("mae", new AuditRow.MetricScores(Metric.MAE, 0, 0, 0).name());

            int[] original = h.snapshot();
            FloatBuffer w0 = h.buffers.get("0.weight");
            float w0Before = w0.get(0);
            List<Progress.Step> steps = new ArrayList<>();
            Report r = h.model.unlearn(d.forget, d.retain, d.val(),
                    UnlearnOptions.builder().seed(3).device("cpu").build(), s -> {
                        assertEquals(steps.size(), s.step());
                        assertTrue(s.step() < s.totalSteps());
                        assertTrue(Float.isFinite(s.retainLoss()));
                        steps.add(s);
                        return true;
                    });
            System.out.println("unlearn: " + r);
            assertEquals("nabla_tau", r.method());
            assertEquals(steps.size(), r.steps());
            assertTrue(r.steps() > 0 && r.epochs() > 0 && r.seconds() >= 0);
            // Adaptive mode's rate: 1e-3 × 10 × forget fraction, within [1e-3, 3e-3].
            assertTrue(r.lr() >= 1e-3f && r.lr() <= 3e-3f, "lr " + r.lr());
            assertTrue(steps.stream().allMatch(s -> s.method().equals("nabla_tau")));
            assertFalse(r.truncated());
            // Zero copy: the library wrote the new weights into the host's own buffers.
            assertFalse(Arrays.equals(original, h.snapshot()));
            assertTrue(w0.get(0) != w0Before || !Arrays.equals(original, h.snapshot()));
            assertTrue(h.allFinite());

            AuditRow after = h.model.audit(d.retain, d.forget, d.test(), 0);
            System.out.println("after:  " + after);
            assertTrue(after.forgetAccuracy() < 0.05, after.toString());
            assertTrue(after.retainAccuracy() > 0.9, after.toString());

            // Auditing reads the buffers and never writes them.
            int[] unlearned = h.snapshot();
            assertEquals(after, h.model.audit(d.retain, d.forget, d.test(), 0));
            assertArrayEquals(unlearned, h.snapshot());

            // Inference agrees with the audit: arg-max of the logits scores the same accuracy.
            Dataset test = d.test();
            int[] testLabels = test.labels();
            int classes = (int) h.model.outputShape()[0];
            float[] logits = h.model.predict(test);
            assertEquals((long) testLabels.length * classes, logits.length);
            int correct = 0;
            for (int i = 0; i < testLabels.length; i++) {
                int best = 0;
                for (int c = 1; c < classes; c++) {
                    if (logits[i * classes + c] > logits[i * classes + best]) {
                        best = c;
                    }
                }
                correct += best == testLabels[i] ? 1 : 0;
            }
            assertEquals(after.testAccuracy(), (double) correct / testLabels.length, 1e-9);
            float[] forgetLosses = h.model.losses(d.forget);
            assertEquals(d.forget.size(), forgetLosses.length);
            for (float l : forgetLosses) {
                assertTrue(Float.isFinite(l) && l >= 0, "loss " + l);
            }
            // A misclassified sample has p(label) <= 1/2, i.e. cross-entropy >= ln 2, so the
            // losses must agree with the audit's forget accuracy.
            long atLeastLn2 = 0;
            for (float l : forgetLosses) {
                atLeastLn2 += l >= (float) Math.log(2) * (1 - 1e-6f) ? 1 : 0;
            }
            assertTrue(atLeastLn2 >= Math.round((1 - after.forgetAccuracy()) * forgetLosses.length),
                    atLeastLn2 + " of " + forgetLosses.length + " forget losses >= ln 2; " + after);
            assertArrayEquals(unlearned, h.snapshot());

            // A baseline through the same entry point.
            Report ngp = h.model.unlearn(d.forget, d.retain, d.val(),
                    UnlearnOptions.builder(Method.NEGGRAD_PLUS).epochs(1).build());
            assertEquals("neggrad_plus", ngp.method());
            assertFalse(Arrays.equals(unlearned, h.snapshot()));
        }
    }
}
