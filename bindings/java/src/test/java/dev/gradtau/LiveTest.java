package dev.gradtau;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.ref.WeakReference;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Stress tests of a model that serves while it unlearns: reader threads during a run never get
 * BUSY and never see a mix of two models; the publish hook brackets the write; a host engine
 * reading buffers shared by two handles is protected by its own lock taken in the hook; the
 * thread cap does not change the result; the hook lives exactly as long as its model.
 */
@Timeout(value = 300, unit = TimeUnit.SECONDS)
class LiveTest {
    private static final int SAMPLES = 16;
    private static final int READERS = 3;

    private static Fixtures.Sets sets;
    private static float[] requests;

    @BeforeAll
    static void setUp() {
        sets = Fixtures.Sets.forgetFirst(120);
        requests = sets.requests(SAMPLES);
    }

    @AfterAll
    static void tearDown() {
        sets.close();
    }

    /** ∇τ in paper mode runs every planned step: one forget batch per epoch on these sets. */
    private static UnlearnOptions opts(long epochs) {
        return UnlearnOptions.builder()
                .mode(NablaTauMode.PAPER)
                .seed(3)
                .device("cpu")
                .epochs(epochs)
                .build();
    }

    private static Fixtures.HostModel trained() {
        return Fixtures.HostModel.trained(5, sets.train());
    }

    /** The model the run publishes, from an identical model unlearned alone. */
    private static Fixtures.HostModel unlearnedAlone(UnlearnOptions o) {
        Fixtures.HostModel twin = trained();
        twin.model.unlearn(sets.forget, sets.retain, sets.val(), o);
        return twin;
    }

    /** What reader threads saw. */
    static final class Tally {
        final AtomicLong reads = new AtomicLong();
        final AtomicLong old = new AtomicLong();
        final AtomicLong fresh = new AtomicLong();
        final AtomicLong torn = new AtomicLong();
        final AtomicLong busy = new AtomicLong();
        final List<Throwable> errors = Collections.synchronizedList(new ArrayList<>());

        void see(boolean isOld, boolean isNew) {
            reads.incrementAndGet();
            (isOld ? old : isNew ? fresh : torn).incrementAndGet();
        }

        void failed(Throwable t) {
            if (t instanceof GradtauException g && g.status() == Status.BUSY) {
                busy.incrementAndGet();
            } else {
                errors.add(t);
            }
        }

        void assertClean() {
            assertEquals(List.of(), errors);
            assertEquals(0, busy.get(), "reads must never get BUSY");
            assertEquals(0, torn.get(), "a read saw neither the old model nor the new one");
            assertTrue(old.get() > 0 && fresh.get() > 0, "old " + old + ", new " + fresh);
        }

        @Override
        public String toString() {
            return reads + " reads: " + old + " old model, " + fresh + " new, " + torn + " torn, "
                    + busy + " busy";
        }
    }

    /**
     * Runs {@code read} on {@link #READERS} threads from before {@code write} starts until each
     * reader has seen the new model at least once after it returned.
     */
    private static void readWhile(Tally tally, Runnable read, Runnable write) throws Exception {
        AtomicBoolean stop = new AtomicBoolean();
        CountDownLatch started = new CountDownLatch(READERS);
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < READERS; i++) {
            Thread t = new Thread(() -> {
                while (!stop.get()) {
                    try {
                        read.run();
                    } catch (RuntimeException | Error e) {
                        tally.failed(e);
                    }
                    started.countDown();
                }
            }, "reader-" + i);
            t.start();
            threads.add(t);
        }
        try {
            assertTrue(started.await(60, TimeUnit.SECONDS));
            write.run();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (tally.fresh.get() < READERS && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
        } finally {
            stop.set(true);
            for (Thread t : threads) {
                t.join(60_000);
            }
        }
    }

    private static FloatBuffer directCopy(float[] values) {
        FloatBuffer b = ByteBuffer.allocateDirect(4 * values.length).order(ByteOrder.nativeOrder())
                .asFloatBuffer();
        b.put(values).flip();
        return b;
    }

    @Test
    void readersDuringAnUnlearnNeverWaitAndNeverSeeAMix() throws Exception {
        UnlearnOptions o = opts(40);
        try (Fixtures.HostModel twin = unlearnedAlone(o); Fixtures.HostModel h = trained()) {
            float[] before = h.model.infer(requests, SAMPLES, Output.RAW);
            float[] after = twin.model.infer(requests, SAMPLES, Output.RAW);
            assertFalse(Arrays.equals(before, after));
            FloatBuffer direct = directCopy(requests);
            Tally tally = new Tally();
            AtomicLong turn = new AtomicLong();
            readWhile(tally, () -> {
                // Alternate the array and the in-place direct-buffer paths.
                float[] out = turn.getAndIncrement() % 2 == 0
                        ? h.model.infer(requests, SAMPLES, Output.RAW)
                        : h.model.infer(direct, SAMPLES, Output.RAW);
                tally.see(Arrays.equals(out, before), Arrays.equals(out, after));
            }, () -> assertEquals(40, h.model.unlearn(sets.forget, sets.retain, sets.val(), o).steps()));
            System.out.println("readers during an unlearn: " + tally);
            tally.assertClean();
            // Serving did not change the result: the weights equal those of the idle run.
            assertArrayEquals(twin.snapshot(), h.snapshot());
        }
    }

