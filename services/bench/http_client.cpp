#include "services/bench/http_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace dg::bench {

absl::StatusOr<Url> parse_http_url(std::string_view url_in) {
    absl::string_view url(url_in.data(), url_in.size());
    if (absl::StartsWith(url, "https://"))
        return absl::InvalidArgumentError(absl::StrCat(url, ": https is not supported by this client; use http:// "
                                                            "(or a TLS-terminating proxy on loopback)"));
    if (!absl::ConsumePrefix(&url, "http://"))
        return absl::InvalidArgumentError(absl::StrCat(url, ": expected http://HOST:PORT[/PATH]"));
    Url u;
    const size_t slash = url.find('/');
    absl::string_view hostport = url.substr(0, slash);
    u.path = slash == absl::string_view::npos ? "" : std::string(url.substr(slash));
    while (!u.path.empty() && u.path.back() == '/') u.path.pop_back();
    // [v6]:port, host:port, or host alone (port 80).
    size_t colon = absl::string_view::npos;
    if (absl::StartsWith(hostport, "[")) {
        const size_t close = hostport.find(']');
        if (close == absl::string_view::npos) return absl::InvalidArgumentError(absl::StrCat(url, ": unclosed '['"));
        if (close + 1 < hostport.size() && hostport[close + 1] == ':') colon = close + 1;
    } else {
        colon = hostport.rfind(':');
    }
    if (colon != absl::string_view::npos) {
        if (!absl::SimpleAtoi(hostport.substr(colon + 1), &u.port) || u.port <= 0 || u.port > 65535)
            return absl::InvalidArgumentError(absl::StrCat(url, ": bad port"));
        hostport = hostport.substr(0, colon);
    }
    if (absl::StartsWith(hostport, "[") && absl::EndsWith(hostport, "]")) hostport = hostport.substr(1, hostport.size() - 2);
    if (hostport.empty()) return absl::InvalidArgumentError(absl::StrCat(url, ": no host"));
    u.host = std::string(hostport);
    return u;
}

bool SseDecoder::push(std::string_view bytes, const std::function<bool(std::string_view)>& on_event) {
    buf_.append(bytes);
    size_t start = 0;
    while (true) {
        const size_t nl = buf_.find('\n', start);
        if (nl == std::string::npos) break;
        std::string_view line(buf_.data() + start, nl - start);
        start = nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) {  // the event ends
            if (has_data_) {
                const std::string data = std::move(data_);
                data_.clear();
                has_data_ = false;
                if (!on_event(data)) {
                    buf_.erase(0, start);
                    return false;
                }
            }
            continue;
        }
        if (line.front() == ':') continue;  // a comment (keep-alive)
        std::string_view value;
        std::string_view field = line;
        if (const size_t c = line.find(':'); c != std::string_view::npos) {
            field = line.substr(0, c);
            value = line.substr(c + 1);
            if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        }
        if (field == "data") {
            if (has_data_) data_ += '\n';
            data_.append(value);
            has_data_ = true;
        }
    }
    buf_.erase(0, start);
    return true;
}

absl::Status ChunkedDecoder::push(std::string_view bytes, std::string* out) {
    size_t i = 0;
    while (i < bytes.size() && state_ != State::kDone) {
        if (state_ == State::kData) {
            const size_t take = std::min(remaining_, bytes.size() - i);
            out->append(bytes.substr(i, take));
            i += take;
            remaining_ -= take;
            if (remaining_ == 0) state_ = State::kDataEnd;
            continue;
        }
        const char c = bytes[i++];
        if (c != '\n') {
            if (line_.size() > 4096) return absl::DataLossError("chunked encoding: line too long");
            line_ += c;
            continue;
        }
        std::string line = std::move(line_);
        line_.clear();
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (state_ == State::kSize) {
            std::string hex = line.substr(0, line.find(';'));
            absl::StripAsciiWhitespace(&hex);
            uint64_t n = 0;
            if (hex.empty() || !absl::SimpleHexAtoi(hex, &n))
                return absl::DataLossError(absl::StrCat("chunked encoding: bad chunk size '", hex, "'"));
            remaining_ = size_t(n);
            state_ = n == 0 ? State::kTrailer : State::kData;
        } else if (state_ == State::kDataEnd) {
            if (!line.empty()) return absl::DataLossError("chunked encoding: chunk not followed by CRLF");
            state_ = State::kSize;
        } else if (state_ == State::kTrailer) {
            if (line.empty()) state_ = State::kDone;
        }
    }
    return absl::OkStatus();
}

namespace {

std::string where(const Url& u) { return absl::StrCat(u.host, ":", u.port); }

absl::StatusOr<int> connect_to(const Url& u, double timeout_s) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(u.port);
    if (int rc = getaddrinfo(u.host.c_str(), port.c_str(), &hints, &res); rc != 0)
        return absl::UnavailableError(absl::StrCat("cannot resolve ", u.host, ": ", gai_strerror(rc)));
    std::string last = "no address";
    for (addrinfo* a = res; a; a = a->ai_next) {
        const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        const int flags = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            rc = ::poll(&p, 1, int(std::min(timeout_s, 10.0) * 1000));
            if (rc == 1) {
                int err = 0;
                socklen_t len = sizeof(err);
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
                rc = err == 0 ? 0 : -1;
                errno = err;
            } else {
                errno = rc == 0 ? ETIMEDOUT : errno;
                rc = -1;
            }
        }
        if (rc == 0) {
            fcntl(fd, F_SETFL, flags);
            timeval tv{};
            tv.tv_sec = time_t(timeout_s);
            tv.tv_usec = suseconds_t((timeout_s - double(tv.tv_sec)) * 1e6);
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
            freeaddrinfo(res);
            return fd;
        }
        last = std::strerror(errno);
        ::close(fd);
    }
    freeaddrinfo(res);
    return absl::UnavailableError(absl::StrCat("cannot connect to ", where(u), ": ", last));
}

