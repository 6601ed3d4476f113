// Test harness: a real `deltagate front` and N `deltagate worker` processes on loopback, a local OTLP
// receiver, small HTTP helpers, a bounded command runner (openssl, `deltagate tokenize`), a hand-encoded
// grpc.health.v1 check, and UTF-8 validation. The front can serve TLS, require a bearer token and find its
// workers by DNS name (ClusterOptions). Every process dies with the test (PR_SET_PDEATHSIG) and is stopped
// in the destructor; every wait is bounded.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "deltagate/v1/inference.grpc.pb.h"
#include "tests/support/grpc_health.h"

namespace dg::front::testing {

inline std::string deltagate_binary() { return std::string(DG_BINARY_DIR) + "/services/deltagate"; }

inline int free_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

// Starts argv; stdout goes to a pipe when `out_fd` is given.
inline pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, int* out_fd = nullptr) {
    int p[2] = {-1, -1};
    if (out_fd && ::pipe(p) != 0) return -1;
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(1);
        if (out_fd) {
            ::dup2(p[1], 1);
            ::close(p[0]);
            ::close(p[1]);
        }
        for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execv(argv[0].c_str(), args.data());
        ::_exit(127);
    }
    if (out_fd) {
        ::close(p[1]);
        *out_fd = p[0];
    }
    return pid;
}

// A line from fd (blocking; the child writes it at startup).
inline std::string read_line(int fd) {
    std::string s;
    char c;
    while (::read(fd, &c, 1) == 1 && c != '\n') s += c;
    return s;
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A fresh directory under $TMPDIR (or /tmp), removed with the object.
class TempDir {
public:
    TempDir() {
        const char* t = std::getenv("TMPDIR");
        std::string tmpl = std::string(t && *t ? t : "/tmp") + "/dg-front-test-XXXXXX";
        if (::mkdtemp(tmpl.data())) path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        if (!path_.empty()) std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

// Runs argv to completion (stdin /dev/null), at most `timeout_s` seconds (then SIGKILL, exit code -1).
// Returns the exit code; stdout goes to `out` when given, stderr to `err` when given (else inherited).
inline int run_command(const std::vector<std::string>& argv, int timeout_s, std::string* out = nullptr,
                       std::string* err = nullptr, const std::vector<std::string>& env = {}) {
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    if (::pipe(po) != 0 || ::pipe(pe) != 0) return -1;
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(1);
        const int devnull = ::open("/dev/null", O_RDONLY);
        ::dup2(devnull, 0);
        if (out) ::dup2(po[1], 1);
        if (err) ::dup2(pe[1], 2);
        ::close(po[0]), ::close(po[1]), ::close(pe[0]), ::close(pe[1]);
        for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        ::execvp(argv[0].c_str(), args.data());
        ::_exit(127);
    }
    ::close(po[1]);
    ::close(pe[1]);
    if (pid < 0) {
        ::close(po[0]), ::close(pe[0]);
        return -1;
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
    int open = 2;
    bool timed_out = false;
    char buf[8192];
    while (open > 0) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        if (::poll(fds, 2, int(std::min<int64_t>(left.count(), 1000))) < 0 && errno != EINTR) break;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
            if (n > 0) {
                if (std::string* dst = i == 0 ? out : err) dst->append(buf, size_t(n));
            } else {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open;
            }
        }
    }
    for (auto& f : fds)
        if (f.fd >= 0) ::close(f.fd);
    if (timed_out) ::kill(pid, SIGKILL);
    int st = 0;
    // The pipes are closed: the child has exited, or exits now (killed, or at its next write).
    for (int i = 0; i < 100 && ::waitpid(pid, &st, WNOHANG) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (::waitpid(pid, &st, WNOHANG) == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &st, 0);
        return -1;
    }
    if (timed_out) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// A self-signed P-256 certificate for localhost / 127.0.0.1 / ::1 (openssl), written as DIR/NAME.crt and
// DIR/NAME.key. Returns "" on success, else openssl's complaint.
inline std::string make_self_signed_cert(const std::string& dir, const std::string& name = "front") {
    std::string err;
    const int rc = run_command({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext",
                                "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1", "-keyout", dir + "/" + name + ".key",
                                "-out", dir + "/" + name + ".crt"},
                               60, nullptr, &err);
    return rc == 0 ? std::string() : "openssl req failed (exit " + std::to_string(rc) + "): " + err;
}

// Whether `s` is well-formed UTF-8 (no truncated or overlong sequences, no surrogates, <= U+10FFFF).
inline bool valid_utf8(const std::string& s) {
    size_t i = 0;
    while (i < s.size()) {
        const auto c = uint8_t(s[i]);
        int n;
        uint32_t cp;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + size_t(n) >= s.size()) return false;  // truncated
        for (int k = 1; k <= n; ++k) {
            const auto b = uint8_t(s[i + size_t(k)]);
            if ((b & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (b & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += size_t(n) + 1;
    }
    return true;
}

// The addresses getaddrinfo gives for `host` (numeric, IPv6 in brackets), as the front's DNS discovery
// sees them.
inline std::vector<std::string> resolve_host(const std::string& host) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    std::vector<std::string> out;
    if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0) return out;
    for (addrinfo* a = res; a; a = a->ai_next) {
        char buf[INET6_ADDRSTRLEN] = {};
        std::string addr;
        if (a->ai_family == AF_INET)
            addr = ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, buf, sizeof(buf));
        else if (a->ai_family == AF_INET6)
            addr = "[" + std::string(::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, buf,
                                                 sizeof(buf))) + "]";
        if (!addr.empty() && std::find(out.begin(), out.end(), addr) == out.end()) out.push_back(addr);
    }
    ::freeaddrinfo(res);
    return out;
}

// Whether a TCP socket can listen on `ip` (numeric, IPv6 in brackets) at `port` right now.
inline bool can_listen(const std::string& ip, int port) {
    const bool v6 = !ip.empty() && ip[0] == '[';
    const int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    bool ok;
    if (v6) {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(uint16_t(port));
        int one = 1;
        ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        ok = ::inet_pton(AF_INET6, ip.substr(1, ip.size() - 2).c_str(), &a.sin6_addr) == 1 &&
             ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    } else {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(uint16_t(port));
        ok = ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr) == 1 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    }
    ::close(fd);
    return ok;
}

