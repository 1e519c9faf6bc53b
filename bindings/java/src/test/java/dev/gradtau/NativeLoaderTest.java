package dev.gradtau;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The parts of the bundled-library loader that the packaging test (a Maven project outside
 * the repository, scripts/test-packaging.sh) cannot reach: the platform name and the removal
 * of directories left behind by dead JVMs.
 */
class NativeLoaderTest {
    @Test
    void thePlatformFolderMatchesWhatThePomBundles() {
        String arch = System.getProperty("os.arch");
        if (System.getProperty("os.name").equals("Linux") && arch.equals("amd64")) {
            assertEquals("linux-x86_64", NativeLoader.platform());
        }
        assertTrue(NativeLoader.platform().matches("[a-z0-9]+-[a-z0-9_]+"), NativeLoader.platform());
    }

    private static Path extractionDir(Path tmp, String name, boolean withLock) throws IOException {
        Path dir = Files.createDirectory(tmp.resolve(NativeLoader.TEMP_PREFIX + name));
        Files.writeString(dir.resolve("libgradtau_jni.so"), "not a library");
        if (withLock) {
            Files.createFile(dir.resolve(".lock"));
        }
        return dir;
    }

    @Test
    void onlyAbandonedDirectoriesAreRemoved(@TempDir Path tmp) throws IOException {
        Path abandoned = extractionDir(tmp, "dead", true);
        Path loading = extractionDir(tmp, "alive", true);
        Path creating = extractionDir(tmp, "new", false);
        Path unrelated = Files.createDirectory(tmp.resolve("something-else"));
        try (FileChannel held = FileChannel.open(loading.resolve(".lock"), StandardOpenOption.WRITE)) {
            held.lock(); // a JVM still loading from "alive"
            NativeLoader.removeStale(tmp);
        }
        assertFalse(Files.exists(abandoned), "a directory whose lock is free is removed");
        assertTrue(Files.exists(loading.resolve("libgradtau_jni.so")), "a held lock protects its directory");
        assertTrue(Files.exists(creating), "a fresh directory without a lock file is being created");
        assertTrue(Files.exists(unrelated));
    }
}
