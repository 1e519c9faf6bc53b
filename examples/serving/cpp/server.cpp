// An inference server that keeps answering while its model unlearns (the protocol is in
// examples/serving/README.md). It is written the way a user of the installed package would
// write it: gradtau.hpp, find_package(gradtau), the C++ standard library and POSIX sockets.
//
// One gradtau::Model serves every request thread: predictions are gradtau reads and run
// side by side, also while POST /unlearn runs ∇τ on the same model on its own request
// thread; the new weights are published atomically when the run ends.
#include <gradtau.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t kFeatures = 784, kClasses = 10;

struct Options {
    int port = 0;
    std::string data = "/usr/share/datasets/fashion-mnist";
    std::string spec = "data/specs/fashion_mlp.json";
    std::size_t run_threads = 1;
};

Options parse(int argc, char **argv) {
    Options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i], v = argv[i + 1];
        if (k == "--port") o.port = std::atoi(v.c_str());
        else if (k == "--data") o.data = v;
        else if (k == "--spec") o.spec = v;
        else if (k == "--run-threads") o.run_threads = std::strtoul(v.c_str(), nullptr, 10);
        else {
            std::cerr << "unknown option " << k << "\n";
            std::exit(2);
        }
    }
    if (o.port <= 0) {
        std::cerr << "usage: server --port P [--data DIR] [--spec FILE] [--run-threads N]\n";
        std::exit(2);
    }
    return o;
}

