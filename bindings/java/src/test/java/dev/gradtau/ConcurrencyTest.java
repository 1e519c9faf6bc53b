package dev.gradtau;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Arrays;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.function.Executable;

/**
 * Two models unlearned on two threads at once give the weights of running them one after the
 * other; during a run a second writer on the model fails with BUSY at once while reads go on
 * with the weights from before the run; closing during a run defers the free.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class ConcurrencyTest {
    private static Fixtures.Sets sets;

    @BeforeAll
    static void setUp() {
        sets = Fixtures.Sets.forgetFirst(120);
    }

    @AfterAll
    static void tearDown() {
        sets.close();
    }

    // Paper mode runs every step it is given; adaptive mode may find that an untrained model
    // has nothing to forget and end before its first step.
    private static UnlearnOptions opts(long seed) {
        return UnlearnOptions.builder()
                .mode(NablaTauMode.PAPER)
                .seed(seed)
                .device("cpu")
                .maxSteps(12)
                .build();
    }

    @Test
    void twoThreadsUnlearnTheirOwnModels() throws Exception {
        int[] seqA;
        int[] seqB;
        try (Fixtures.HostModel a = Fixtures.HostModel.digits(1);
                Fixtures.HostModel b = Fixtures.HostModel.digits(2)) {
            a.model.unlearn(sets.forget, sets.retain, sets.val(), opts(11));
            b.model.unlearn(sets.forget, sets.retain, sets.val(), opts(22));
            seqA = a.snapshot();
            seqB = b.snapshot();
        }
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try (Fixtures.HostModel a = Fixtures.HostModel.digits(1);
                Fixtures.HostModel b = Fixtures.HostModel.digits(2)) {
            CountDownLatch start = new CountDownLatch(1);
            // Both runs share the same (immutable) data sets.
            Future<Report> ra = pool.submit(() -> {
                start.await();
                return a.model.unlearn(sets.forget, sets.retain, sets.val(), opts(11));
            });
            Future<Report> rb = pool.submit(() -> {
                start.await();
                return b.model.unlearn(sets.forget, sets.retain, sets.val(), opts(22));
            });
            start.countDown();
            assertEquals(12, ra.get().steps());
            assertEquals(12, rb.get().steps());
            assertArrayEquals(seqA, a.snapshot());
            assertArrayEquals(seqB, b.snapshot());
            assertFalse(Arrays.equals(seqA, seqB));
        } finally {
            pool.shutdownNow();
        }
    }

    private static void busy(Executable call) {
        GradtauException e = assertThrows(GradtauException.class, call);
        assertEquals(Status.BUSY, e.status(), e.getMessage());
        assertTrue(e.getMessage().contains("another writing call"), e.getMessage());
    }

    @Test
    void duringARunWritersAreBusyAndReadsSeeTheOldWeights() throws Exception {
        try (Fixtures.HostModel h = Fixtures.HostModel.digits(3)) {
            int[] before = h.snapshot();
            float[] requests = sets.requests(8);
            float[] logits = h.model.predict(sets.test());
            float[] losses = h.model.losses(sets.forget);
            AuditRow audit = h.model.audit(sets.retain, sets.forget, sets.test(), 0);
            float[] inferred = h.model.infer(requests, 8, Output.RAW);
            int[] classes = h.model.classify(requests, 8);
            CountDownLatch inside = new CountDownLatch(1);
            CountDownLatch release = new CountDownLatch(1);
            AtomicReference<float[]> readInCallback = new AtomicReference<>();
            AtomicReference<Throwable> writeInCallback = new AtomicReference<>();
            ExecutorService pool = Executors.newSingleThreadExecutor();
            try {
                // Park the run inside its first progress callback; the callback itself reads
                // the model and tries to write it.
                Future<Report> parked = pool.submit(() -> h.model.unlearn(sets.forget, sets.retain,
                        sets.val(), UnlearnOptions.builder().device("cpu").maxSteps(3).build(), s -> {
                            if (inside.getCount() > 0) {
                                readInCallback.set(h.model.infer(requests, 8, Output.RAW));
                                writeInCallback.set(assertThrows(GradtauException.class,
                                        () -> h.model.initWeights(9)));
                                inside.countDown();
                            }
                            try {
                                return release.await(60, TimeUnit.SECONDS);
                            } catch (InterruptedException e) {
                                Thread.currentThread().interrupt();
                                return false;
                            }
                        }));
                assertTrue(inside.await(60, TimeUnit.SECONDS));
                assertArrayEquals(inferred, readInCallback.get());
                assertEquals(Status.BUSY, ((GradtauException) writeInCallback.get()).status());

                // Every writer is refused at once.
                busy(() -> h.model.unlearn(sets.forget, sets.retain, sets.val()));
                busy(() -> h.model.train(sets.train()));
                busy(() -> h.model.initWeights(4));
                busy(() -> h.model.bind("0.bias", h.buffers.get("0.bias")));
                busy(() -> h.model.unbindAll());
                busy(() -> h.model.setPublishHook(phase -> true));
                // Every read runs, on the weights from before the run.
                assertArrayEquals(logits, h.model.predict(sets.test()));
                assertArrayEquals(losses, h.model.losses(sets.forget));
                assertEquals(audit, h.model.audit(sets.retain, sets.forget, sets.test(), 0));
                assertArrayEquals(inferred, h.model.infer(requests, 8, Output.RAW));
                assertArrayEquals(classes, h.model.classify(requests, 8));
                // Settings and queries too.
                h.model.setThreads(1);
                assertEquals(1, h.model.threads());
                assertEquals("cross_entropy", h.model.loss());
                assertEquals(1, h.model.paramIndex("0.bias"));
                assertArrayEquals(before, h.snapshot());

                release.countDown();
                Report r = parked.get(60, TimeUnit.SECONDS);
                assertEquals(3, r.steps());
                assertFalse(Arrays.equals(before, h.snapshot()));
                assertFalse(Arrays.equals(inferred, h.model.infer(requests, 8, Output.RAW)));
                // The writer is free again.
                h.model.setPublishHook(null);
                h.model.bind("0.bias", h.buffers.get("0.bias"));
            } finally {
                release.countDown();
                pool.shutdownNow();
            }
        }
    }

    @Test
    void closingWhileAnotherThreadRunsDefersTheFree() throws Exception {
        Fixtures.HostModel h = Fixtures.HostModel.digits(4);
        CountDownLatch inside = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        ExecutorService pool = Executors.newSingleThreadExecutor();
        try {
            Future<Report> running = pool.submit(() -> h.model.unlearn(sets.forget, sets.retain,
                    sets.val(), UnlearnOptions.builder().device("cpu").maxSteps(4).build(), s -> {
                        inside.countDown();
                        try {
                            return release.await(60, TimeUnit.SECONDS);
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                            return false;
                        }
                    }));
            assertTrue(inside.await(60, TimeUnit.SECONDS));
            h.model.close(); // the native model stays alive until the run returns
            assertThrows(IllegalStateException.class, () -> h.model.initWeights(1));
            release.countDown();
            assertEquals(4, running.get(60, TimeUnit.SECONDS).steps());
            assertTrue(h.allFinite());
        } finally {
            release.countDown();
            pool.shutdownNow();
        }
    }
}
