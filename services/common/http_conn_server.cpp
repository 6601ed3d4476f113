#include "services/common/http_conn_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/common/http_server.h"

namespace dg {
namespace {

constexpr size_t kMaxHeaderBytes = 64 * 1024;
constexpr int kIdleTimeoutMs = 60000;   // keep-alive: an idle connection is closed after this
constexpr int kReadTimeoutMs = 30000;   // a request's header and body must arrive within this of each read
constexpr int kWriteTimeoutMs = 30000;  // a client that reads nothing for this long is gone

}  // namespace

const char* http_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 500 ? "Client Error" : "Server Error";
    }
}

bool HttpExchange::send_all(const std::string& data) {
    if (gone_) return false;
    size_t off = 0;
    while (off < data.size()) {
        pollfd p{fd_, POLLOUT, 0};
        const int r = poll(&p, 1, kWriteTimeoutMs);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 || (p.revents & (POLLERR | POLLHUP))) return !(gone_ = true);
        const ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return !(gone_ = true);
        off += size_t(n);
    }
    return true;
}

bool HttpExchange::respond(int status, const std::string& content_type, const std::string& body) {
    responded_ = true;
    std::string out = absl::StrCat("HTTP/1.1 ", status, " ", http_reason(status), "\r\n", extra_);
    if (!content_type.empty()) absl::StrAppend(&out, "Content-Type: ", content_type, "\r\n");
    absl::StrAppend(&out, "Content-Length: ", body.size(), "\r\n\r\n");
    if (!head_) out += body;
    return send_all(out);
}

bool HttpExchange::start_stream(int status, const std::string& content_type) {
    responded_ = streaming_ = true;
    return send_all(absl::StrCat("HTTP/1.1 ", status, " ", http_reason(status), "\r\n", extra_,
                                 "Content-Type: ", content_type,
                                 "\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"));
}

bool HttpExchange::write(const std::string& data) {
    if (data.empty()) return !gone_;
    return send_all(absl::StrCat(absl::Hex(data.size()), "\r\n", data, "\r\n"));
}

bool HttpExchange::end() { return send_all("0\r\n\r\n"); }

bool HttpExchange::wait(int wake_fd) {
    while (!gone_) {
        // POLLRDHUP: the peer closed (or half-closed) its side — an aborted fetch, a killed curl. Data a
        // client pipelines meanwhile is not a hang-up, so POLLIN is not watched on the socket.
        pollfd p[2] = {{wake_fd, POLLIN, 0}, {fd_, POLLRDHUP, 0}};
        const int r = poll(p, 2, -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return !(gone_ = true);
        if (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) return !(gone_ = true);
        if (p[0].revents) return true;
    }
    return false;
}

absl::StatusOr<std::unique_ptr<HttpConnServer>> HttpConnServer::start(const std::string& address, Options opt,
                                                                     Handler handler) {
    std::unique_ptr<HttpConnServer> s(new HttpConnServer());
    s->opt_ = opt;
    s->handler_ = std::move(handler);
    auto l = HttpListener::open(address);
    if (!l.ok()) return l.status();
    s->listener_ = std::move(*l);
    s->address_ = s->listener_->address();
    s->port_ = s->listener_->port();
    s->thread_ = std::thread([p = s.get()] { p->accept_loop(); });
    return s;
}

HttpConnServer::~HttpConnServer() { stop(); }

void HttpConnServer::stop_accepting() {
    std::lock_guard<std::mutex> l(accept_mu_);
    if (!listener_) return;
    listener_->wake();
    if (thread_.joinable()) thread_.join();
    listener_.reset();  // closes the listening socket: new connections are refused from now on
}

void HttpConnServer::shutdown_connections() {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& c : conns_) ::shutdown(c->fd, SHUT_RDWR);
}

void HttpConnServer::stop() {
    if (stopping_.exchange(true)) return;
    stop_accepting();
    // Wake every connection thread (reads and waits fail, handlers see the client gone) and join them.
    shutdown_connections();
    std::vector<std::unique_ptr<Conn>> conns;
    {
        std::lock_guard<std::mutex> l(mu_);
        conns.swap(conns_);
    }
    // Joined outside mu_: a connection thread never needs it, but nothing here should wait under a lock.
    for (auto& c : conns) {
        c->thread.join();
        ::close(c->fd);
    }
}

void HttpConnServer::reap_locked(bool all) {
    for (auto it = conns_.begin(); it != conns_.end();) {
        if (all || (*it)->done.load()) {
            (*it)->thread.join();
            ::close((*it)->fd);
            it = conns_.erase(it);
        } else {
            ++it;
        }
    }
}