// grpc.health.v1 status of `service` (1 SERVING, 2 NOT_SERVING), or -1 with the RPC's status in *st.
inline int health_check(const std::shared_ptr<grpc::Channel>& channel, const std::string& service, grpc::Status* st,
                        std::chrono::seconds deadline = std::chrono::seconds(10)) {
    return dg::testing::grpc_health_check(channel.get(), service, st, deadline);
}

// The front publishes its health every 100 ms from its worker count: waits (bounded, 5 s) until `service`
// reports `want` (1 SERVING, 2 NOT_SERVING); returns the last status seen.
inline int wait_health(const std::shared_ptr<grpc::Channel>& channel, const std::string& service, int want,
                       grpc::Status* st) {
    int got = -1;
    for (int i = 0; i < 50 && (got = health_check(channel, service, st)) != want; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return got;
}

// A TCP connection to 127.0.0.1:port: the fd, or -1.
inline int connect_loopback(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// Sends a raw HTTP/1.1 request (with Connection: close) to 127.0.0.1:port; the whole raw response ("" when
// the connection fails).
inline std::string http_exchange(int port, const std::string& request) {
    const int fd = connect_loopback(port);
    if (fd < 0) return "";
    (void)!::write(fd, request.data(), request.size());
    std::string resp;
    char buf[8192];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) resp.append(buf, size_t(n));
    ::close(fd);
    return resp;
}

// GET http://127.0.0.1:port/path -> body ("" on failure).
inline std::string http_get(int port, const std::string& path) {
    const std::string resp = http_exchange(port, "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const size_t body = resp.find("\r\n\r\n");
    return body == std::string::npos ? "" : resp.substr(body + 4);
}

// A minimal OTLP/HTTP receiver: stores every POST body, answers 200.
class OtlpReceiver {
public:
    OtlpReceiver() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof(a);
        ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
        ::listen(fd_, 16);
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { run(); });
    }
    ~OtlpReceiver() {
        stop_ = true;
        ::shutdown(fd_, SHUT_RDWR);
        ::close(fd_);
        thread_.join();
    }
    int port() const { return port_; }
    std::vector<std::string> bodies() {
        std::lock_guard<std::mutex> l(mu_);
        return bodies_;
    }

private:
    void run() {
        while (!stop_) {
            int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) return;
            std::string req;
            char buf[8192];
            size_t need = std::string::npos;
            while (true) {
                const size_t hdr = req.find("\r\n\r\n");
                if (hdr != std::string::npos && need == std::string::npos) {
                    const char* cl = ::strcasestr(req.c_str(), "content-length:");
                    need = hdr + 4 + (cl ? std::strtoul(cl + 15, nullptr, 10) : 0);
                }
                if (need != std::string::npos && req.size() >= need) break;
                const ssize_t n = ::read(c, buf, sizeof(buf));
                if (n <= 0) break;
                req.append(buf, size_t(n));
            }
            const size_t hdr = req.find("\r\n\r\n");
            if (hdr != std::string::npos) {
                std::lock_guard<std::mutex> l(mu_);
                bodies_.push_back(req.substr(hdr + 4));
            }
            const char* ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
            (void)!::write(c, ok, std::strlen(ok));
            ::close(c);
        }
    }
    int fd_ = -1, port_ = 0;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::vector<std::string> bodies_;
    std::thread thread_;
};

