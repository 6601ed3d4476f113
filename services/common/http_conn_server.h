// An HTTP/1.1 server for public API traffic (the front's OpenAI/Anthropic-compatible routes): any method,
// request bodies (Content-Length; `Expect: 100-continue`), keep-alive, one thread per connection (bounded),
// and responses either whole (Content-Length) or streamed (chunked; SSE). A handler that streams can
// watch for the client hanging up (HttpExchange::wait) and stop work at once.
//
// Unlike services/common/http_server.h (GET-only, one request at a time, for /metrics and probes), a slow
// or long request here never blocks another: each connection has its own thread.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "services/common/http_server.h"

namespace dg {

struct HttpMessage {
    std::string method;                          // GET, POST, OPTIONS, ...
    std::string path;                            // without the query string
    std::string query;                           // after '?', raw
    std::map<std::string, std::string> headers;  // names lowercased
    std::string body;
    std::string header(const std::string& lower_name) const {
        auto it = headers.find(lower_name);
        return it == headers.end() ? std::string() : it->second;
    }
};

// One request's response, written by the handler on the connection's thread.
class HttpExchange {
public:
    HttpExchange(int fd, bool head) : fd_(fd), head_(head) {}

    // Headers every response of this exchange carries (CORS), set before responding.
    void add_header(const std::string& name, const std::string& value) { extra_ += name + ": " + value + "\r\n"; }
    // A whole response. False when the client is gone.
    bool respond(int status, const std::string& content_type, const std::string& body);
    // Starts a chunked response (SSE: "text/event-stream"); then write() chunks and end().
    bool start_stream(int status, const std::string& content_type);
    bool write(const std::string& data);
    bool end();
    bool responded() const { return responded_; }
    bool client_gone() const { return gone_; }
    // Blocks until `wake_fd` is readable (true) or the client hangs up (false; client_gone() is then true).
    // `wake_fd` is an eventfd/pipe another thread signals when there is something to write.
    bool wait(int wake_fd);

private:
    bool send_all(const std::string& data);

    int fd_;
    bool head_;
    std::string extra_;
    bool responded_ = false, streaming_ = false, gone_ = false;
};

class HttpConnServer {
public:
    using Handler = std::function<void(const HttpMessage&, HttpExchange&)>;
    struct Options {
        size_t max_body_bytes = 4 << 20;
        int max_connections = 256;
    };

    // `address`: "host:port" as in HttpServer (port 0 = ephemeral).
    static absl::StatusOr<std::unique_ptr<HttpConnServer>> start(const std::string& address, Options opt,
                                                                 Handler handler);
    ~HttpConnServer();  // stops: closes every connection and joins its thread

    void stop();
    // Closes the listening socket: no new connection (requests on open ones still reach the handler).
    void stop_accepting();
    // Shuts every open connection down (reads and writes fail at once; handlers see the client gone)
    // without waiting for their threads.
    void shutdown_connections();
    int port() const { return port_; }
    std::string address() const { return address_; }

private:
    struct Conn {
        int fd;
        std::thread thread;
        std::atomic<bool> done{false};
    };
    HttpConnServer() = default;
    void accept_loop();
    void serve(Conn* c);
    void reap_locked(bool all);

    Options opt_;
    Handler handler_;
    std::string address_;  // of the listener, kept after stop_accepting() closes it
    int port_ = 0;
    std::unique_ptr<HttpListener> listener_;  // null once stop_accepting() ran
    std::atomic<bool> stopping_{false};
    std::mutex accept_mu_;  // stop_accepting() once, from any thread
    std::thread thread_;
    std::mutex mu_;
    std::vector<std::unique_ptr<Conn>> conns_;
};

// The reason phrase of an HTTP status ("Not Found").
const char* http_reason(int status);

}  // namespace dg