void HttpConnServer::accept_loop() {
    for (int fd; (fd = listener_->accept_next()) >= 0;) {
        std::lock_guard<std::mutex> l(mu_);
        reap_locked(false);
        if (int(conns_.size()) >= opt_.max_connections) {
            HttpExchange x(fd, false);
            x.add_header("Connection", "close");
            x.respond(503, "application/json",
                      absl::StrCat(R"({"error":{"message":"this server already has )", opt_.max_connections,
                                   R"( open connections: retry later","type":"server_error","param":null,"code":"overloaded"}})"));
            ::close(fd);
            continue;
        }
        auto c = std::make_unique<Conn>();
        c->fd = fd;
        Conn* raw = c.get();
        c->thread = std::thread([this, raw] {
            serve(raw);
            // The peer sees the end now (a Connection: close client reads to EOF); the fd itself is closed
            // when the thread is reaped, so its number cannot be reused while stop() may still shut it down.
            ::shutdown(raw->fd, SHUT_RDWR);
            raw->done = true;
        });
        conns_.push_back(std::move(c));
    }
}

void HttpConnServer::serve(Conn* c) {
    const int fd = c->fd;
    std::string buf;
    // Reads until `want` bytes are buffered; false on timeout, EOF or error.
    auto fill = [&](size_t want, int timeout_ms) {
        while (buf.size() < want) {
            pollfd p{fd, POLLIN, 0};
            const int r = poll(&p, 1, timeout_ms);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) return false;
            char chunk[16384];
            const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            buf.append(chunk, size_t(n));
        }
        return true;
    };
    auto fail = [&](int status, const std::string& msg) {
        HttpExchange x(fd, false);
        x.add_header("Connection", "close");
        x.respond(status, "application/json",
                  absl::StrCat(R"({"error":{"message":")", msg, R"(","type":"invalid_request_error","param":null,"code":null}})"));
    };
    while (!stopping_.load()) {
        size_t header_end;
        bool first = true;
        while ((header_end = buf.find("\r\n\r\n")) == std::string::npos) {
            if (buf.size() > kMaxHeaderBytes) return fail(431, "the request's headers are over 64 KiB");
            if (!fill(buf.size() + 1, first && buf.empty() ? kIdleTimeoutMs : kReadTimeoutMs)) return;
            first = false;
        }
        HttpMessage m;
        size_t line_end = buf.find("\r\n");
        const std::string line = buf.substr(0, line_end);
        const size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
        if (sp1 == std::string::npos || sp2 == sp1 || line.compare(sp2 + 1, 5, "HTTP/") != 0)
            return fail(400, "malformed request line");
        m.method = line.substr(0, sp1);
        std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
        const bool http10 = line.compare(sp2 + 1, 8, "HTTP/1.0") == 0;
        if (const size_t q = target.find('?'); q != std::string::npos) {
            m.query = target.substr(q + 1);
            target.resize(q);
        }
        m.path = target;
        size_t pos = line_end + 2;
        while (pos < header_end) {
            const size_t e = buf.find("\r\n", pos);
            const std::string h = buf.substr(pos, e - pos);
            pos = e + 2;
            const size_t colon = h.find(':');
            if (colon == std::string::npos) return fail(400, "malformed header line");
            std::string name = absl::AsciiStrToLower(h.substr(0, colon));
            std::string value(absl::StripAsciiWhitespace(h.substr(colon + 1)));
            auto [it, fresh] = m.headers.emplace(name, value);
            if (!fresh) it->second += ", " + value;
        }
        buf.erase(0, header_end + 4);
        if (!m.header("transfer-encoding").empty())
            return fail(411, "chunked request bodies are not supported: send Content-Length");
        size_t length = 0;
        if (const std::string cl = m.header("content-length"); !cl.empty() && !absl::SimpleAtoi(cl, &length))
            return fail(400, "Content-Length is not a number");
        if (length > opt_.max_body_bytes)
            return fail(413, absl::StrCat("the request body is ", length, " bytes; this server takes at most ",
                                          opt_.max_body_bytes, " (--max-message-bytes)"));
        if (length > buf.size() && absl::AsciiStrToLower(m.header("expect")) == "100-continue") {
            const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
            if (::send(fd, cont.data(), cont.size(), MSG_NOSIGNAL) != ssize_t(cont.size())) return;
        }
        if (!fill(length, kReadTimeoutMs)) return;
        m.body = buf.substr(0, length);
        buf.erase(0, length);
        const bool close_after = http10 || absl::AsciiStrToLower(m.header("connection")) == "close";
        HttpExchange x(fd, m.method == "HEAD");
        if (close_after) x.add_header("Connection", "close");
        handler_(m, x);
        if (!x.responded()) x.respond(500, "application/json",
                                      R"({"error":{"message":"no response","type":"server_error","param":null,"code":null}})");
        if (close_after || x.client_gone()) return;
    }
}

}  // namespace dg
