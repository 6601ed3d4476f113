// The tracer the front and the worker share: the standard OTEL_* variables, a sampler, and an exporter that batches finished
// spans on a background thread and POSTs them as OTLP/HTTP JSON. The request path only appends to a
// bounded queue (a full queue drops the span and counts it): a dead or slow collector never slows serving.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "services/common/otlp_json.h"
#include "services/common/span.h"

namespace dg::trace {

enum class SamplerKind { kAlwaysOn, kAlwaysOff, kRatio, kParentOn, kParentOff, kParentRatio };

struct TracerConfig {
    bool enabled = false;            // an endpoint is configured and OTEL_SDK_DISABLED/OTEL_TRACES_EXPORTER allow it
    std::string url;                 // full URL of the traces endpoint (…/v1/traces)
    std::map<std::string, std::string> headers;  // OTEL_EXPORTER_OTLP_HEADERS
    Resource resource;
    SamplerKind sampler = SamplerKind::kParentOn;
    double ratio = 1.0;
    int schedule_delay_ms = 5000;    // OTEL_BSP_SCHEDULE_DELAY
    size_t max_queue = 2048;         // OTEL_BSP_MAX_QUEUE_SIZE
    size_t max_batch = 512;          // OTEL_BSP_MAX_EXPORT_BATCH_SIZE
    int timeout_ms = 10000;          // OTEL_EXPORTER_OTLP_TIMEOUT
};

// Reads the OTEL_* environment (`default_service`: the service name when OTEL_SERVICE_NAME is unset).
// Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. A
// setting we cannot honour (https, a protocol other than http/json) is an error naming it.
absl::StatusOr<TracerConfig> tracer_config_from_env(const std::string& default_service);

// Samples a new root or child span: parent-based samplers follow the parent's flag.
bool should_sample(const TracerConfig& c, const std::optional<TraceContext>& parent, const TraceId& trace_id);

// "http://host:port/path" split for the exporter's HTTP client. https is not supported.
struct HttpUrl {
    std::string host;
    int port = 80;
    std::string path;
};
absl::StatusOr<HttpUrl> parse_http_url(const std::string& url);

// One HTTP/1.1 POST (Connection: close) with a timeout; returns the status code.
absl::StatusOr<int> http_post(const HttpUrl& url, const std::string& content_type, const std::string& body,
                              const std::map<std::string, std::string>& headers, int timeout_ms);

class Tracer {
public:
    explicit Tracer(TracerConfig config);
    ~Tracer();  // flushes what is queued (bounded by the timeout), then stops
    Tracer(const Tracer&) = delete;
    Tracer& operator=(const Tracer&) = delete;

    const TracerConfig& config() const { return config_; }
    bool enabled() const { return config_.enabled; }
    // Queues a finished span (dropped when the queue is full or tracing is off).
    void submit(Span span);
    // Exports everything queued now; for tests and shutdown.
    void flush();

    uint64_t dropped() const;
    uint64_t exported() const;
    uint64_t failed_exports() const;

private:
    void run();
    void export_batch(std::vector<Span> batch);

    TracerConfig config_;
    std::optional<HttpUrl> url_;
    mutable std::mutex mu_;
    std::condition_variable cv_, flushed_;
    std::deque<Span> queue_;
    bool stopping_ = false;
    uint64_t flush_requests_ = 0, flushes_done_ = 0;
    uint64_t dropped_ = 0, exported_ = 0, failed_ = 0;
    std::thread thread_;
};

}  // namespace dg::trace
