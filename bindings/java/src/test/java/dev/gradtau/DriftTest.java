package dev.gradtau;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * Fails when the Java binding and the library or include/gradtau.h disagree: a status, a
 * method or an options field one side has and the other lacks, or a builder that does not
 * reach its C field. The fix is always to regenerate: python3 scripts/gen_bindings.py (and
 * rebuild libgradtau_jni.so).
 */
class DriftTest {
    private static final String REGENERATE =
            " (regenerate the bindings: python3 scripts/gen_bindings.py)";

    /** include/gradtau.h; Surefire runs in bindings/java. */
    private static String header() throws IOException {
        Path p = Path.of(System.getProperty("gradtau.header", "../../include/gradtau.h"));
        return Files.readString(p, StandardCharsets.UTF_8);
    }

    /** {@code GRADTAU_X = N} of the status enum, in the header's order. */
    private static Map<String, Integer> headerStatuses() throws IOException {
        String h = header();
        int start = h.indexOf("enum gradtau_status");
        String body = h.substring(h.indexOf('{', start), h.indexOf("};", start));
        Map<String, Integer> out = new LinkedHashMap<>();
        Matcher m = Pattern.compile("(?m)^\\s*GRADTAU_(\\w+) = (-?\\d+),").matcher(body);
        while (m.find()) {
            out.put(m.group(1), Integer.parseInt(m.group(2)));
        }
        assertTrue(out.size() > 1, "no statuses parsed from the header");
        return out;
    }

    /** The field names of {@code typedef struct <struct> { ... }}, in order. */
    private static List<String> headerFields(String struct) throws IOException {
        String h = header();
        int start = h.indexOf("typedef struct " + struct + " {");
        assertTrue(start >= 0, struct + " not in the header");
        String body = h.substring(h.indexOf('{', start) + 1, h.indexOf("} " + struct + ";", start));
        List<String> out = new ArrayList<>();
        for (String line : body.split("\n")) {
            Matcher m = Pattern.compile("^\\s*[\\w\\s*]+?\\b(\\w+);$").matcher(line);
            if (!line.trim().startsWith("//") && m.matches()) {
                out.add(m.group(1));
            }
        }
        return out;
    }

    @Test
    void statusesMatchTheLibrary() {
        for (int code = -8; code < 1024; code++) {
            String name = Gradtau.statusName(code);
            Status s = Status.fromCode(code);
            if (name.equals("GRADTAU_UNKNOWN_STATUS")) {
                assertEquals(Status.UNKNOWN, s, "Java has status " + code
                        + ", which the library does not define" + REGENERATE);
            } else {
                assertNotEquals(Status.UNKNOWN, s, "the library defines " + name + " = " + code
                        + ", Java's Status lacks it" + REGENERATE);
                assertEquals(name, "GRADTAU_" + s.name());
            }
        }
    }

    @Test
    void statusesMatchTheHeader() throws IOException {
        Map<String, Integer> want = headerStatuses();
        Set<String> ours = new TreeSet<>();
        for (Status s : Status.values()) {
            if (s != Status.UNKNOWN) {
                ours.add(s.name());
            }
        }
        assertEquals(new TreeSet<>(want.keySet()), ours, "statuses of include/gradtau.h" + REGENERATE);
        want.forEach((name, code) -> assertEquals(code, Status.valueOf(name).code(), name));
    }

    @Test
    void methodsMatchTheLibrary() {
        int last = -1;
        for (dev.gradtau.Method m : dev.gradtau.Method.values()) {
            assertEquals(m, UnlearnOptions.builder(m).build().method());
            last = Math.max(last, m.code);
        }
        int next = last + 1;
        GradtauException e = assertThrows(GradtauException.class,
                () -> OptionsStruct.defaults(UnlearnOptions.Fields.LAYOUT, next),
                "the library has defaults for method " + next + ", which Java lacks" + REGENERATE);
        assertEquals(Status.INVALID_ARGUMENT, e.status());
    }

    interface Attempt {
        void run(int code);
    }