struct Fd {
    int fd;
    ~Fd() { ::close(fd); }
};

}  // namespace

absl::StatusOr<HttpResponse> http_request(const Url& base, const std::string& method, const std::string& path,
                                          const std::string& body,
                                          const std::vector<std::pair<std::string, std::string>>& headers,
                                          double timeout_s, const std::function<bool(std::string_view)>& on_event) {
    auto fd_or = connect_to(base, timeout_s);
    if (!fd_or.ok()) return fd_or.status();
    Fd fd{*fd_or};
    std::string req = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: ", base.host, ":", base.port,
                                   "\r\nConnection: close\r\nUser-Agent: deltagate-bench\r\n");
    for (const auto& [k, v] : headers) absl::StrAppend(&req, k, ": ", v, "\r\n");
    if (!body.empty() || method == "POST")
        absl::StrAppend(&req, "Content-Type: application/json\r\nContent-Length: ", body.size(), "\r\n");
    absl::StrAppend(&req, "\r\n", body);
    for (size_t off = 0; off < req.size();) {
        const ssize_t n = ::send(fd.fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return absl::UnavailableError(absl::StrCat("sending to ", where(base), ": ", std::strerror(errno)));
        off += size_t(n);
    }

    HttpResponse resp;
    std::string raw;
    size_t header_end = std::string::npos;
    bool chunked = false, sse = false, eof = false;
    int64_t content_length = -1;
    ChunkedDecoder chunks;
    SseDecoder events;
    std::string payload;
    bool stop = false;
    size_t body_seen = 0;
    char buf[16384];
    auto deliver = [&](std::string_view bytes) -> absl::Status {
        if (!chunked && content_length >= 0)  // bytes past the declared length are not this response's
            bytes = bytes.substr(0, size_t(std::max<int64_t>(0, content_length - int64_t(body_seen))));
        body_seen += bytes.size();
        if (chunked) {
            std::string out;
            if (auto s = chunks.push(bytes, &out); !s.ok()) return s;
            if (sse) {
                if (!events.push(out, on_event)) stop = true;
            } else {
                resp.body.append(out);
            }
            return absl::OkStatus();
        }
        if (sse) {
            if (!events.push(bytes, on_event)) stop = true;
        } else {
            resp.body.append(bytes);
        }
        return absl::OkStatus();
    };
    auto complete = [&] {
        if (chunked) return chunks.done();
        if (content_length >= 0) return int64_t(body_seen) >= content_length;
        return eof;
    };
    while (!stop) {
        const ssize_t n = ::recv(fd.fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return absl::DeadlineExceededError(absl::StrCat(
                "reading from ", where(base), ": ",
                errno == EAGAIN || errno == EWOULDBLOCK ? "no data within the deadline" : std::strerror(errno)));
        }
        if (n == 0) eof = true;
        if (header_end == std::string::npos) {
            raw.append(buf, size_t(n));
            header_end = raw.find("\r\n\r\n");
            if (header_end == std::string::npos) {
                if (eof) return absl::UnavailableError(absl::StrCat(where(base), " closed the connection before a response"));
                if (raw.size() > 65536) return absl::DataLossError(absl::StrCat(where(base), ": response headers too long"));
                continue;
            }
            const std::string head = raw.substr(0, header_end);
            const std::string rest = raw.substr(header_end + 4);
            const size_t sp = head.find(' ');
            if (!absl::StartsWith(head, "HTTP/1.") || sp == std::string::npos ||
                !absl::SimpleAtoi(head.substr(sp + 1, 3), &resp.status))
                return absl::DataLossError(absl::StrCat(where(base), " did not answer HTTP/1.x"));
            size_t pos = head.find("\r\n");
            while (pos != std::string::npos && pos < head.size()) {
                const size_t next = head.find("\r\n", pos + 2);
                std::string line = head.substr(pos + 2, (next == std::string::npos ? head.size() : next) - pos - 2);
                pos = next;
                const size_t c = line.find(':');
                if (c == std::string::npos) continue;
                const std::string k = absl::AsciiStrToLower(line.substr(0, c));
                std::string v = std::string(absl::StripAsciiWhitespace(line.substr(c + 1)));
                if (k == "transfer-encoding" && absl::AsciiStrToLower(v).find("chunked") != std::string::npos) chunked = true;
                if (k == "content-length") (void)absl::SimpleAtoi(v, &content_length);
                if (k == "content-type" && absl::AsciiStrToLower(v).find("text/event-stream") != std::string::npos)
                    sse = on_event != nullptr && resp.status / 100 == 2;
            }
            if (!rest.empty())
                if (auto s = deliver(rest); !s.ok()) return s;
        } else if (n > 0) {
            if (auto s = deliver(std::string_view(buf, size_t(n))); !s.ok()) return s;
        }
        if (complete() || stop) break;
        if (eof) {
            if (chunked || content_length >= 0)
                return absl::UnavailableError(absl::StrCat(where(base), " closed the connection mid-response"));
            break;
        }
    }
    if (sse && !stop) events.push("\n\n", on_event);  // an event the server ended without its blank line
    return resp;
}

}  // namespace dg::bench
