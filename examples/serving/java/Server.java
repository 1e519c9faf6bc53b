// An HTTP service that answers predictions from a gradtau model while a request unlearns part
// of its training set on that same model (the protocol is in examples/serving/README.md).
// JDK standard library only (com.sun.net.httpserver), written against the gradtau jar the way
// a service outside this repository would be.
//
//   java -Dgradtau.jni.path=/path/to/libgradtau_jni.so -cp gradtau.jar:. Server \
//       --port 8080 --spec fashion_mlp.json [--data DIR] [--run-threads N]

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.gradtau.Dataset;
import dev.gradtau.GradtauException;
import dev.gradtau.Method;
import dev.gradtau.Model;
import dev.gradtau.Output;
import dev.gradtau.ParamInfo;
import dev.gradtau.PublishPhase;
import dev.gradtau.Report;
import dev.gradtau.Status;
import dev.gradtau.TrainOptions;
import dev.gradtau.UnlearnOptions;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.URL;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.stream.IntStream;

public final class Server {
    /** The first 6000 training images are the training set; 1 in 10 of them is forgotten. */
    private static final int TRAIN = 6000;
    /** The first 2000 t10k images are the validation set; requests use the rest. */
    private static final int VALIDATION = 2000;
    /** Request threads: a few predicting clients, the unlearning request and the odd query. */
    private static final int HTTP_THREADS = 8;
    /** Requests the service sends itself before it reports ready (see warmUp). */
    private static final int WARM_UP_REQUESTS = 3000;

    private final Model model;
    // The weights, owned here and lent to gradtau; the byte views are what /weights_hash reads.
    private final List<ByteBuffer> weights = new ArrayList<>();
    // This service's own reader of the weight buffers (/weights_hash) takes the read side; the
    // publish hook takes the write side while gradtau writes new weights into them.
    private final ReentrantReadWriteLock weightsLock = new ReentrantReadWriteLock();
    // While a run is in progress, predictions compute on the cores the run does not use:
    // `computing` admits that many at a time, so the run keeps the core it was given.
    private final AtomicBoolean running = new AtomicBoolean();
    private final Semaphore computing;
    private final Dataset forget;
    private final Dataset retain;
    private final Dataset validation;
    private final float[] t10kInputs;
    private final int features;
    private final int classes;

    private Server(Path spec, Path data, int runThreads) throws IOException {
        computing = new Semaphore(Math.max(1,
                Runtime.getRuntime().availableProcessors() - Math.max(runThreads, 0)));
        model = Model.fromJson(Files.readString(spec));
        for (ParamInfo p : model.params()) {
            ByteBuffer bytes = ByteBuffer.allocateDirect(Math.toIntExact(4 * p.numel()))
                    .order(ByteOrder.nativeOrder());
            model.bind(p.name(), bytes.asFloatBuffer());
            weights.add(bytes);
        }
        model.setPublishHook(phase -> {
            if (phase == PublishPhase.BEGIN) {
                weightsLock.writeLock().lock();
            } else {
                weightsLock.writeLock().unlock();
            }
            return true;
        });
        features = Math.toIntExact(product(model.inputShape()));
        classes = Math.toIntExact(product(model.outputShape()));

        Dataset train;
        try (Dataset all = Dataset.load(model, data.resolve("train-images-idx3-ubyte.gz").toString(),
                data.resolve("train-labels-idx1-ubyte.gz").toString())) {
            train = all.subset(IntStream.range(0, TRAIN).toArray());
        }
        forget = train.subset(IntStream.range(0, TRAIN).filter(i -> i % 10 == 0).toArray());
        retain = train.subset(IntStream.range(0, TRAIN).filter(i -> i % 10 != 0).toArray());
        try (Dataset t10k = Dataset.load(model, data.resolve("t10k-images-idx3-ubyte.gz").toString(),
                data.resolve("t10k-labels-idx1-ubyte.gz").toString())) {
            validation = t10k.subset(IntStream.range(0, VALIDATION).toArray());
            t10kInputs = t10k.inputs();
        }

        model.initWeights(1);
        model.train(train, TrainOptions.builder().epochs(3).seed(1).build());
        train.close();
        // Training at start-up had every core (nobody was served yet). From now on every call on
        // the model, the unlearning run as each prediction, uses at most runThreads cores, so a
        // run leaves the others to serving.
        model.setThreads(runThreads);
    }

