package dev.gradtau;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;

/**
 * A C options struct ({@code gradtau_unlearn_options}, {@code gradtau_train_options}) held as
 * its bytes. The JNI library says where each field lives (its compiler's {@code offsetof} and
 * {@code sizeof}), the struct starts as the bytes its {@code _default} function wrote, and the
 * JNI call copies the bytes back into a C struct: no field is restated here, and a field these
 * bindings have no accessor for still reaches the library with its default value.
 *
 * <p>String fields ({@code const char *}) cannot live in Java memory as pointers; they are kept
 * aside by field name and set by the JNI glue for the duration of the call.
 */
final class OptionsStruct {
    /** How a field crosses; the names match the kinds of gradtau_jni_options.h. */
    enum Kind {
        I32(4), F32(4), BOOL(1), SIZE(8), U64(8), STRING(-1);

        /** The size Java reads and writes; -1 for a pointer, which Java never touches. */
        final int bytes;

        Kind(int bytes) {
            this.bytes = bytes;
        }
    }

    /** One field as the JNI library describes it. */
    static final class Field {
        final String name;
        final Kind kind;
        final int offset;
        final int size;

        /** Called by the JNI glue. */
        Field(String name, String kind, long offset, long size) {
            this.name = name;
            this.kind = Kind.valueOf(kind.toUpperCase(java.util.Locale.ROOT));
            this.offset = Math.toIntExact(offset);
            this.size = Math.toIntExact(size);
        }

        @Override
        public String toString() {
            return name + " (" + kind + " at " + offset + ", " + size + " bytes)";
        }
    }

    /** The fields of one C struct, by name, in the header's order. */
    static final class Layout {
        final String struct;
        final int size;
        final Map<String, Field> fields;

        private Layout(String struct, int size, Map<String, Field> fields) {
            this.struct = struct;
            this.size = size;
            this.fields = fields;
        }

        /**
         * The field {@code name}, checked to have the kind these bindings were generated for:
         * a JNI library built from another header fails here, at class initialisation, rather
         * than writing a float into an integer.
         */
        Field field(String name, Kind kind) {
            Field f = fields.get(name);
            if (f == null) {
                throw new IllegalStateException("gradtau: libgradtau_jni.so has no field " + struct
                        + "." + name + "; rebuild it from the same include/gradtau.h as these classes");
            }
            boolean sized = kind == Kind.STRING ? f.size == Long.BYTES : f.size == kind.bytes;
            if (f.kind != kind || !sized) {
                throw new IllegalStateException("gradtau: " + struct + "." + name + " is " + f
                        + " in libgradtau_jni.so, but these classes expect " + kind);
            }
            return f;
        }
    }

    private static final Map<String, Layout> LAYOUTS = new TreeMap<>();

    /** The layout of the C struct {@code struct} (e.g. {@code "gradtau_unlearn_options"}). */
    static synchronized Layout layout(String struct) {
        return LAYOUTS.computeIfAbsent(struct, s -> {
            Native.ensureLoaded();
            Field[] fields = Native.optionFields(s);
            Map<String, Field> byName = new LinkedHashMap<>();
            for (Field f : fields) {
                byName.put(f.name, f);
            }
            return new Layout(s, Math.toIntExact(Native.optionsSize(s)),
                    Collections.unmodifiableMap(byName));
        });
    }

    /**
     * The struct as {@code <struct>_default(arg, ...)} fills it. The JNI glue returns the
     * string fields the default sets (none today) as name/value pairs and NULLs them in the
     * bytes.
     */
    static OptionsStruct defaults(Layout layout, int arg) {
        byte[] bytes = new byte[layout.size];
        String[] pairs = Native.optionsDefault(layout.struct, arg, bytes);
        Map<String, String> strings = new TreeMap<>();
        for (int i = 0; i + 1 < pairs.length; i += 2) {
            strings.put(pairs[i], pairs[i + 1]);
        }
        return new OptionsStruct(layout, bytes, strings);
    }

    final Layout layout;
    private final byte[] bytes;
    private final ByteBuffer view;
    private final Map<String, String> strings;

    private OptionsStruct(Layout layout, byte[] bytes, Map<String, String> strings) {
        this.layout = layout;
        this.bytes = bytes;
        this.view = ByteBuffer.wrap(bytes).order(ByteOrder.nativeOrder());
        this.strings = strings;
    }

    OptionsStruct copy() {
        return new OptionsStruct(layout, bytes.clone(), new TreeMap<>(strings));
    }

    /** The struct's bytes (a copy); string fields are NULL in them. */
    byte[] bytes() {
        return bytes.clone();
    }

    /** The names of the string fields that are set, in a fixed order. */
    String[] stringFields() {
        return strings.keySet().toArray(new String[0]);
    }

    /** Their values as NUL-terminated UTF-8, in the order of {@link #stringFields()}. */
    byte[][] stringValues() {
        return strings.entrySet().stream()
                .map(e -> Native.cString(e.getValue(), e.getKey()))
                .toArray(byte[][]::new);
    }

    int getI32(Field f) {
        return view.getInt(f.offset);
    }

    void setI32(Field f, int v) {
        view.putInt(f.offset, v);
    }

    float getF32(Field f) {
        return view.getFloat(f.offset);
    }

    void setF32(Field f, float v) {
        view.putFloat(f.offset, v);
    }

    boolean getBool(Field f) {
        return view.get(f.offset) != 0;
    }

    void setBool(Field f, boolean v) {
        view.put(f.offset, (byte) (v ? 1 : 0));
    }

    long getSize(Field f) {
        return view.getLong(f.offset);
    }

    /** size_t fields: a negative Java long would wrap to a huge count, so it is refused. */
    void setSize(Field f, long v, String what) {
        if (v < 0) {
            throw new IllegalArgumentException(what + " must not be negative: " + v);
        }
        view.putLong(f.offset, v);
    }

    /** uint64_t fields: any 64-bit pattern (Java's long read as unsigned by C). */
    long getU64(Field f) {
        return view.getLong(f.offset);
    }

    void setU64(Field f, long v) {
        view.putLong(f.offset, v);
    }

    /** A string field; null is C's NULL (every string field's default). */
    String getString(Field f) {
        return strings.get(f.name);
    }

    void setString(Field f, String v) {
        if (v == null) {
            strings.remove(f.name);
        } else {
            Native.cString(v, f.name); // refuses an embedded NUL now, not at the call
            strings.put(f.name, v);
        }
    }

    /** The raw bytes of field {@code f}, for the drift tests. */
    byte[] raw(Field f) {
        return Arrays.copyOfRange(bytes, f.offset, f.offset + f.size);
    }
}