    @Test
    void thePublishHookBracketsTheWrite() {
        UnlearnOptions o = opts(10);
        try (Fixtures.HostModel twin = unlearnedAlone(o); Fixtures.HostModel h = trained()) {
            int[] before = h.snapshot();
            int[] after = twin.snapshot();
            float[] beforeOut = h.model.infer(requests, SAMPLES, Output.RAW);
            List<String> events = Collections.synchronizedList(new ArrayList<>());
            Thread caller = Thread.currentThread();
            h.model.setPublishHook(phase -> {
                assertSame(caller, Thread.currentThread());
                boolean begin = phase == PublishPhase.BEGIN;
                events.add(phase + (Arrays.equals(h.snapshot(), begin ? before : after) ? "" : " wrong weights"));
                if (begin) {
                    // Reads run from the hook (it is outside gradtau's lock) and see the old
                    // weights; a writer is refused.
                    events.add(Arrays.equals(beforeOut, h.model.infer(requests, SAMPLES, Output.RAW))
                            ? "read old" : "read wrong");
                    GradtauException e = assertThrows(GradtauException.class, () -> h.model.initWeights(1));
                    events.add("write " + e.status());
                }
                return true;
            });
            h.model.unlearn(sets.forget, sets.retain, sets.val(), o);
            assertEquals(List.of("BEGIN", "read old", "write BUSY", "END"), events);
            assertArrayEquals(after, h.snapshot());

            // Removed, it is not called any more.
            h.model.setPublishHook(null);
            events.clear();
            h.model.initWeights(2);
            assertEquals(List.of(), events);
            assertFalse(Arrays.equals(after, h.snapshot()));
        }
    }

    @Test
    void aHookThatRefusesOrThrowsKeepsTheOldWeights() {
        try (Fixtures.HostModel h = trained()) {
            int[] before = h.snapshot();
            List<PublishPhase> calls = Collections.synchronizedList(new ArrayList<>());
            h.model.setPublishHook(phase -> {
                calls.add(phase);
                return false;
            });
            GradtauException e = assertThrows(GradtauException.class,
                    () -> h.model.unlearn(sets.forget, sets.retain, sets.val(), opts(3)));
            assertEquals(Status.CANCELLED, e.status(), e.getMessage());
            assertEquals(List.of(PublishPhase.BEGIN), calls);
            assertArrayEquals(before, h.snapshot());
            assertEquals(Status.CANCELLED,
                    assertThrows(GradtauException.class, () -> h.model.initWeights(1)).status());
            assertEquals(List.of(PublishPhase.BEGIN, PublishPhase.BEGIN), calls);
            assertArrayEquals(before, h.snapshot());

            // An exception at BEGIN counts as a refusal, cleared on the native side, and comes
            // back as the cause of the CANCELLED.
            h.model.setPublishHook(phase -> {
                throw new IllegalStateException("engine lock unavailable");
            });
            e = assertThrows(GradtauException.class,
                    () -> h.model.train(sets.train(), TrainOptions.builder().epochs(1).device("cpu").build()));
            assertEquals(Status.CANCELLED, e.status(), e.getMessage());
            assertInstanceOf(IllegalStateException.class, e.getCause());
            assertEquals("engine lock unavailable", e.getCause().getMessage());
            assertArrayEquals(before, h.snapshot());

            // An exception at END is dropped: the new weights are in place, the call succeeds.
            h.model.setPublishHook(phase -> {
                if (phase == PublishPhase.END) {
                    throw new IllegalStateException("at end");
                }
                return true;
            });
            h.model.initWeights(1);
            assertFalse(Arrays.equals(before, h.snapshot()));
            // Nothing is left pending on this thread: the next call works normally.
            assertEquals(SAMPLES * 10, h.model.infer(requests, SAMPLES, Output.RAW).length);
        }
    }

