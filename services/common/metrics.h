// Prometheus metrics for every deltagate process (worker, front): a small registry of counters, gauges
// and histograms rendered in the text exposition format 0.0.4, plus the stock bucket layouts. There is
// no Prometheus C++ client in Debian 12, so this is the whole of it. Serve it with
// services/common/http_server.h (`serve_metrics`).
//
// Usage (the front does the same with its own names):
//
//     dg::metrics::Registry reg;
//     auto& ok = reg.counter("deltagate_requests_total", "Requests finished, by status.", {{"status", "ok"}});
//     auto& ttft = reg.histogram("deltagate_time_to_first_token_seconds", "Time to first token.",
//                                dg::metrics::kTtftBuckets);
//     reg.add_collector([&] { running.set(...); });  // refresh gauges at scrape time
//     ok.inc(); ttft.observe(0.012);
//     std::string text = reg.render();
//
// Conventions (style doc §B2): counters end in `_total`, units in the name (`_seconds`), few label
// values (never request ids). A family is one name with one help/type; each distinct label set is one
// series of it. Asking again for the same name + labels returns the same object, so callers may look
// series up lazily. Names and label names are checked (a bad one is a bug: abort with a message).
//
// Threading: inc/set/observe are lock-free (atomics) and may be called from any thread, including
// an engine thread on its hot path. Registration and render take a mutex. Returned references stay
// valid for the registry's lifetime.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace dg::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
public:
    void inc(double v = 1.0) { value_.fetch_add(v, std::memory_order_relaxed); }
    double value() const { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<double> value_{0.0};
};

class Gauge {
public:
    void set(double v) { value_.store(v, std::memory_order_relaxed); }
    void add(double v) { value_.fetch_add(v, std::memory_order_relaxed); }
    double value() const { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<double> value_{0.0};
};

class Histogram {
public:
    // `bounds`: finite upper bounds, strictly increasing; +Inf is implicit.
    explicit Histogram(std::vector<double> bounds);
    void observe(double v);
    const std::vector<double>& bounds() const { return bounds_; }
    // Non-cumulative per-bucket counts (bounds().size() + 1, the last one is +Inf), sum, count.
    std::vector<uint64_t> bucket_counts() const;
    double sum() const { return sum_.load(std::memory_order_relaxed); }
    uint64_t count() const { return count_.load(std::memory_order_relaxed); }

private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
    std::atomic<double> sum_{0.0};
    std::atomic<uint64_t> count_{0};
};

// Bucket layouts matching vLLM's, so dashboards built for it read ours (style doc §B2).
extern const std::vector<double> kTtftBuckets;          // time_to_first_token_seconds
extern const std::vector<double> kInterTokenBuckets;    // inter_token_latency_seconds
extern const std::vector<double> kRequestTimeBuckets;   // e2e / queue / prefill / decode seconds
// 1-2-5 buckets up to `max` (token counts per request).
std::vector<double> one_two_five_buckets(double max);

class Registry {
public:
    Registry() = default;
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;

    Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
    Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
    Histogram& histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                         const Labels& labels = {});

    // Called (in registration order, under no registry lock) at the start of every render(): the place
    // to copy point-in-time values (queue depth, pool usage) into gauges.
    void add_collector(std::function<void()> fn);

    // The text exposition format 0.0.4 (families sorted by name, series by labels).
    std::string render() const;

private:
    enum class Kind { kCounter, kGauge, kHistogram };
    struct Family {
        Kind kind;
        std::string help;
        std::vector<double> bounds;  // histograms
        std::map<Labels, std::unique_ptr<Counter>> counters;
        std::map<Labels, std::unique_ptr<Gauge>> gauges;
        std::map<Labels, std::unique_ptr<Histogram>> histograms;
    };
    Family& family(const std::string& name, Kind kind, const std::string& help, const Labels& labels,
                   const std::vector<double>* bounds);

    mutable std::mutex mu_;
    std::map<std::string, Family> families_;
    std::vector<std::function<void()>> collectors_;
};

// The Content-Type of render()'s output.
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

// Formats a sample value the way Prometheus parsers expect (NaN, +Inf, -Inf, shortest round-trip).
std::string format_value(double v);
// Escapes a label value (\\, \", \n).
std::string escape_label_value(const std::string& v);

}  // namespace dg::metrics
