package dev.gradtau;

/** Library-wide queries. */
public final class Gradtau {
    private Gradtau() {}

    /**
     * Loads the native libraries now (they are otherwise loaded by the first factory call).
     *
     * @throws UnsatisfiedLinkError with the paths tried, if libgradtau_jni.so or libgradtau.so
     *     cannot be loaded, or their ABI versions differ
     */
    public static void load() {
        Native.ensureLoaded();
    }

    /** The library version, e.g. {@code "0.1.0"}. */
    public static String version() {
        Native.ensureLoaded();
        return Native.version();
    }

    /** The ABI version of the loaded libgradtau.so (checked against the JNI glue at load). */
    public static int abiVersion() {
        Native.ensureLoaded();
        return Native.abiVersion();
    }

    /** The library's name for a status number, e.g. {@code "GRADTAU_BUSY"}. */
    public static String statusName(int code) {
        Native.ensureLoaded();
        return Native.statusName(code);
    }

    /**
     * The library's name for a stop reason number, e.g. {@code "GRADTAU_STOP_FORGOTTEN"}, or
     * {@code "GRADTAU_STOP_UNKNOWN"} for a number it does not define.
     */
    public static String stopReasonName(int code) {
        Native.ensureLoaded();
        return Native.stopReasonName(code);
    }
}
