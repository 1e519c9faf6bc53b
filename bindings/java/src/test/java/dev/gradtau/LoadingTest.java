package dev.gradtau;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** Loading the JNI library: a missing one gives a clear error, every time it is used. */
class LoadingTest {
    /** Run in a child JVM: tries the API twice and prints what it threw. */
    public static void main(String[] args) {
        for (int i = 0; i < 2; i++) {
            try {
                Model.fromJson("{}");
                System.out.println("loaded");
            } catch (UnsatisfiedLinkError e) {
                System.out.println("ULE: " + e.getMessage());
            } catch (GradtauException e) {
                System.out.println("loaded, " + e.status());
            }
        }
    }

    private static String runChild(String... props) throws Exception {
        String java = System.getProperty("java.home") + File.separator + "bin" + File.separator + "java";
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        List<String> cmd = new ArrayList<>();
        cmd.add(java);
        cmd.add("-cp");
        cmd.add(cp);
        for (String p : props) {
            cmd.add(p);
        }
        cmd.add(LoadingTest.class.getName());
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), out);
        return out;
    }

    @Test
    void aMissingPathIsNamedInTheError() throws Exception {
        String out = runChild("-Dgradtau.jni.path=/nonexistent/libgradtau_jni.so");
        String[] lines = out.strip().split("\n");
        assertEquals(2, lines.length, out);
        for (String line : lines) {
            assertTrue(line.startsWith("ULE: gradtau: cannot load the JNI library"), line);
            assertTrue(line.contains("/nonexistent/libgradtau_jni.so"), line);
            assertTrue(line.contains("gradtau.jni.path"), line);
        }
    }

    @Test
    void noLibraryOnTheLibraryPath() throws Exception {
        String out = runChild("-Djava.library.path=/nonexistent-dir");
        assertTrue(out.startsWith("ULE: gradtau: cannot load the JNI library: System.loadLibrary(\"gradtau_jni\")"), out);
        assertTrue(out.contains("/nonexistent-dir"), out);
    }

    @Test
    void theLibraryPathIsEnoughWithoutTheProperty() throws Exception {
        String dir = System.getProperty("java.library.path");
        String out = runChild("-Djava.library.path=" + dir);
        // "{}" is not a model spec: reaching the library's SPEC error proves both libraries
        // loaded (libgradtau.so through the JNI library's rpath).
        assertEquals("loaded, SPEC\nloaded, SPEC", out.strip(), out);
    }
}