    private static long product(long[] shape) {
        long n = 1;
        for (long d : shape) {
            n *= d;
        }
        return n;
    }

    /** A status and a plain-text body. */
    private record Answer(int status, String body) {}

    private static Answer failure(GradtauException e, int busyStatus) {
        return new Answer(e.status() == Status.BUSY ? busyStatus : 500, e.getMessage() + "\n");
    }

    /** POST /predict: "i,j,..." (t10k indices) -> per sample, the class and the 10 logits' bits. */
    private Answer predict(String body) {
        String[] items = body.isBlank() ? new String[0] : body.trim().split(",");
        int count = items.length;
        int samples = t10kInputs.length / features;
        float[] x = new float[count * features];
        for (int s = 0; s < count; s++) {
            int i;
            try {
                i = Integer.parseInt(items[s].trim());
            } catch (NumberFormatException e) {
                return new Answer(400, "bad index " + items[s].trim() + "\n");
            }
            if (i < 0 || i >= samples) {
                return new Answer(400, "bad index " + i + "\n");
            }
            System.arraycopy(t10kInputs, i * features, x, s * features, features);
        }
        float[] logits;
        boolean admitted = running.get();
        if (admitted) {
            computing.acquireUninterruptibly();
        }
        try {
            // One call: the classes below come from the same model as the logits.
            logits = model.infer(x, count, Output.RAW);
        } catch (GradtauException e) {
            return failure(e, 503);
        } finally {
            if (admitted) {
                computing.release();
            }
        }
        StringBuilder out = new StringBuilder(count * (classes * 9 + 3));
        for (int s = 0; s < count; s++) {
            int row = s * classes;
            int best = 0;
            for (int c = 1; c < classes; c++) {
                if (logits[row + c] > logits[row + best]) {
                    best = c;
                }
            }
            out.append(best);
            for (int c = 0; c < classes; c++) {
                out.append(' ');
                hex(out, Float.floatToRawIntBits(logits[row + c]), 8);
            }
            out.append('\n');
        }
        return new Answer(200, out.toString());
    }

    /** POST /unlearn: ∇τ with its defaults, seed 7, on the CPU, on this request's thread. */
    private Answer unlearn() {
        UnlearnOptions o = UnlearnOptions.builder(Method.NABLA_TAU).seed(7).device("cpu").build();
        running.set(true);
        try {
            Report r = model.unlearn(forget, retain, validation, o);
            return new Answer(200, String.format(Locale.ROOT,
                    "{\"steps\": %d, \"seconds\": %.6f, \"weights_hash\": \"%s\"}\n", r.steps(),
                    r.seconds(), weightsHash()));
        } catch (GradtauException e) {
            return failure(e, 409);
        } finally {
            running.set(false);
        }
    }

    /** FNV-1a 64 over the bytes of every weight buffer, in parameter order. */
    private String weightsHash() {
        long h = 0xcbf29ce484222325L;
        weightsLock.readLock().lock();
        try {
            for (ByteBuffer w : weights) {
                for (int i = 0; i < w.capacity(); i++) {
                    h ^= w.get(i) & 0xff;
                    h *= 0x100000001b3L;
                }
            }
        } finally {
            weightsLock.readLock().unlock();
        }
        StringBuilder out = new StringBuilder(16);
        hex(out, h, 16);
        return out.toString();
    }