std::string read_file(const std::string &path) {
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot read " + path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

std::vector<std::size_t> range_where(std::size_t from, std::size_t to, int keep_mod_zero) {
    std::vector<std::size_t> idx;
    for (std::size_t i = from; i < to; i++) {
        bool zero = i % 10 == 0;
        if (keep_mod_zero < 0 || zero == static_cast<bool>(keep_mod_zero)) idx.push_back(i);
    }
    return idx;
}

/// Admits at most `n` holders at a time (C++17 has no counting semaphore).
class Gate {
public:
    explicit Gate(std::size_t n) : free_(n) {}
    void enter() {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [this] { return free_ > 0; });
        free_--;
    }
    void leave() {
        { std::lock_guard<std::mutex> lock(m_); free_++; }
        cv_.notify_one();
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    std::size_t free_;
};

/// The model, its weights (owned here, lent to gradtau) and the data sets of the protocol.
class Service {
public:
    explicit Service(const Options &o)
        : model_(gradtau::Model::from_json(read_file(o.spec))),
          train_all_(gradtau::load_dataset(model_, o.data + "/train-images-idx3-ubyte.gz",
                                           o.data + "/train-labels-idx1-ubyte.gz")),
          test_all_(gradtau::load_dataset(model_, o.data + "/t10k-images-idx3-ubyte.gz",
                                          o.data + "/t10k-labels-idx1-ubyte.gz")),
          train_(train_all_.subset(range_where(0, 6000, -1))),
          forget_(train_.subset(range_where(0, 6000, 1))),
          retain_(train_.subset(range_where(0, 6000, 0))),
          val_(test_all_.subset(range_where(0, 2000, -1))),
          requests_(test_all_.inputs(kFeatures)),
          computing_(std::max<std::size_t>(
              1, std::thread::hardware_concurrency() > o.run_threads
                     ? std::thread::hardware_concurrency() - o.run_threads
                     : 1)) {
        for (const auto &p : model_.params()) {
            weights_.emplace_back(p.numel);
            model_.bind(p.name, weights_.back());
        }
        model_.init_weights(1);
        auto t = gradtau::train_options();
        t.epochs = 3;
        t.seed = 1;
        model_.train(train_, t);
        model_.set_threads(o.run_threads);
    }

    /// POST /predict: "i,j,..." (t10k indices) -> one line per sample.
    std::pair<int, std::string> predict(const std::string &body) const {
        std::vector<float> x;
        std::size_t count = 0;
        std::stringstream in(body);
        std::string item;
        while (std::getline(in, item, ',')) {
            char *end = nullptr;
            unsigned long i = std::strtoul(item.c_str(), &end, 10);
            if (end == item.c_str() || i >= test_all_.size()) return {400, "bad index\n"};
            x.insert(x.end(), requests_.begin() + i * kFeatures,
                     requests_.begin() + (i + 1) * kFeatures);
            count++;
        }
        std::vector<float> logits;
        // While a run is in progress, predictions compute on the cores it does not use.
        const bool admitted = running_.load();
        if (admitted) computing_.enter();
        try {
            logits = model_.infer(x, count);
        } catch (const gradtau::Error &e) {
            if (admitted) computing_.leave();
            return {e.status() == GRADTAU_BUSY ? 503 : 500, std::string(e.what()) + "\n"};
        }
        if (admitted) computing_.leave();
        std::string out;
        char hex[16];
        for (std::size_t s = 0; s < count; s++) {
            const float *row = logits.data() + s * kClasses;
            std::size_t best = 0;
            for (std::size_t c = 1; c < kClasses; c++)
                if (row[c] > row[best]) best = c;
            out += std::to_string(best);
            for (std::size_t c = 0; c < kClasses; c++) {
                std::uint32_t bits;
                std::memcpy(&bits, &row[c], sizeof bits);
                std::snprintf(hex, sizeof hex, " %08" PRIx32, bits);
                out += hex;
            }
            out += '\n';
        }
        return {200, out};
    }

    /// POST /unlearn: ∇τ with its defaults, on this request's thread.
    std::pair<int, std::string> unlearn() {
        auto o = gradtau::unlearn_options();
        o.seed = 7;
        o.device = "cpu";
        running_ = true;
        struct Done {
            std::atomic<bool> &flag;
            ~Done() { flag = false; }
        } done{running_};
        try {
            gradtau::Report r = model_.unlearn(forget_, retain_, val_, o);
            char json[160];
            std::snprintf(json, sizeof json,
                          "{\"steps\": %zu, \"seconds\": %.6f, \"weights_hash\": \"%s\"}\n",
                          r.steps(), r.seconds(), weights_hash().c_str());
            return {200, json};
        } catch (const gradtau::Error &e) {
            return {e.status() == GRADTAU_BUSY ? 409 : 500, std::string(e.what()) + "\n"};
        }
    }

    /// FNV-1a 64 over the bytes of every weight buffer, in parameter order. Called when no
    /// run publishes (after /unlearn returned), so the buffers are stable.
    std::string weights_hash() const {
        std::uint64_t h = 14695981039346656037ull;
        for (const auto &w : weights_) {
            const auto *b = reinterpret_cast<const unsigned char *>(w.data());
            for (std::size_t i = 0; i < w.size() * sizeof(float); i++) {
                h ^= b[i];
                h *= 1099511628211ull;
            }
        }
        char out[17];
        std::snprintf(out, sizeof out, "%016" PRIx64, h);
        return out;
    }

private:
    gradtau::Model model_;
    std::vector<std::vector<float>> weights_;
    gradtau::Dataset train_all_, test_all_, train_, forget_, retain_, val_;
    std::vector<float> requests_;
    std::atomic<bool> running_{false};
    mutable Gate computing_;
};

// ------------------------------------------------------------------ minimal HTTP/1.1

std::atomic<bool> g_stop{false};
int g_listen_fd = -1;

bool read_request(int fd, std::string &buf, std::string &method, std::string &path,
                  std::string &body) {
    std::size_t header_end;
    while ((header_end = buf.find("\r\n\r\n")) == std::string::npos) {
        char chunk[4096];
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return false;
        buf.append(chunk, static_cast<std::size_t>(n));
    }
    std::string head = buf.substr(0, header_end);
    std::istringstream lines(head);
    lines >> method >> path;
    std::size_t length = 0;
    std::string line;
    while (std::getline(lines, line)) {
        for (auto &c : line) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (line.rfind("content-length:", 0) == 0) length = std::strtoul(line.c_str() + 15, nullptr, 10);
    }
    std::size_t total = header_end + 4 + length;
    while (buf.size() < total) {
        char chunk[4096];
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return false;
        buf.append(chunk, static_cast<std::size_t>(n));
    }
    body = buf.substr(header_end + 4, length);
    buf.erase(0, total);
    return true;
}

void send_all(int fd, const std::string &s) {
    std::size_t at = 0;
    while (at < s.size()) {
        ssize_t n = send(fd, s.data() + at, s.size() - at, MSG_NOSIGNAL);
        if (n <= 0) return;
        at += static_cast<std::size_t>(n);
    }
}

void respond(int fd, int status, const std::string &body) {
    const char *reason = status == 200 ? "OK" : status == 400 ? "Bad Request"
                         : status == 404 ? "Not Found" : status == 409 ? "Conflict"
                         : status == 503 ? "Service Unavailable" : "Internal Server Error";
    send_all(fd, "HTTP/1.1 " + std::to_string(status) + " " + reason +
                     "\r\nContent-Type: text/plain\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body);
}

void serve_connection(Service &svc, int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::string buf, method, path, body;
    while (read_request(fd, buf, method, path, body)) {
        if (method == "GET" && path == "/health") {
            respond(fd, 200, "ok\n");
        } else if (method == "POST" && path == "/predict") {
            auto [status, text] = svc.predict(body);
            respond(fd, status, text);
        } else if (method == "POST" && path == "/unlearn") {
            auto [status, text] = svc.unlearn();
            respond(fd, status, text);
        } else if (method == "GET" && path == "/weights_hash") {
            respond(fd, 200, svc.weights_hash() + "\n");
        } else if (method == "POST" && path == "/shutdown") {
            respond(fd, 200, "bye\n");
            g_stop = true;
            shutdown(g_listen_fd, SHUT_RDWR);
            break;
        } else {
            respond(fd, 404, "no such endpoint\n");
        }
    }
    close(fd);
}

}  // namespace

int main(int argc, char **argv) {
    Options o = parse(argc, argv);
    gradtau::check_abi();
    Service svc(o);

    g_listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(g_listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(o.port));
    if (bind(g_listen_fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 ||
        listen(g_listen_fd, 64) != 0) {
        std::perror("bind/listen");
        return 1;
    }
    std::cout << "listening on " << o.port << std::endl;
    while (!g_stop) {
        int fd = accept(g_listen_fd, nullptr, nullptr);
        if (fd < 0) {
            if (g_stop) break;
            if (errno == EINTR) continue;
            std::perror("accept");
            return 1;
        }
        std::thread([&svc, fd] { serve_connection(svc, fd); }).detach();
    }
    close(g_listen_fd);
    // Detached connection threads may still be inside a call on the model: leave without
    // running destructors rather than free the model under them.
    std::_Exit(0);
}
