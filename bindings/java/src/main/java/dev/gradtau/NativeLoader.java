package dev.gradtau;

import java.io.IOException;
import java.io.InputStream;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileTime;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.time.Instant;
import java.util.Comparator;
import java.util.EnumSet;
import java.util.Locale;
import java.util.stream.Stream;

/**
 * Loads the native libraries (libgradtau.so and the JNI glue libgradtau_jni.so).
 *
 * <p>The jar carries both for the platform it was built on, under
 * {@code /dev/gradtau/native/<os>-<arch>/} (e.g. {@code linux-x86_64}); libgradtau.so under
 * its full versioned name, {@code libgradtau.so.<version>}, the jar's Implementation-Version
 * (one version for the crate, the library and the artifact). By default they are
 * copied into a fresh directory under {@code java.io.tmpdir} that only the current user can
 * read (mode 0700), loaded from there, and deleted right away: on Linux a loaded library
 * stays mapped after its file is gone. Directories left behind by a JVM that died while
 * loading are removed by the next load: each is guarded by a file lock that its JVM holds
 * until it is done, so a lock that can be taken means its owner is gone.
 *
 * <p>{@code -Dgradtau.native=system} skips the bundled copies and calls
 * {@code System.loadLibrary("gradtau_jni")}, i.e. loads the libraries installed in a prefix
 * from {@code java.library.path} (libgradtau_jni.so finds libgradtau.so next to it through its
 * rpath {@code $ORIGIN}). A jar built without native libraries (the in-repository test build)
 * falls back to the same.
 */
final class NativeLoader {
    /** System property choosing where the libraries come from: "bundled" (default) or "system". */
    static final String MODE_PROPERTY = "gradtau.native";
    /** Folder of the bundled libraries inside the jar; the platform folder follows. */
    static final String RESOURCE_ROOT = "/dev/gradtau/native/";
    /** Prefix of the extraction directories in java.io.tmpdir. */
    static final String TEMP_PREFIX = "gradtau-native-";
    private static final String LOCK_FILE = ".lock";
    /** A directory with no lock file yet is being created; only this old is it abandoned. */
    private static final Duration CREATION_GRACE = Duration.ofMinutes(10);

    private static boolean loaded;

    private NativeLoader() {}

    /**
     * Loads both libraries once per class loader. Throws UnsatisfiedLinkError naming what was
     * tried.
     */
    static synchronized void load() {
        if (loaded) {
            return;
        }
        String mode = System.getProperty(MODE_PROPERTY, "bundled");
        if (mode.equals("system")) {
            System.loadLibrary("gradtau_jni");
        } else if (mode.equals("bundled")) {
            String folder = RESOURCE_ROOT + platform() + "/";
            String version = NativeLoader.class.getPackage().getImplementationVersion();
            if (version == null || NativeLoader.class.getResource(folder + jniLibrary()) == null) {
                System.loadLibrary("gradtau_jni");
            } else {
                loadBundled(folder, System.mapLibraryName("gradtau") + "." + version);
            }
        } else {
            throw new UnsatisfiedLinkError("-D" + MODE_PROPERTY + "=" + mode
                    + ": expected \"bundled\" (the libraries inside the jar) or \"system\""
                    + " (System.loadLibrary from java.library.path)");
        }
        loaded = true;
    }

    /** The platform folder name: {@code linux-x86_64}, {@code linux-aarch64}, ... */
    static String platform() {
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT);
        if (os.startsWith("linux")) {
            os = "linux";
        } else if (os.startsWith("mac") || os.startsWith("darwin")) {
            os = "macos";
        } else if (os.startsWith("windows")) {
            os = "windows";
        } else {
            os = os.replaceAll("[^a-z0-9]", "");
        }
        String arch = System.getProperty("os.arch", "").toLowerCase(Locale.ROOT);
        switch (arch) {
            case "amd64":
            case "x86_64":
                arch = "x86_64";
                break;
            case "aarch64":
            case "arm64":
                arch = "aarch64";
                break;
            default:
                arch = arch.replaceAll("[^a-z0-9_]", "");
        }
        return os + "-" + arch;
    }

    private static String jniLibrary() {
        return System.mapLibraryName("gradtau_jni");
    }

    private static void loadBundled(String folder, String coreLibrary) {
        Path tmp = Paths.get(System.getProperty("java.io.tmpdir"));
        removeStale(tmp);
        Path dir;
        try {
            dir = Files.createTempDirectory(tmp, TEMP_PREFIX,
                    PosixFilePermissions.asFileAttribute(EnumSet.of(PosixFilePermission.OWNER_READ,
                            PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE)));
        } catch (IOException | UnsupportedOperationException e) {
            throw linkError("cannot create a private directory in " + tmp + " for the bundled native"
                    + " libraries (set -Djava.io.tmpdir, or -D" + MODE_PROPERTY
                    + "=system to load installed ones)", e);
        }
        try (FileChannel lockChannel = FileChannel.open(dir.resolve(LOCK_FILE),
                StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
            lockChannel.lock(); // released when the channel closes, after the directory is gone
            // libgradtau.so first: the JNI glue's dependency on it (its SONAME) is then
            // already satisfied, whatever the loader's search path.
            for (String name : new String[] {coreLibrary, jniLibrary()}) {
                Path file = dir.resolve(name);
                extract(folder + name, file);
                System.load(file.toString());
            }
        } catch (IOException e) {
            throw linkError("cannot extract the bundled native libraries into " + dir, e);
        } finally {
            deleteTree(dir);
        }
    }

    private static void extract(String resource, Path file) throws IOException {
        try (InputStream in = NativeLoader.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IOException("the jar has no " + resource);
            }
            Files.copy(in, file, StandardCopyOption.REPLACE_EXISTING);
        }
        Files.setPosixFilePermissions(file, EnumSet.of(PosixFilePermission.OWNER_READ,
                PosixFilePermission.OWNER_EXECUTE));
    }

    /**
     * Deletes extraction directories whose JVM is gone (its lock can be taken). Best effort:
     * anything that cannot be inspected or deleted is left alone.
     */
    static void removeStale(Path tmp) {
        try (DirectoryStream<Path> dirs = Files.newDirectoryStream(tmp, TEMP_PREFIX + "*")) {
            for (Path dir : dirs) {
                if (Files.isDirectory(dir) && Files.isWritable(dir) && isAbandoned(dir)) {
                    deleteTree(dir);
                }
            }
        } catch (IOException | SecurityException e) {
            // Nothing to clean, or not ours to clean.
        }
    }

    private static boolean isAbandoned(Path dir) throws IOException {
        Path lockFile = dir.resolve(LOCK_FILE);
        if (!Files.exists(lockFile)) {
            FileTime created = Files.getLastModifiedTime(dir);
            return created.toInstant().isBefore(Instant.now().minus(CREATION_GRACE));
        }
        try (FileChannel channel = FileChannel.open(lockFile, StandardOpenOption.WRITE)) {
            FileLock lock = channel.tryLock();
            if (lock == null) {
                return false;
            }
            lock.release();
            return true;
        } catch (OverlappingFileLockException e) {
            return false; // held by this JVM
        }
    }

    private static void deleteTree(Path dir) {
        try (Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException e) {
                    p.toFile().deleteOnExit();
                }
            });
        } catch (IOException e) {
            dir.toFile().deleteOnExit();
        }
    }

    private static UnsatisfiedLinkError linkError(String message, Throwable cause) {
        UnsatisfiedLinkError error = new UnsatisfiedLinkError("gradtau: " + message + ": " + cause);
        error.initCause(cause);
        return error;
    }
}