    private static void hex(StringBuilder out, long value, int digits) {
        for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) {
            out.append(Character.forDigit((int) (value >>> shift) & 0xf, 16));
        }
    }

    private void handle(HttpExchange ex, HttpServer server, ExecutorService pool) throws IOException {
        String route = ex.getRequestMethod() + " " + ex.getRequestURI().getPath();
        String body;
        try (InputStream in = ex.getRequestBody()) {
            body = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        Answer a;
        try {
            a = switch (route) {
                case "GET /health" -> new Answer(200, "ok\n");
                case "POST /predict" -> predict(body);
                case "POST /unlearn" -> unlearn();
                case "GET /weights_hash" -> new Answer(200, weightsHash() + "\n");
                case "POST /shutdown" -> new Answer(200, "bye\n");
                default -> new Answer(404, "no such endpoint: " + route + "\n");
            };
        } catch (RuntimeException e) {
            a = new Answer(500, e + "\n");
        }
        byte[] bytes = a.body().getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "text/plain; charset=utf-8");
        ex.sendResponseHeaders(a.status(), bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
        if (route.equals("POST /shutdown")) {
            // Off the request thread: stop() waits for the running exchanges, this one included.
            new Thread(() -> {
                server.stop(1);
                pool.shutdownNow();
                model.close();
                System.exit(0);
            }).start();
        }
    }

    public static void main(String[] args) throws IOException {
        int port = -1;
        Path spec = null;
        Path data = Path.of("/usr/share/datasets/fashion-mnist");
        int runThreads = 1;
        for (int i = 0; i < args.length; i++) {
            String value = i + 1 < args.length ? args[i + 1] : null;
            switch (args[i]) {
                case "--port" -> port = Integer.parseInt(need(value, "--port"));
                case "--spec" -> spec = Path.of(need(value, "--spec"));
                case "--data" -> data = Path.of(need(value, "--data"));
                case "--run-threads" -> runThreads = Integer.parseInt(need(value, "--run-threads"));
                default -> usage("unknown argument " + args[i]);
            }
            i++;
        }
        if (port < 0 || spec == null) {
            usage("--port and --spec are required");
        }
        // The JDK's server writes a response's headers and body in two packets; without this,
        // Nagle's algorithm holds the body back until the client's delayed ACK (about 40 ms
        // per request on Linux).
        System.setProperty("sun.net.httpserver.nodelay", "true");
        Server service = new Server(spec, data, runThreads);
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 64);
        ExecutorService pool = Executors.newFixedThreadPool(HTTP_THREADS);
        server.setExecutor(pool);
        server.createContext("/", ex -> {
            try {
                service.handle(ex, server, pool);
            } finally {
                ex.close();
            }
        });
        server.start();
        warmUp(port);
        System.out.println("listening on " + port);
        System.out.flush();
    }

    /**
     * Sends the service a few thousand requests of its own before it reports that it is ready,
     * so that the JIT has compiled the request path (the HTTP server's and this class's) before
     * clients arrive: a JVM service's readiness step, like a load balancer's warm-up.
     */
    private static void warmUp(int port) throws IOException {
        URL url = URI.create("http://127.0.0.1:" + port + "/predict").toURL();
        byte[] body = Integer.toString(VALIDATION).getBytes(StandardCharsets.UTF_8);
        for (int i = 0; i < WARM_UP_REQUESTS; i++) {
            HttpURLConnection c = (HttpURLConnection) url.openConnection();
            c.setRequestMethod("POST");
            c.setDoOutput(true);
            try (OutputStream out = c.getOutputStream()) {
                out.write(body);
            }
            try (InputStream in = c.getInputStream()) {
                in.readAllBytes(); // read fully, so that the connection is kept alive and reused
            }
            if (c.getResponseCode() != 200) {
                throw new IOException("warm-up request answered " + c.getResponseCode());
            }
        }
    }

    private static String need(String value, String flag) {
        if (value == null) {
            usage(flag + " needs a value");
        }
        return value;
    }

    private static void usage(String problem) {
        System.err.println(problem);
        System.err.println("usage: Server --port P --spec FILE [--data DIR] [--run-threads N]");
        System.exit(2);
    }
}
