package dev.gradtau;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** ONNX models, run reports' stop reason, the memory limit and data sets' sample shape. */
class OnnxTest {
    private static final Path FIXTURES = Path.of("../../tests/fixtures/onnx");

    /** A little-endian float32 .npy file (format version 1, C order): its shape and values. */
    record Npy(long[] shape, float[] values) {}

    static Npy readNpy(Path path) throws IOException {
        byte[] raw = Files.readAllBytes(path);
        ByteBuffer b = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        assertTrue(raw.length >= 10 && raw[0] == (byte) 0x93 && raw[6] == 1,
                path + " is not a version 1 .npy file");
        int headerLen = Short.toUnsignedInt(b.getShort(8));
        String header = new String(raw, 10, headerLen, StandardCharsets.US_ASCII);
        assertTrue(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"),
                path + ": " + header);
        Matcher m = Pattern.compile("'shape': \\(([0-9, ]*)\\)").matcher(header);
        assertTrue(m.find(), path + ": no shape in " + header);
        List<Long> dims = new ArrayList<>();
        long numel = 1;
        for (String d : m.group(1).split(",")) {
            if (!d.isBlank()) {
                dims.add(Long.parseLong(d.trim()));
                numel *= dims.get(dims.size() - 1);
            }
        }
        assertEquals(4 * numel, raw.length - 10 - headerLen, path + ": data length");
        float[] values = new float[(int) numel];
        b.position(10 + headerLen);
        b.asFloatBuffer().get(values);
        return new Npy(dims.stream().mapToLong(Long::longValue).toArray(), values);
    }

    /** A model compiled from ONNX bytes with a fresh buffer bound to every parameter. */
    static final class OnnxModel implements AutoCloseable {
        final Model model;
        final Map<String, FloatBuffer> buffers = new LinkedHashMap<>();

        OnnxModel(byte[] onnx) {
            model = Model.fromOnnx(onnx, "cross_entropy");
            for (ParamInfo p : model.params()) {
                buffers.put(p.name(), model.bindNew(p.name()));
            }
        }

        float[] get(String name) {
            FloatBuffer b = buffers.get(name);
            float[] out = new float[b.capacity()];
            for (int i = 0; i < out.length; i++) {
                out[i] = b.get(i);
            }
            return out;
        }

        @Override
        public void close() {
            model.close();
        }
    }

    @Test
    void onnxMatchesOnnxRuntimeAndRoundTrips() throws IOException {
        byte[] onnx = Files.readAllBytes(FIXTURES.resolve("mlp.torchscript.onnx"));
        Npy in = readNpy(FIXTURES.resolve("mlp.input.npy"));
        Npy want = readNpy(FIXTURES.resolve("mlp.torchscript.ort.npy"));
        assertArrayEquals(new long[] {6, 10}, want.shape());
        try (OnnxModel h = new OnnxModel(onnx)) {
            assertTrue(h.buffers.containsKey("1.weight"), "parameters: " + h.buffers.keySet());
            h.model.loadOnnxWeights();
            float[] got = h.model.infer(in.values(), (int) in.shape()[0], Output.RAW);
            assertEquals(want.values().length, got.length);
            for (int i = 0; i < got.length; i++) {
                float w = want.values()[i];
                assertEquals(w, got[i], 1e-4 * Math.max(1, Math.abs(w)), "output " + i);
            }

            FloatBuffer w1 = h.buffers.get("1.weight");
            float old = w1.get(7);
            w1.put(7, old + 0.5f);
            byte[] saved = h.model.toOnnx();
            try (OnnxModel back = new OnnxModel(saved)) {
                back.model.loadOnnxWeights();
                assertEquals(h.buffers.keySet(), back.buffers.keySet());
                for (String name : h.buffers.keySet()) {
                    assertArrayEquals(h.get(name), back.get(name), 0f, name);
                }
            }
            try (OnnxModel original = new OnnxModel(onnx)) {
                original.model.loadOnnxWeights();
                assertEquals(old, original.get("1.weight")[7], 0f); // the change was ours
                assertNotEquals(old, h.get("1.weight")[7]);
            }
        }
    }

    @Test
    void onnxErrors() throws IOException {
        GradtauException e = assertThrows(GradtauException.class,
                () -> Model.fromOnnx("not protobuf".getBytes(StandardCharsets.UTF_8), "cross_entropy"));
        assertEquals(Status.SPEC, e.status());
        assertThrows(GradtauException.class, () -> Model.fromOnnx(new byte[0], "cross_entropy"));
        byte[] onnx = Files.readAllBytes(FIXTURES.resolve("mlp.torchscript.onnx"));
        e = assertThrows(GradtauException.class, () -> Model.fromOnnx(onnx, "hinge"));
        assertEquals(Status.INVALID_ARGUMENT, e.status());
        try (Model bare = Model.fromOnnx(onnx, "cross_entropy")) {
            assertEquals(Status.BINDING,
                    assertThrows(GradtauException.class, bare::loadOnnxWeights).status());
            assertEquals(Status.BINDING,
                    assertThrows(GradtauException.class, bare::toOnnx).status());
        }
        try (Fixtures.HostModel json = Fixtures.HostModel.digits(1)) {
            assertEquals(Status.INVALID_ARGUMENT,
                    assertThrows(GradtauException.class, json.model::loadOnnxWeights).status());
            assertEquals(Status.INVALID_ARGUMENT,
                    assertThrows(GradtauException.class, json.model::toOnnx).status());
        }
    }

