package dev.gradtau;

/**
 * The status codes of the C ABI ({@code gradtau_status}). The numbers are part of the ABI:
 * they never change and are never reused.
 */
public enum Status {
    OK(0),
    NULL_POINTER(1),
    INVALID_ARGUMENT(2),
    SHAPE(3),
    NON_FINITE(4),
    SPEC(5),
    BINDING(6),
    DEVICE_UNAVAILABLE(7),
    UNSUPPORTED(8),
    CANCELLED(9),
    IO(10),
    CUDA(11),
    BUSY(12),
    PANIC(13),
    ABI_MISMATCH(14),
    /** A number this version of the bindings does not know (a newer library). */
    UNKNOWN(-1);

    private final int code;

    Status(int code) {
        this.code = code;
    }

    /** The number the C ABI uses. */
    public int code() {
        return code;
    }

    /** The status with number {@code code}, or {@link #UNKNOWN}. */
    public static Status fromCode(int code) {
        for (Status s : values()) {
            if (s.code == code && s != UNKNOWN) {
                return s;
            }
        }
        return UNKNOWN;
    }
}
