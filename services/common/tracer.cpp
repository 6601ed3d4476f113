#include "services/common/tracer.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace dg::trace {
namespace {

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
}

// "k1=v1,k2=v2" (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES); values may be %-encoded.
std::vector<std::pair<std::string, std::string>> parse_kv_list(const std::string& s) {
    std::vector<std::pair<std::string, std::string>> out;
    for (absl::string_view item : absl::StrSplit(s, ',', absl::SkipWhitespace())) {
        const size_t eq = item.find('=');
        if (eq == absl::string_view::npos) continue;
        std::string k(absl::StripAsciiWhitespace(item.substr(0, eq)));
        std::string raw(absl::StripAsciiWhitespace(item.substr(eq + 1))), v;
        for (size_t i = 0; i < raw.size(); ++i) {
            int hex = 0;
            if (raw[i] == '%' && i + 2 < raw.size() &&
                std::sscanf(raw.substr(i + 1, 2).c_str(), "%2x", &hex) == 1) {
                v += char(hex);
                i += 2;
            } else {
                v += raw[i];
            }
        }
        if (!k.empty()) out.emplace_back(std::move(k), std::move(v));
    }
    return out;
}

int env_int(const char* name, int def) {
    int v = 0;
    const std::string s = env(name);
    return !s.empty() && absl::SimpleAtoi(s, &v) && v > 0 ? v : def;
}

bool wait_fd(int fd, short events, std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, int(left.count())) == 1;
}

}  // namespace