struct ClusterOptions {
    int workers = 2;                        // started on free 127.0.0.1 ports, unless worker_listen is given
    std::string model;                      // empty: the built-in tiny model
    std::vector<std::string> front_args;
    std::vector<std::string> env;           // for every process (OTEL_*)
    std::vector<std::string> front_env;     // for the front only
    std::vector<std::string> worker_listen; // non-empty: one worker per address (host:port, [v6]:port) instead
    std::string workers_dns;                // non-empty: the front gets --workers-dns NAME:PORT, not the list
    // TLS: the front serves with --tls-cert/--tls-key, and the harness's channel trusts tls_cert (PEM) as
    // its root, connecting to 127.0.0.1 (the certificate must name IP:127.0.0.1).
    std::string tls_cert, tls_key;
    // The front requires this bearer token (--auth-token, or $DELTAGATE_AUTH_TOKEN for the front when
    // auth_token_in_env); the harness's own calls (wait_ready, context()) send it.
    std::string auth_token;
    bool auth_token_in_env = false;
    std::vector<std::string> worker_args;   // for every worker (--drain-ms, --max-queue, ...)
    int front_port = 0;                     // 0: ephemeral; fixed for tests that restart the front in place
    // Non-empty: the workers require the token this file holds (--auth-token-file) and the front sends
    // it (--worker-token-file).
    std::string worker_token_file;
};

class Cluster {
public:
    explicit Cluster(const ClusterOptions& o) : opt_(o) {
        std::vector<std::string> listen = o.worker_listen;
        if (listen.empty())
            for (int i = 0; i < o.workers; ++i) listen.push_back("127.0.0.1:" + std::to_string(free_port()));
        std::string list;
        for (const auto& addr : listen) {
            start_worker(addr);
            list += (list.empty() ? "" : ",") + addr;
        }
        worker_list_ = list;
        start_front();
    }

