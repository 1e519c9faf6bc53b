package dev.gradtau;

/**
 * When a {@link PublishHook} is called ({@code GRADTAU_PUBLISH_*}). The JNI glue maps the C
 * value to a constant by its position, so the order here is the order of its table.
 */
public enum PublishPhase {
    /**
     * Before gradtau writes the new weights into the bound buffers: take your engine's write
     * lock; returning {@code false} keeps the old weights.
     */
    BEGIN,
    /**
     * After the write (or after a failed write, which leaves the old weights in place):
     * release the lock. The return value is ignored.
     */
    END
}