    /**
     * Every value of an enum is accepted by the library and the number after the last is
     * refused (the library accepting it means a value Java lacks).
     */
    private static void checkEnum(String what, int[] codes, Attempt attempt) {
        int last = -1;
        for (int code : codes) {
            attempt.run(code);
            last = Math.max(last, code);
        }
        int next = last + 1;
        GradtauException e = assertThrows(GradtauException.class, () -> attempt.run(next),
                "the library accepts " + what + " " + next + ", which Java lacks" + REGENERATE);
        assertEquals(Status.INVALID_ARGUMENT, e.status());
    }

    @Test
    void optimizersAndModesMatchTheLibrary() {
        try (Fixtures.Sets sets = Fixtures.Sets.forgetClass(3);
                Fixtures.HostModel h = Fixtures.HostModel.digits(1)) {
            checkEnum("optimizer", Arrays.stream(Optimizer.values()).mapToInt(o -> o.code).toArray(),
                    code -> {
                        TrainOptions o = TrainOptions.builder().epochs(1).device("cpu").build();
                        o.struct().setI32(TrainOptions.Fields.OPTIMIZER, code);
                        h.model.train(sets.forget, o);
                    });
            checkEnum("nabla_tau_mode",
                    Arrays.stream(NablaTauMode.values()).mapToInt(m -> m.code).toArray(),
                    code -> {
                        UnlearnOptions o = UnlearnOptions.builder().maxSteps(1).device("cpu").build();
                        o.struct().setI32(UnlearnOptions.Fields.NABLA_TAU_MODE, code);
                        h.model.unlearn(sets.forget, sets.retain, sets.val(), o);
                    });
        }
    }

    @Test
    void optionFieldsMatchTheHeader() throws IOException {
        checkFields("gradtau_unlearn_options", UnlearnOptions.Fields.LAYOUT, UnlearnOptions.FIELDS);
        checkFields("gradtau_train_options", TrainOptions.Fields.LAYOUT, TrainOptions.FIELDS);
    }

    private static void checkFields(String struct, OptionsStruct.Layout layout,
            Map<String, String> javaFields) throws IOException {
        List<String> header = headerFields(struct);
        assertEquals(header, new ArrayList<>(layout.fields.keySet()),
                "the fields libgradtau_jni.so knows for " + struct + REGENERATE);
        Set<String> exposed = new TreeSet<>(javaFields.keySet());
        exposed.add("struct_size"); // set by _default, never by a caller
        assertEquals(new TreeSet<>(header), exposed, "the fields Java exposes for " + struct + REGENERATE);
    }

    @Test
    void unlearnBuildersReachEveryField() throws ReflectiveOperationException {
        for (dev.gradtau.Method m : dev.gradtau.Method.values()) {
            checkReach(UnlearnOptions.Fields.LAYOUT, UnlearnOptions.FIELDS, UnlearnOptions.class,
                    () -> UnlearnOptions.builder(m), m.code);
        }
    }

    @Test
    void trainBuildersReachEveryField() throws ReflectiveOperationException {
        checkReach(TrainOptions.Fields.LAYOUT, TrainOptions.FIELDS, TrainOptions.class,
                TrainOptions::builder, 0);
    }

    interface BuilderFactory {
        Object make();
    }