    @Test
    void stopReason() {
        try (Fixtures.Sets sets = Fixtures.Sets.forgetClass(4);
                Fixtures.HostModel h = Fixtures.HostModel.digits(3)) {
            Report paper = h.model.unlearn(sets.forget, sets.retain, sets.val(),
                    UnlearnOptions.builder().mode(NablaTauMode.PAPER).epochs(3).device("cpu")
                            .maxSteps(1).build());
            assertEquals(StopReason.MAX_STEPS, paper.stopReason(), paper.toString());
            assertTrue(paper.truncated());
        }
        try (Fixtures.Sets sets = Fixtures.Sets.forgetFirst(120);
                Fixtures.HostModel h = Fixtures.HostModel.trained(3, sets.train())) {
            Report adaptive = h.model.unlearn(sets.forget, sets.retain, sets.val());
            StopReason r = adaptive.stopReason();
            assertTrue(r == StopReason.FORGOTTEN || r == StopReason.BUDGET, adaptive.toString());
            assertEquals("GRADTAU_STOP_" + r.name(), Gradtau.stopReasonName(r.code));
        }
        for (StopReason r : StopReason.values()) {
            assertEquals("GRADTAU_STOP_" + r.name(), Gradtau.stopReasonName(r.code));
        }
        assertEquals("GRADTAU_STOP_UNKNOWN", Gradtau.stopReasonName(99));
    }

    @Test
    void memoryLimit() {
        try (Fixtures.Sets sets = Fixtures.Sets.forgetClass(2);
                Fixtures.HostModel h = Fixtures.HostModel.digits(5)) {
            float[] requests = sets.requests(4);
            int[] before = h.snapshot();
            h.model.setMemoryLimit(1024);
            assertEquals(Status.RESOURCE_LIMIT, assertThrows(GradtauException.class,
                    () -> h.model.infer(requests, 4, Output.RAW)).status());
            UnlearnOptions paper = UnlearnOptions.builder().mode(NablaTauMode.PAPER).epochs(1)
                    .device("cpu").maxSteps(1).build();
            assertEquals(Status.RESOURCE_LIMIT, assertThrows(GradtauException.class,
                    () -> h.model.unlearn(sets.forget, sets.retain, sets.val(), paper)).status());
            assertArrayEquals(before, h.snapshot());
            assertThrows(IllegalArgumentException.class, () -> h.model.setMemoryLimit(-1));

            h.model.setMemoryLimit(0);
            assertEquals(40, h.model.infer(requests, 4, Output.RAW).length);
            h.model.unlearn(sets.forget, sets.retain, sets.val(), paper);
            assertFalse(java.util.Arrays.equals(before, h.snapshot()));
        }
    }

    @Test
    void inputsUseTheLibrarysSampleShape() {
        float[] x = new float[3 * 2 * 5];
        for (int i = 0; i < x.length; i++) {
            x[i] = i;
        }
        try (Dataset set = Dataset.ofValues(x, new long[] {3, 2, 5}, new float[3], new long[] {3, 1});
                Dataset sub = set.subset(new long[] {2, 0})) {
            float[] want = new float[20];
            System.arraycopy(x, 20, want, 0, 10);
            System.arraycopy(x, 0, want, 10, 10);
            assertArrayEquals(new long[] {2, 5}, sub.sampleShape());
            assertArrayEquals(want, sub.inputs());
            assertArrayEquals(x, set.inputs());
        }
    }

    /**
     * loadOnnxWeights is a writer (BUSY during a run on the model), toOnnx a read (allowed
     * during a run, seeing the weights from before it).
     */
    @Test
    void onnxReadAndWriteGuards() throws IOException {
        byte[] onnx = Files.readAllBytes(FIXTURES.resolve("mlp.torchscript.onnx"));
        Npy in = readNpy(FIXTURES.resolve("mlp.input.npy"));
        int per = in.values().length / (int) in.shape()[0];
        long[] shape = in.shape().clone();
        shape[0] = 2;
        Dataset[] sets = new Dataset[3];
        try (OnnxModel h = new OnnxModel(onnx)) {
            for (int i = 0; i < 3; i++) {
                float[] x = java.util.Arrays.copyOfRange(in.values(), 2 * i * per, 2 * (i + 1) * per);
                sets[i] = Dataset.ofClasses(x, shape, new int[] {i, i + 3});
            }
            h.model.loadOnnxWeights();
            Map<String, float[]> before = new LinkedHashMap<>();
            h.buffers.keySet().forEach(n -> before.put(n, h.get(n)));
            GradtauException[] loadFailure = new GradtauException[1];
            byte[][] saved = new byte[1][];
            h.model.unlearn(sets[0], sets[1], sets[2], UnlearnOptions.builder()
                    .mode(NablaTauMode.PAPER).epochs(2).device("cpu").maxSteps(1).build(), step -> {
                        loadFailure[0] = assertThrows(GradtauException.class, h.model::loadOnnxWeights);
                        saved[0] = h.model.toOnnx();
                        return true;
                    });
            assertEquals(Status.BUSY, loadFailure[0].status());
            assertFalse(java.util.Arrays.equals(before.get("1.weight"), h.get("1.weight")),
                    "the run changed nothing");
            try (OnnxModel back = new OnnxModel(saved[0])) {
                back.model.loadOnnxWeights();
                for (String name : before.keySet()) {
                    assertArrayEquals(before.get(name), back.get(name), 0f, name);
                }
            }
        } finally {
            for (Dataset d : sets) {
                if (d != null) {
                    d.close();
                }
            }
        }
    }
}
