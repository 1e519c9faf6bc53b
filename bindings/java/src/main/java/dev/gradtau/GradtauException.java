package dev.gradtau;

/**
 * A gradtau call returned a status other than {@code GRADTAU_OK}: the status and the library's
 * message (its {@code gradtau_last_error_message()}, taken on the calling thread right after
 * the call).
 */
public class GradtauException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int code;

    /** Called by the JNI glue with the raw status and the library's message. */
    GradtauException(int code, String libraryMessage) {
        super(Status.fromCode(code) == Status.UNKNOWN
                ? "GRADTAU_UNKNOWN_STATUS(" + code + "): " + libraryMessage
                : "GRADTAU_" + Status.fromCode(code).name() + ": " + libraryMessage);
        this.code = code;
    }

    /** The status, or {@link Status#UNKNOWN} for a number these bindings do not know. */
    public Status status() {
        return Status.fromCode(code);
    }

    /** The raw status number as the library returned it. */
    public int code() {
        return code;
    }
}
