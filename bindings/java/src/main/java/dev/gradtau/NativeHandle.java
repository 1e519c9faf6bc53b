package dev.gradtau;

import java.util.function.LongConsumer;

/**
 * Owns one native pointer, frees it exactly once and never while a call is using it, and
 * admits one writer at a time.
 *
 * <p>The C ABI makes freeing a handle that another thread is using undefined behaviour. Here
 * every call brackets its native work with {@link #acquire()} / {@link #release()} (or the
 * writer pair); a {@link #close()} that arrives meanwhile (from another thread, from a
 * callback, or from the Cleaner) only marks the handle closed, and the last user frees it on
 * the way out.
 *
 * <p>Readers ({@link #acquire()}) are only counted: any number run at once, also while a
 * writer runs, as the C ABI allows. A writer ({@link #acquireWriter(String)}) is also
 * counted, and a second writer is refused with {@link Status#BUSY} at once instead of
 * waiting, the C ABI's rule for a model. Enforcing it here as well keeps the Java-side state
 * of a writing call (the bound buffers, the publish hook) in step with what the library
 * holds without a lock that would make a second writer wait.
 *
 * <p>This object is also the Cleaner's action, so it must not refer to the object that owns
 * it.
 */
final class NativeHandle implements Runnable {
    private final String kind;
    private final LongConsumer free;
    private final long pointer;
    private int users;
    private boolean writing;
    private boolean closed;
    private boolean freed;

    NativeHandle(String kind, long pointer, LongConsumer free) {
        if (pointer == 0) {
            throw new IllegalStateException(kind + ": the library returned a NULL handle");
        }
        this.kind = kind;
        this.pointer = pointer;
        this.free = free;
    }

    /** The pointer for a read, counted as in use until {@link #release()}. */
    synchronized long acquire() {
        if (closed) {
            throw new IllegalStateException(kind + " is closed");
        }
        users++;
        return pointer;
    }

    /**
     * The pointer for the one writer, counted as in use until {@link #releaseWriter()}.
     *
     * @param call what the caller is about to do, for the BUSY message
     * @throws GradtauException {@link Status#BUSY} if another writer holds the handle
     */
    synchronized long acquireWriter(String call) {
        if (closed) {
            throw new IllegalStateException(kind + " is closed");
        }
        if (writing) {
            throw new GradtauException(Status.BUSY.code(), kind + "." + call
                    + ": another writing call (train, unlearn, initWeights, bind, unbindAll,"
                    + " setPublishHook) is in progress on this " + kind.toLowerCase(java.util.Locale.ROOT)
                    + "; writers do not wait for each other (reads are not affected)");
        }
        writing = true;
        users++;
        return pointer;
    }

    void release() {
        boolean doFree;
        synchronized (this) {
            users--;
            doFree = closed && users == 0 && !freed;
            freed |= doFree;
        }
        if (doFree) {
            free.accept(pointer);
        }
    }

    /** Ends the writer's call begun with {@link #acquireWriter(String)}. */
    void releaseWriter() {
        synchronized (this) {
            writing = false;
        }
        release();
    }

    synchronized boolean isClosed() {
        return closed;
    }

    /** Marks the handle closed and frees it now if nobody is using it. Idempotent. */
    void close() {
        boolean doFree;
        synchronized (this) {
            closed = true;
            doFree = users == 0 && !freed;
            freed |= doFree;
        }
        if (doFree) {
            free.accept(pointer);
        }
    }

    @Override
    public void run() {
        close();
    }
}