    @Test
    void closingDuringAHookedRunStillPublishesThroughTheHook() throws Exception {
        Fixtures.HostModel h = trained();
        int[] before = h.snapshot();
        List<PublishPhase> calls = Collections.synchronizedList(new ArrayList<>());
        h.model.setPublishHook(phase -> calls.add(phase));
        CountDownLatch inside = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        Thread runner = new Thread(() -> h.model.unlearn(sets.forget, sets.retain, sets.val(), opts(3),
                step -> {
                    inside.countDown();
                    try {
                        return release.await(60, TimeUnit.SECONDS);
                    } catch (InterruptedException e) {
                        return false;
                    }
                }));
        runner.start();
        try {
            assertTrue(inside.await(60, TimeUnit.SECONDS));
            h.model.close(); // freed, with its hook, once the run returns
            assertThrows(IllegalStateException.class, () -> h.model.infer(requests, SAMPLES, Output.RAW));
            assertThrows(IllegalStateException.class, () -> h.model.setPublishHook(null));
        } finally {
            release.countDown();
            runner.join(60_000);
        }
        assertEquals(List.of(PublishPhase.BEGIN, PublishPhase.END), calls);
        assertFalse(Arrays.equals(before, h.snapshot()));
    }

    /** A model whose hook refers to the model itself, then dropped without close(). */
    private static WeakReference<Model> droppedHookedModel() {
        Model m = Model.fromJson(Digits.mlpSpec());
        m.setPublishHook(phase -> m.threads() >= 0);
        return new WeakReference<>(m);
    }

    @Test
    void aHookThatRefersToItsModelDoesNotKeepItAlive() throws Exception {
        // The native side holds the hook weakly (the model holds it strongly), so the cycle
        // model -> hook -> model is collectable and the Cleaner frees both.
        WeakReference<Model> ref = droppedHookedModel();
        for (int i = 0; i < 200 && ref.get() != null; i++) {
            System.gc();
            Thread.sleep(10);
        }
        assertNull(ref.get(), "a model whose hook refers to it was never collected");
    }

    /** A checksum of buffers, weighted so that a mix of two models is told apart. */
    private static double checksum(Map<String, FloatBuffer> buffers) {
        double s = 0;
        for (FloatBuffer b : buffers.values()) {
            for (int k = 0; k < b.capacity(); k++) {
                s += b.get(k) * (double) (k % 7 + 1);
            }
        }
        return s;
    }

    @Test
    void twoHandlesOnSharedBuffersWithAHookProtectedReaderNeverSeeAMix() throws Exception {
        UnlearnOptions o = opts(20);
        try (Fixtures.HostModel twin = unlearnedAlone(o);
                Fixtures.HostModel a = trained();
                Model b = Model.fromJson(Digits.mlpSpec())) {
            // The second handle reads the first one's buffers: gradtau's lock on `a` does not
            // cover reads through `b`, the host's engine lock does.
            for (Map.Entry<String, FloatBuffer> e : a.buffers.entrySet()) {
                b.bind(e.getKey(), e.getValue());
            }
            float[] before = b.infer(requests, SAMPLES, Output.RAW);
            float[] after = twin.model.infer(requests, SAMPLES, Output.RAW);
            double sumBefore = checksum(a.buffers);
            double sumAfter = checksum(twin.buffers);
            assertNotEquals(sumBefore, sumAfter);
            ReentrantReadWriteLock engine = new ReentrantReadWriteLock();
            AtomicLong publishes = new AtomicLong();
            a.model.setPublishHook(phase -> {
                if (phase == PublishPhase.BEGIN) {
                    engine.writeLock().lock();
                    publishes.incrementAndGet();
                } else {
                    engine.writeLock().unlock();
                }
                return true;
            });
            Tally tally = new Tally();
            readWhile(tally, () -> {
                float[] out;
                double sum;
                engine.readLock().lock();
                try {
                    out = b.infer(requests, SAMPLES, Output.RAW);
                    sum = checksum(a.buffers);
                } finally {
                    engine.readLock().unlock();
                }
                // Both views must agree on one model.
                tally.see(Arrays.equals(out, before) && sum == sumBefore,
                        Arrays.equals(out, after) && sum == sumAfter);
            }, () -> a.model.unlearn(sets.forget, sets.retain, sets.val(), o));
            System.out.println("two handles on shared buffers: " + tally);
            tally.assertClean();
            assertEquals(1, publishes.get());
            assertFalse(engine.isWriteLocked());
            assertArrayEquals(twin.snapshot(), a.snapshot());
        }
    }

    @Test
    void theThreadCapKeepsTheResult() {
        UnlearnOptions o = opts(10);
        try (Fixtures.HostModel free = trained(); Fixtures.HostModel capped = trained()) {
            assertEquals(0, capped.model.threads());
            capped.model.setThreads(1);
            assertEquals(1, capped.model.threads());
            assertThrows(IllegalArgumentException.class, () -> capped.model.setThreads(-1));
            assertEquals(1, capped.model.threads());
            free.model.unlearn(sets.forget, sets.retain, sets.val(), o);
            capped.model.unlearn(sets.forget, sets.retain, sets.val(), o);
            assertArrayEquals(free.snapshot(), capped.snapshot());
            assertArrayEquals(free.model.infer(requests, SAMPLES, Output.RAW),
                    capped.model.infer(requests, SAMPLES, Output.RAW));
            capped.model.setThreads(0);
            assertEquals(0, capped.model.threads());
        }
    }
}
