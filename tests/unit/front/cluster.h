// Test harness: a real `deltagate front` and N `deltagate worker` processes on 127.0.0.1, a local OTLP
// receiver, and small HTTP helpers. Every process dies with the test (PR_SET_PDEATHSIG) and is stopped in
// the destructor; every wait is bounded.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "deltagate/v1/inference.grpc.pb.h"

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

// GET http://127.0.0.1:port/path -> body ("" on failure).
inline std::string http_get(int port, const std::string& path) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        ::close(fd);
        return "";
    }
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    (void)!::write(fd, req.data(), req.size());
    std::string resp;
    char buf[8192];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof(buf))) > 0) resp.append(buf, size_t(n));
    ::close(fd);
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
    int workers = 2;
    std::string model;                      // empty: the built-in tiny model
    std::vector<std::string> front_args;
    std::vector<std::string> env;           // for every process (OTEL_*)
};

class Cluster {
public:
    explicit Cluster(const ClusterOptions& o) {
        std::string list;
        for (int i = 0; i < o.workers; ++i) {
            const std::string addr = "127.0.0.1:" + std::to_string(free_port());
            std::vector<std::string> argv = {deltagate_binary(), "worker", "--listen", addr, "--backend", "cpu"};
            if (!o.model.empty()) argv.insert(argv.end(), {"--model", o.model});
            worker_pids.push_back(spawn(argv, o.env));
            worker_addrs.push_back(addr);
            list += (i ? "," : "") + addr;
        }
        std::vector<std::string> argv = {deltagate_binary(), "front", "--listen", "127.0.0.1:0", "--workers", list,
                                         "--metrics-listen", "127.0.0.1:0"};
        argv.insert(argv.end(), o.front_args.begin(), o.front_args.end());
        int out = -1;
        front_pid = spawn(argv, o.env, &out);
        // "front listening on port N, metrics on http://127.0.0.1:M/metrics"
        const std::string line = read_line(out);
        ::close(out);
        std::sscanf(line.c_str(), "front listening on port %d, metrics on http://127.0.0.1:%d", &port, &metrics_port);
        channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
        stub = deltagate::v1::Inference::NewStub(channel);
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
        for (int i = 0; i < seconds * 10; ++i) {
            grpc::ClientContext ctx;
            ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
            deltagate::v1::ListModelsResponse r;
            if (stub->ListModels(&ctx, {}, &r).ok() && r.models_size() > 0 && r.models(0).workers_healthy() >= n)
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

    int port = 0, metrics_port = 0;
    pid_t front_pid = -1;
    std::vector<pid_t> worker_pids;
    std::vector<std::string> worker_addrs;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<deltagate::v1::Inference::Stub> stub;
};

// Everything one Generate/BatchGenerate stream returned.
struct StreamResult {
    grpc::Status status;
    std::vector<deltagate::v1::Delta> deltas;
    std::vector<deltagate::v1::Finished> finished;
    std::optional<deltagate::v1::Final> final_msg;
    std::vector<int32_t> ids(int index) const {
        std::vector<int32_t> out;
        for (const auto& d : deltas)
            if (d.index() == index) out.insert(out.end(), d.token_ids().begin(), d.token_ids().end());
        return out;
    }
};

template <class Reader>
StreamResult drain(Reader& reader) {
    StreamResult r;
    deltagate::v1::GenerateResponse m;
    while (reader->Read(&m)) {
        if (m.has_delta()) r.deltas.push_back(m.delta());
        if (m.has_finished()) r.finished.push_back(m.finished());
        if (m.has_final()) r.final_msg = m.final();
    }
    r.status = reader->Finish();
    return r;
}

}  // namespace dg::front::testing
