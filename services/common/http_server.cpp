#include "services/common/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "services/common/metrics.h"

namespace dg {
namespace {

constexpr size_t kMaxRequestBytes = 16 * 1024;
constexpr int kIoTimeoutMs = 5000;  // a stuck client gives up its turn after this

const char* reason(int status) {
    switch (status) {
        case 200: return "OK";
        case 400: return "Bad Request";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 431: return "Request Header Fields Too Large";
        default: return status < 500 ? "Client Error" : "Server Error";
    }
}

bool write_all(int fd, const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
        pollfd p{fd, POLLOUT, 0};
        if (poll(&p, 1, kIoTimeoutMs) <= 0) return false;
        const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return false;
        off += size_t(n);
    }
    return true;
}

// The listening socket: the fd, the host as printed in addresses and the port bound.
absl::StatusOr<int> listen_socket(const std::string& address, std::string* host_out, int* port_out) {
    const size_t colon = address.rfind(':');
    int port = 0;
    if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535)
        return absl::InvalidArgumentError(absl::StrCat("http: listen address must be host:port, got '", address, "'"));
    std::string host = address.substr(0, colon);
    // "[::]:9400" / "[::1]:0": an IPv6 literal in brackets, as gRPC's listen addresses write it.
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty()) host = "0.0.0.0";
    *host_out = host.find(':') != std::string::npos ? "[" + host + "]" : host;

    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* res = nullptr;
    if (int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0 || !res)
        return absl::InvalidArgumentError(absl::StrCat("http: cannot resolve '", host, "': ", gai_strerror(rc)));
    sockaddr_storage sa{};
    const socklen_t sa_len = res->ai_addrlen;
    const int family = res->ai_family;
    std::memcpy(&sa, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (family == AF_INET6)
        reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port = htons(uint16_t(port));
    else
        reinterpret_cast<sockaddr_in*>(&sa)->sin_port = htons(uint16_t(port));

    const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return absl::InternalError(absl::StrCat("http: socket: ", std::strerror(errno)));
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // "[::]" serves IPv4 too (dual stack), like gRPC's "[::]:port".
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sa_len) != 0 || ::listen(fd, 64) != 0) {
        const int err = errno;
        ::close(fd);
        return absl::UnavailableError(absl::StrCat("http: cannot listen on ", address, ": ", std::strerror(err)));
    }
    socklen_t len = sizeof sa;
    getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    *port_out = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port
                                         : reinterpret_cast<sockaddr_in*>(&sa)->sin_port);
    return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpListener>> HttpListener::open(const std::string& address) {
    std::unique_ptr<HttpListener> l(new HttpListener());
    auto fd = listen_socket(address, &l->host_, &l->port_);
    if (!fd.ok()) return fd.status();
    l->fd_ = *fd;
    if (::pipe2(l->wake_, O_CLOEXEC) != 0) return absl::InternalError("http: pipe failed");
    return l;
}

HttpListener::~HttpListener() {
    if (fd_ >= 0) ::close(fd_);
    for (int fd : wake_)
        if (fd >= 0) ::close(fd);
}

int HttpListener::accept_next() {
    for (;;) {
        pollfd p[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (p[1].revents) return -1;  // woken: the byte stays in the pipe, so later calls return too
        if (!(p[0].revents & POLLIN)) continue;
        const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) return fd;
    }
}

void HttpListener::wake() {
    const char c = 0;
    [[maybe_unused]] ssize_t n = ::write(wake_[1], &c, 1);
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::start(const std::string& address, Handler handler) {
    std::unique_ptr<HttpServer> s(new HttpServer());
    s->handler_ = std::move(handler);
    auto l = HttpListener::open(address);
    if (!l.ok()) return l.status();
    s->listener_ = std::move(*l);
    s->thread_ = std::thread([p = s.get()] { p->run(); });
    return s;
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::stop() {
    if (stopping_.exchange(true)) return;
    if (listener_) listener_->wake();
    if (thread_.joinable()) thread_.join();
}

void HttpServer::run() {
    for (int fd; (fd = listener_->accept_next()) >= 0;) {
        serve(fd);
        ::close(fd);
    }
}

void HttpServer::serve(int fd) {
    std::string buf;
    size_t header_end = std::string::npos;
    while (header_end == std::string::npos) {
        if (buf.size() > kMaxRequestBytes) {
            write_all(fd, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, kIoTimeoutMs) <= 0) return;
        char chunk[4096];
        const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        buf.append(chunk, size_t(n));
        header_end = buf.find("\r\n\r\n");
    }
    // Request line: METHOD SP target SP HTTP/1.x
    const std::string line = buf.substr(0, buf.find("\r\n"));
    const size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
    HttpResponse resp;
    HttpRequest req;
    if (sp1 == std::string::npos || sp2 == sp1 || line.compare(sp2 + 1, 5, "HTTP/") != 0) {
        resp = {400, "text/plain; charset=utf-8", "bad request line\n"};
    } else {
        req.method = line.substr(0, sp1);
        std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
        if (const size_t q = target.find('?'); q != std::string::npos) {
            req.query = target.substr(q + 1);
            target.resize(q);
        }
        req.path = target;
        if (req.method != "GET" && req.method != "HEAD") resp = {405, "text/plain; charset=utf-8", "GET or HEAD only\n"};
        else resp = handler_(req);
    }
    std::string out = absl::StrCat("HTTP/1.1 ", resp.status, " ", reason(resp.status), "\r\nContent-Type: ",
                                   resp.content_type, "\r\nContent-Length: ", resp.body.size(),
                                   resp.status == 405 ? "\r\nAllow: GET, HEAD" : "", "\r\nConnection: close\r\n\r\n");
    if (req.method != "HEAD") out += resp.body;
    write_all(fd, out);
}

absl::StatusOr<std::unique_ptr<HttpServer>> serve_metrics(const std::string& address, metrics::Registry& registry) {
    return HttpServer::start(address, [&registry](const HttpRequest& r) {
        if (r.path == "/metrics") return HttpResponse{200, metrics::kContentType, registry.render()};
        return HttpResponse{404, "text/plain; charset=utf-8", "not found: try /metrics\n"};
    });
}

}  // namespace dg