    // Starts the front (again, after stop_front(): on the same port when front_port is set).
    void start_front() {
        const ClusterOptions& o = opt_;
        std::vector<std::string> argv = {deltagate_binary(), "front", "--listen",
                                         "127.0.0.1:" + std::to_string(o.front_port), "--metrics-listen", "127.0.0.1:0"};
        if (!o.workers_dns.empty())
            argv.insert(argv.end(), {"--workers-dns", o.workers_dns});
        else
            argv.insert(argv.end(), {"--workers", worker_list_});
        if (!o.tls_cert.empty()) argv.insert(argv.end(), {"--tls-cert", o.tls_cert, "--tls-key", o.tls_key});
        if (!o.worker_token_file.empty()) argv.insert(argv.end(), {"--worker-token-file", o.worker_token_file});
        std::vector<std::string> env = o.env;
        env.insert(env.end(), o.front_env.begin(), o.front_env.end());
        if (!o.auth_token.empty() && o.auth_token_in_env) env.push_back("DELTAGATE_AUTH_TOKEN=" + o.auth_token);
        if (!o.auth_token.empty() && !o.auth_token_in_env) argv.insert(argv.end(), {"--auth-token", o.auth_token});
        argv.insert(argv.end(), o.front_args.begin(), o.front_args.end());
        int out = -1;
        front_pid = spawn(argv, env, &out);
        // "front listening on port N, metrics on http://127.0.0.1:M/metrics" (EOF, port 0: it failed to start)
        const std::string line = read_line(out);
        ::close(out);
        port = metrics_port = 0;
        std::sscanf(line.c_str(), "front listening on port %d, metrics on http://127.0.0.1:%d", &port, &metrics_port);
        if (const size_t h = line.find(", health on port "); h != std::string::npos)
            health_port = std::atoi(line.c_str() + h + std::strlen(", health on port "));
        target = "127.0.0.1:" + std::to_string(port);
        if (!channel) {
            channel = grpc::CreateChannel(target, credentials());
            stub = deltagate::v1::Inference::NewStub(channel);
        }
    }
    // SIGTERM to the front (it drains), then waits for it to exit; its exit status (-1: killed by a signal).
    int stop_front() {
        ::kill(front_pid, SIGTERM);
        int st = 0;
        ::waitpid(front_pid, &st, 0);
        front_pid = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }

    // Starts one more worker listening on `addr` (the front finds it by its list or DNS name); returns its index.
    int start_worker(const std::string& addr) {
        // Each worker's /metrics on a free loopback port (worker_metrics_ports[i]), for tests that need to
        // see what the worker computed rather than what the front delivered.
        const int mport = free_port();
        worker_metrics_ports.push_back(mport);
        worker_pids.push_back(spawn(worker_argv(addr, mport), opt_.env));
        worker_addrs.push_back(addr);
        return int(worker_pids.size()) - 1;
    }
    // SIGTERM to worker i (it drains: --drain-ms), waits for its exit and starts it again on the same
    // address; the exit status of the old one (-1: killed by a signal).
    int restart_worker(int i) {
        const size_t k = size_t(i);
        ::kill(worker_pids[k], SIGTERM);
        int st = 0;
        ::waitpid(worker_pids[k], &st, 0);
        worker_metrics_ports[k] = free_port();
        worker_pids[k] = spawn(worker_argv(worker_addrs[k], worker_metrics_ports[k]), opt_.env);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }

