package dev.gradtau;

import java.util.function.LongConsumer;

/**
 * Owns one native pointer and frees it exactly once, never while a call is using it.
 *
 * <p>The C ABI makes freeing a handle that another thread is using undefined behaviour. Here
 * every call brackets its native work with {@link #acquire()} / {@link #release()}; a
 * {@link #close()} that arrives meanwhile (from another thread, from a progress callback, or
 * from the Cleaner) only marks the handle closed, and the last user frees it on the way out.
 * This object is also the Cleaner's action, so it must not refer to the object that owns it.
 */
final class NativeHandle implements Runnable {
    private final String kind;
    private final LongConsumer free;
    private final long pointer;
    private int users;
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

    /** The pointer, counted as in use until {@link #release()}. */
    synchronized long acquire() {
        if (closed) {
            throw new IllegalStateException(kind + " is closed");
        }
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