absl::StatusOr<TracerConfig> tracer_config_from_env(const std::string& default_service) {
    TracerConfig c;
    c.resource.service_name = env("OTEL_SERVICE_NAME");
    for (auto& [k, v] : parse_kv_list(env("OTEL_RESOURCE_ATTRIBUTES"))) {
        if (k == "service.name" && c.resource.service_name.empty()) c.resource.service_name = v;
        else c.resource.attributes.emplace_back(k, v);
    }
    if (c.resource.service_name.empty()) c.resource.service_name = default_service;

    const std::string sampler = absl::AsciiStrToLower(env("OTEL_TRACES_SAMPLER"));
    const std::string arg = env("OTEL_TRACES_SAMPLER_ARG");
    if (!arg.empty() && (!absl::SimpleAtod(arg, &c.ratio) || c.ratio < 0 || c.ratio > 1))
        return absl::InvalidArgumentError(absl::StrCat("OTEL_TRACES_SAMPLER_ARG='", arg, "' is not a ratio in [0, 1]"));
    if (sampler.empty() || sampler == "parentbased_always_on") c.sampler = SamplerKind::kParentOn;
    else if (sampler == "always_on") c.sampler = SamplerKind::kAlwaysOn;
    else if (sampler == "always_off") c.sampler = SamplerKind::kAlwaysOff;
    else if (sampler == "traceidratio") c.sampler = SamplerKind::kRatio;
    else if (sampler == "parentbased_always_off") c.sampler = SamplerKind::kParentOff;
    else if (sampler == "parentbased_traceidratio") c.sampler = SamplerKind::kParentRatio;
    else
        return absl::InvalidArgumentError(absl::StrCat(
            "OTEL_TRACES_SAMPLER='", sampler,
            "' is not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, "
            "parentbased_traceidratio"));

    c.schedule_delay_ms = env_int("OTEL_BSP_SCHEDULE_DELAY", c.schedule_delay_ms);
    c.max_queue = size_t(env_int("OTEL_BSP_MAX_QUEUE_SIZE", int(c.max_queue)));
    c.max_batch = size_t(env_int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", int(c.max_batch)));
    c.timeout_ms = env_int("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", env_int("OTEL_EXPORTER_OTLP_TIMEOUT", c.timeout_ms));
    for (const char* h : {"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"})
        for (auto& [k, v] : parse_kv_list(env(h))) c.headers[k] = v;

    const std::string disabled = absl::AsciiStrToLower(env("OTEL_SDK_DISABLED"));
    const std::string exporter = absl::AsciiStrToLower(env("OTEL_TRACES_EXPORTER"));
    if (disabled == "true" || exporter == "none") return c;
    if (!exporter.empty() && exporter != "otlp")
        return absl::InvalidArgumentError(absl::StrCat("OTEL_TRACES_EXPORTER='", exporter, "': only otlp and none"));

    // The traces-specific variable is used as is; the generic one gets /v1/traces appended (OTel spec).
    std::string url = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    if (url.empty()) {
        url = env("OTEL_EXPORTER_OTLP_ENDPOINT");
        if (url.empty()) return c;
        while (!url.empty() && url.back() == '/') url.pop_back();
        url += "/v1/traces";
    }
    std::string proto = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL");
    if (proto.empty()) proto = env("OTEL_EXPORTER_OTLP_PROTOCOL");
    if (!proto.empty() && proto != "http/json")
        return absl::InvalidArgumentError(absl::StrCat("OTEL_EXPORTER_OTLP_PROTOCOL='", proto,
                                                       "': this build exports http/json only (set it to http/json)"));
    auto parsed = parse_http_url(url);
    if (!parsed.ok()) return parsed.status();
    c.url = url;
    c.enabled = true;
    return c;
}

bool should_sample(const TracerConfig& c, const std::optional<TraceContext>& parent, const TraceId& trace_id) {
    auto ratio = [&] {
        // OTel's TraceIdRatioBased: the low 8 bytes compared against ratio * 2^63 (the sign bit dropped).
        const uint64_t bound = uint64_t(c.ratio * double(uint64_t(1) << 63));
        return (trace_id_low(trace_id) >> 1) < bound || c.ratio >= 1.0;
    };
    switch (c.sampler) {
    case SamplerKind::kAlwaysOn: return true;
    case SamplerKind::kAlwaysOff: return false;
    case SamplerKind::kRatio: return ratio();
    case SamplerKind::kParentOn: return parent ? parent->sampled : true;
    case SamplerKind::kParentOff: return parent ? parent->sampled : false;
    case SamplerKind::kParentRatio: return parent ? parent->sampled : ratio();
    }
    return false;
}

absl::StatusOr<HttpUrl> parse_http_url(const std::string& url) {
    constexpr std::string_view kScheme = "http://";
    if (url.rfind(kScheme, 0) != 0)
        return absl::InvalidArgumentError(absl::StrCat("OTLP endpoint '", url,
                                                       "': only http:// is supported (put a collector next to this process)"));
    std::string rest = url.substr(kScheme.size());
    HttpUrl u;
    const size_t slash = rest.find('/');
    u.path = slash == std::string::npos ? "/" : rest.substr(slash);
    std::string hostport = rest.substr(0, slash);
    const size_t colon = hostport.rfind(':');
    if (colon != std::string::npos && hostport.find(']') == std::string::npos) {
        if (!absl::SimpleAtoi(hostport.substr(colon + 1), &u.port) || u.port <= 0 || u.port > 65535)
            return absl::InvalidArgumentError(absl::StrCat("OTLP endpoint '", url, "': bad port"));
        hostport.resize(colon);
    }
    u.host = hostport;
    if (u.host.empty()) return absl::InvalidArgumentError(absl::StrCat("OTLP endpoint '", url, "': no host"));
    return u;
}

absl::StatusOr<int> http_post(const HttpUrl& url, const std::string& content_type, const std::string& body,
                              const std::map<std::string, std::string>& headers, int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    if (int rc = ::getaddrinfo(url.host.c_str(), std::to_string(url.port).c_str(), &hints, &res); rc != 0)
        return absl::UnavailableError(absl::StrCat("resolve ", url.host, ": ", gai_strerror(rc)));
    int fd = -1;
    for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
        fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
            ::close(fd);
            fd = -1;
            continue;
        }
        int err = 0;
        socklen_t len = sizeof(err);
        if (!wait_fd(fd, POLLOUT, deadline) || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            ::close(fd);
            fd = -1;
        }
    }
    ::freeaddrinfo(res);
    if (fd < 0) return absl::UnavailableError(absl::StrCat("connect to ", url.host, ":", url.port, " failed"));

    std::string req = absl::StrCat("POST ", url.path, " HTTP/1.1\r\nHost: ", url.host, ":", url.port,
                                   "\r\nContent-Type: ", content_type, "\r\nContent-Length: ", body.size(),
                                   "\r\nConnection: close\r\n");
    for (const auto& [k, v] : headers) absl::StrAppend(&req, k, ": ", v, "\r\n");
    absl::StrAppend(&req, "\r\n", body);
    for (size_t off = 0; off < req.size();) {
        if (!wait_fd(fd, POLLOUT, deadline)) {
            ::close(fd);
            return absl::DeadlineExceededError("OTLP export timed out while sending");
        }
        const ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
        if (n <= 0) {
            ::close(fd);
            return absl::UnavailableError("OTLP export: connection closed while sending");
        }
        off += size_t(n);
    }
    std::string resp;
    char buf[4096];
    while (resp.find("\r\n") == std::string::npos && resp.size() < 65536) {
        if (!wait_fd(fd, POLLIN, deadline)) break;
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        resp.append(buf, size_t(n));
    }
    ::close(fd);
    // "HTTP/1.1 200 OK"
    int code = 0;
    if (resp.size() < 12 || resp.rfind("HTTP/", 0) != 0 || !absl::SimpleAtoi(resp.substr(9, 3), &code))
        return absl::UnavailableError("OTLP export: no HTTP status line in the reply");
    return code;
}