    std::vector<std::string> worker_argv(const std::string& addr, int metrics_port) const {
        std::vector<std::string> argv = {deltagate_binary(), "worker", "--listen", addr, "--backend", "cpu",
                                         "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port)};
        if (!opt_.model.empty()) argv.insert(argv.end(), {"--model", opt_.model});
        if (!opt_.worker_token_file.empty()) argv.insert(argv.end(), {"--auth-token-file", opt_.worker_token_file});
        argv.insert(argv.end(), opt_.worker_args.begin(), opt_.worker_args.end());
        return argv;
    }

    // The channel credentials the harness uses: TLS trusting tls_cert when set, else insecure.
    std::shared_ptr<grpc::ChannelCredentials> credentials() const {
        if (opt_.tls_cert.empty()) return grpc::InsecureChannelCredentials();
        grpc::SslCredentialsOptions ssl;
        ssl.pem_root_certs = read_file(opt_.tls_cert);
        return grpc::SslCredentials(ssl);
    }

    // A context with a deadline and, when the front needs one, the bearer token.
    std::unique_ptr<grpc::ClientContext> context(std::chrono::milliseconds deadline = std::chrono::seconds(120)) const {
        auto c = std::make_unique<grpc::ClientContext>();
        c->set_deadline(std::chrono::system_clock::now() + deadline);
        if (!opt_.auth_token.empty()) c->AddMetadata("authorization", "Bearer " + opt_.auth_token);
        return c;
    }

    // ListModels' first model (with the token when needed), or nothing when the call fails.
    std::optional<deltagate::v1::ModelInfo> model_info() const {
        auto ctx = context(std::chrono::seconds(5));
        deltagate::v1::ListModelsResponse r;
        if (!stub->ListModels(ctx.get(), {}, &r).ok() || r.models_size() == 0) return std::nullopt;
        return r.models(0);
    }
    ~Cluster() {
        for (pid_t p : worker_pids)
            if (p > 0) ::kill(p, SIGKILL);
        if (front_pid > 0) ::kill(front_pid, SIGTERM);
        for (pid_t p : worker_pids)
            if (p > 0) ::waitpid(p, nullptr, 0);
        if (front_pid > 0) ::waitpid(front_pid, nullptr, 0);
    }
    // Waits (bounded) until the front reports `n` healthy workers.
    bool wait_ready(int n, int seconds = 120) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
        while (std::chrono::steady_clock::now() < until) {
            auto ctx = context(std::chrono::seconds(2));
            deltagate::v1::ListModelsResponse r;
            if (stub->ListModels(ctx.get(), {}, &r).ok() && r.models_size() > 0 && r.models(0).workers_healthy() >= n)
                return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        return false;
    }
    void kill_worker(int i) {
        ::kill(worker_pids[size_t(i)], SIGKILL);
        ::waitpid(worker_pids[size_t(i)], nullptr, 0);
        worker_pids[size_t(i)] = -1;
    }

    int port = 0, metrics_port = 0, health_port = 0;  // health_port: with --health-listen
    std::string target;  // 127.0.0.1:port
    pid_t front_pid = -1;
    std::vector<pid_t> worker_pids;
    std::vector<std::string> worker_addrs;
    std::vector<int> worker_metrics_ports;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<deltagate::v1::Inference::Stub> stub;

private:
    ClusterOptions opt_;
    std::string worker_list_;  // the front's --workers
};

// A token-id prompt generating exactly max_tokens (EOS ignored): the tiny models have no tokenizer.
inline deltagate::v1::GenerateRequest ids_request(std::vector<int32_t> ids, int max_tokens) {
    deltagate::v1::GenerateRequest r;
    for (int32_t i : ids) r.mutable_prompt()->mutable_token_ids()->add_ids(i);
    r.mutable_stop()->set_max_tokens(max_tokens);
    r.mutable_stop()->set_ignore_eos(true);
    return r;
}

// Abort of `id` sent to `stub` (another front replica) until it finds the stream: the replica needs its
// workers healthy before it can ask them. The last status; *found = the response's count.
inline grpc::Status abort_until_found(deltagate::v1::Inference::Stub& stub, const std::string& id, int tries,
                                      int* found) {
    deltagate::v1::AbortRequest ar;
    ar.add_request_ids(id);
    deltagate::v1::AbortResponse resp;
    grpc::Status st;
    for (int i = 0; i < tries; ++i) {
        grpc::ClientContext actx;
        actx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        st = stub.Abort(&actx, ar, &resp);
        if (!st.ok() || resp.found() > 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    *found = resp.found();
    return st;
}

// Everything one Generate/BatchGenerate stream returned.
struct StreamResult {
    grpc::Status status;
    std::vector<deltagate::v1::Delta> deltas;
    std::vector<deltagate::v1::Finished> finished;
    std::optional<deltagate::v1::Final> final_msg;
    std::string order;  // one letter per message, as received: d = delta, f = finished, F = final
    std::vector<int32_t> ids(int index) const {
        std::vector<int32_t> out;
        for (const auto& d : deltas)
            if (d.index() == index) out.insert(out.end(), d.token_ids().begin(), d.token_ids().end());
        return out;
    }
    // Concatenated Delta.text (or reasoning_text) of one continuation.
    std::string text(int index, bool reasoning = false) const {
        std::string out;
        for (const auto& d : deltas)
            if (d.index() == index) out += reasoning ? d.reasoning_text() : d.text();
        return out;
    }
};

template <class Reader>
StreamResult drain(Reader& reader) {
    StreamResult r;
    deltagate::v1::GenerateResponse m;
    while (reader->Read(&m)) {
        if (m.has_delta()) r.deltas.push_back(m.delta()), r.order += 'd';
        if (m.has_finished()) r.finished.push_back(m.finished()), r.order += 'f';
        if (m.has_final()) r.final_msg = m.final(), r.order += 'F';
    }
    r.status = reader->Finish();
    return r;
}

}  // namespace dg::front::testing
