// A tiny HTTP/1.1 server for operational endpoints (/metrics, later /healthz): GET and HEAD only, one
// request per connection (`Connection: close`), handled one at a time on one background thread. That is
// all a Prometheus scrape or a probe needs, and it keeps a slow scraper from ever touching the serving
// path. Not for public traffic: the public API is gRPC.
//
//     auto http = dg::HttpServer::start("127.0.0.1:9090", [&](const dg::HttpRequest& r) {
//         return r.path == "/metrics" ? dg::HttpResponse{200, dg::metrics::kContentType, reg.render()}
//                                     : dg::HttpResponse{404, "text/plain", "not found\n"};
//     });
//     std::printf("metrics on %s\n", (*http)->address().c_str());
//
// Or simply `serve_metrics(address, registry)`.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace dg::metrics {
class Registry;
}

namespace dg {

struct HttpRequest {
    std::string method;  // GET | HEAD
    std::string path;    // without the query string
    std::string query;   // after '?', raw
};

struct HttpResponse {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

// What both HTTP servers share: a listening TCP socket on `address` (host:port, [v6]:port; port 0 =
// ephemeral) and the pipe that wakes the accept loop blocked on it.
class HttpListener {
public:
    static absl::StatusOr<std::unique_ptr<HttpListener>> open(const std::string& address);
    ~HttpListener();  // closes the socket and the pipe
    HttpListener(const HttpListener&) = delete;
    HttpListener& operator=(const HttpListener&) = delete;

    // Blocks until a connection arrives (its fd, SOCK_CLOEXEC) or wake() was called (-1, and -1 at every
    // call after it).
    int accept_next();
    void wake();  // any thread
    int port() const { return port_; }
    std::string address() const { return host_ + ":" + std::to_string(port_); }

private:
    HttpListener() = default;
    std::string host_;  // as printed in addresses
    int port_ = 0;
    int fd_ = -1;
    int wake_[2] = {-1, -1};
};

class HttpServer {
public:
    using Handler = std::function<HttpResponse(const HttpRequest&)>;

    // `address`: "host:port" (IPv4, [IPv6] or hostname; port 0 = ephemeral), e.g. "127.0.0.1:0",
    // "0.0.0.0:9090", "[::]:9090" (dual stack: IPv4 too).
    static absl::StatusOr<std::unique_ptr<HttpServer>> start(const std::string& address, Handler handler);
    ~HttpServer();  // stops

    void stop();
    int port() const { return listener_->port(); }
    std::string address() const { return listener_->address(); }

private:
    HttpServer() = default;
    void run();
    void serve(int fd);

    Handler handler_;
    std::unique_ptr<HttpListener> listener_;
    std::atomic<bool> stopping_{false};
    std::thread thread_;
};

// /metrics -> registry.render(); anything else 404. The registry must outlive the server.
absl::StatusOr<std::unique_ptr<HttpServer>> serve_metrics(const std::string& address, metrics::Registry& registry);

}  // namespace dg