Tracer::Tracer(TracerConfig config) : config_(std::move(config)) {
    if (!config_.enabled) return;
    auto u = parse_http_url(config_.url);
    if (!u.ok()) {
        config_.enabled = false;
        return;
    }
    url_ = *u;
    thread_ = std::thread([this] { run(); });
}

Tracer::~Tracer() {
    if (!thread_.joinable()) return;
    {
        std::lock_guard<std::mutex> l(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

void Tracer::submit(Span span) {
    if (!config_.enabled) return;
    std::lock_guard<std::mutex> l(mu_);
    if (queue_.size() >= config_.max_queue) {
        ++dropped_;
        return;
    }
    queue_.push_back(std::move(span));
    if (queue_.size() >= config_.max_batch) cv_.notify_all();
}

void Tracer::flush() {
    if (!config_.enabled) return;
    std::unique_lock<std::mutex> l(mu_);
    const uint64_t ticket = ++flush_requests_;
    cv_.notify_all();
    flushed_.wait(l, [&] { return flushes_done_ >= ticket || stopping_; });
}

uint64_t Tracer::dropped() const {
    std::lock_guard<std::mutex> l(mu_);
    return dropped_;
}
uint64_t Tracer::exported() const {
    std::lock_guard<std::mutex> l(mu_);
    return exported_;
}
uint64_t Tracer::failed_exports() const {
    std::lock_guard<std::mutex> l(mu_);
    return failed_;
}

void Tracer::run() {
    std::unique_lock<std::mutex> l(mu_);
    while (true) {
        cv_.wait_for(l, std::chrono::milliseconds(config_.schedule_delay_ms), [&] {
            return stopping_ || queue_.size() >= config_.max_batch || flush_requests_ > flushes_done_;
        });
        const uint64_t flush_target = flush_requests_;
        // Drain in batches; on stop, export what is left once (bounded by the timeout) and quit.
        while (!queue_.empty()) {
            std::vector<Span> batch;
            while (!queue_.empty() && batch.size() < config_.max_batch) {
                batch.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
            l.unlock();
            export_batch(std::move(batch));
            l.lock();
        }
        flushes_done_ = flush_target;
        flushed_.notify_all();
        if (stopping_) return;
    }
}

void Tracer::export_batch(std::vector<Span> batch) {
    const std::string body = encode_otlp_json(config_.resource, batch);
    auto code = http_post(*url_, "application/json", body, config_.headers, config_.timeout_ms);
    // No retries: a retry would hold the queue while spans keep arriving; losing a batch to a
    // collector outage is the documented trade-off.
    std::lock_guard<std::mutex> l(mu_);
    if (code.ok() && *code >= 200 && *code < 300) exported_ += batch.size();
    else ++failed_;
}

}  // namespace dg::trace