    /**
     * For every field: the built options' bytes start as {@code _default}'s bytes; the getter
     * reads what the C struct holds; the builder's setter (where there is one) writes that C
     * field and no other.
     */
    private static void checkReach(OptionsStruct.Layout layout, Map<String, String> fields,
            Class<?> options, BuilderFactory factory, int defaultArg)
            throws ReflectiveOperationException {
        OptionsStruct defaults = OptionsStruct.defaults(layout, defaultArg);
        Object builder = factory.make();
        Object built = builder.getClass().getMethod("build").invoke(builder);
        OptionsStruct struct = structOf(built);
        // Field by field: the padding between fields holds whatever _default's stack held.
        for (OptionsStruct.Field g : layout.fields.values()) {
            if (g.kind != OptionsStruct.Kind.STRING) {
                assertArrayEquals(defaults.raw(g), struct.raw(g), g.name + ": builders start from _default");
            }
        }
        for (Map.Entry<String, String> e : fields.entrySet()) {
            OptionsStruct.Field f = layout.fields.get(e.getKey());
            Method getter = options.getMethod(e.getValue());
            Object value = getter.invoke(built);
            assertEquals(decode(f, struct), encodeComparable(value), e.getKey() + ": the getter");
            Method setter = findSetter(builder.getClass(), e.getValue());
            if (setter == null) {
                // Only a field fixed by the builder's factory (the method) has no setter.
                assertEquals(dev.gradtau.Method.class, getter.getReturnType(), e.getKey() + " has no setter");
                continue;
            }
            Object other = distinct(value, setter.getParameterTypes()[0]);
            Object b = factory.make();
            invoke(setter, b, other);
            Object changed = b.getClass().getMethod("build").invoke(b);
            OptionsStruct cs = structOf(changed);
            assertEquals(encodeComparable(other), decode(f, cs), e.getKey() + ": the setter reaches the C field");
            assertEquals(encodeComparable(other), encodeComparable(getter.invoke(changed)), e.getKey());
            for (OptionsStruct.Field g : layout.fields.values()) {
                if (g != f && g.kind != OptionsStruct.Kind.STRING) {
                    assertArrayEquals(defaults.raw(g), cs.raw(g), e.getKey() + "'s setter changed " + g.name);
                }
            }
        }
    }

    private static OptionsStruct structOf(Object options) throws ReflectiveOperationException {
        Method m = options.getClass().getDeclaredMethod("struct");
        return (OptionsStruct) m.invoke(options);
    }

    private static Method findSetter(Class<?> builder, String name) {
        for (Method m : builder.getMethods()) {
            if (m.getName().equals(name) && m.getParameterCount() == 1) {
                return m;
            }
        }
        return null;
    }

    private static void invoke(Method setter, Object target, Object value) throws IllegalAccessException {
        try {
            setter.invoke(target, value);
        } catch (InvocationTargetException e) {
            fail(setter.getName() + "(" + value + ") threw", e.getCause());
        }
    }

    /** The field as the C struct holds it, as a comparable value; strings from the side map. */
    private static Object decode(OptionsStruct.Field f, OptionsStruct s) {
        if (f.kind == OptionsStruct.Kind.STRING) {
            return s.getString(f);
        }
        ByteBuffer b = ByteBuffer.wrap(s.raw(f)).order(ByteOrder.nativeOrder());
        switch (f.kind) {
            case I32:
                return (long) b.getInt();
            case F32:
                return (long) Float.floatToRawIntBits(b.getFloat());
            case BOOL:
                return b.get() != 0;
            default:
                return b.getLong();
        }
    }

    /** A getter's value in decode's terms. */
    private static Object encodeComparable(Object v) {
        if (v instanceof Float) {
            return (long) Float.floatToRawIntBits((Float) v);
        }
        if (v instanceof Long) {
            return v;
        }
        if (v instanceof Boolean || v instanceof String || v == null) {
            return v;
        }
        if (v instanceof Enum<?>) {
            try {
                return (long) v.getClass().getDeclaredField("code").getInt(v);
            } catch (ReflectiveOperationException e) {
                throw new AssertionError(e);
            }
        }
        throw new AssertionError("no encoding for " + v.getClass());
    }

    /** A value of {@code type} unlike {@code v}. */
    private static Object distinct(Object v, Class<?> type) {
        if (type == float.class) {
            float f = (Float) v;
            return Float.isNaN(f) ? 0.375f : f + 0.375f;
        }
        if (type == long.class) {
            return (Long) v + 3;
        }
        if (type == boolean.class) {
            return !(Boolean) v;
        }
        if (type == String.class) {
            return v == null ? "drift" : v + "drift";
        }
        if (type.isEnum()) {
            Object[] all = type.getEnumConstants();
            for (Object c : all) {
                if (c != v) {
                    return c;
                }
            }
        }
        throw new AssertionError("no distinct value for " + type);
    }
}
