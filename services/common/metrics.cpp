#include "services/common/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace dg::metrics {
namespace {

bool valid_name(const std::string& s, bool allow_colon) {
    if (s.empty()) return false;
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "metrics: %s\n", what.c_str());
    std::abort();
}

std::string render_labels(const Labels& labels, const char* extra_name = nullptr, const std::string& extra_value = {}) {
    if (labels.empty() && !extra_name) return {};
    std::string out = "{";
    bool first = true;
    for (const auto& [k, v] : labels) {
        if (!first) out += ',';
        first = false;
        out += k + "=\"" + escape_label_value(v) + "\"";
    }
    if (extra_name) {
        if (!first) out += ',';
        out += std::string(extra_name) + "=\"" + escape_label_value(extra_value) + "\"";
    }
    return out + "}";
}

std::string escape_help(const std::string& h) {
    std::string out;
    for (char c : h) {
        if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

}  // namespace

const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25, 0.5, 0.75,
                                          1,     2.5,   5,    7.5,  10,   20,   40,   80,   160,  640, 2560};
const std::vector<double> kInterTokenBuckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                                                0.75, 1,     2.5,  5,     7.5, 10,   20,  40,  80};
const std::vector<double> kRequestTimeBuckets = {0.3,  0.5,  0.8,  1,    1.5,  2,    2.5,  5,    10,   15,
                                                 20,   30,   40,   50,   60,   120,  240,  480,  960,  1920, 7680};

std::vector<double> one_two_five_buckets(double max) {
    std::vector<double> out;
    for (double m = 1;; m *= 10) {
        for (double k : {1.0, 2.0, 5.0}) {
            if (k * m > max) return out;
            out.push_back(k * m);
        }
    }
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
    for (size_t i = 0; i < bounds_.size(); ++i)
        if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1]))
            die("histogram bounds must be finite and strictly increasing");
    for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::observe(double v) {
    const size_t i = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());  // le: v <= bound
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::bucket_counts() const {
    std::vector<uint64_t> out(bounds_.size() + 1);
    for (size_t i = 0; i < out.size(); ++i) out[i] = buckets_[i].load(std::memory_order_relaxed);
    return out;
}

Registry::Family& Registry::family(const std::string& name, Kind kind, const std::string& help, const Labels& labels,
                                   const std::vector<double>* bounds) {
    if (!valid_name(name, true)) die("bad metric name '" + name + "'");
    for (const auto& [k, v] : labels)
        if (!valid_name(k, false) || k.rfind("__", 0) == 0 || (kind == Kind::kHistogram && k == "le"))
            die("bad label name '" + k + "' on " + name);
    auto [it, inserted] = families_.try_emplace(name);
    Family& f = it->second;
    if (inserted) {
        f.kind = kind;
        f.help = help;
        if (bounds) f.bounds = *bounds;
    } else if (f.kind != kind || (bounds && f.bounds != *bounds)) {
        die("metric '" + name + "' registered twice with different types or buckets");
    }
    return f;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
    std::lock_guard lock(mu_);
    auto& slot = family(name, Kind::kCounter, help, labels, nullptr).counters[labels];
    if (!slot) slot = std::make_unique<Counter>();
    return *slot;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
    std::lock_guard lock(mu_);
    auto& slot = family(name, Kind::kGauge, help, labels, nullptr).gauges[labels];
    if (!slot) slot = std::make_unique<Gauge>();
    return *slot;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                               const Labels& labels) {
    std::lock_guard lock(mu_);
    auto& slot = family(name, Kind::kHistogram, help, labels, &bounds).histograms[labels];
    if (!slot) slot = std::make_unique<Histogram>(bounds);
    return *slot;
}

void Registry::add_collector(std::function<void()> fn) {
    std::lock_guard lock(mu_);
    collectors_.push_back(std::move(fn));
}

std::string Registry::render() const {
    std::vector<std::function<void()>> collectors;
    {
        std::lock_guard lock(mu_);
        collectors = collectors_;
    }
    for (auto& c : collectors) c();  // outside the lock: a collector may register series

    std::lock_guard lock(mu_);
    std::string out;
    for (const auto& [name, f] : families_) {
        const char* type = f.kind == Kind::kCounter ? "counter" : f.kind == Kind::kGauge ? "gauge" : "histogram";
        out += "# HELP " + name + " " + escape_help(f.help) + "\n";
        out += "# TYPE " + name + " " + type + "\n";
        for (const auto& [labels, c] : f.counters) out += name + render_labels(labels) + " " + format_value(c->value()) + "\n";
        for (const auto& [labels, g] : f.gauges) out += name + render_labels(labels) + " " + format_value(g->value()) + "\n";
        for (const auto& [labels, h] : f.histograms) {
            // _count is the +Inf bucket's cumulative count (not count()), so a concurrent observe()
            // never makes the two disagree in one scrape.
            const auto counts = h->bucket_counts();
            uint64_t cum = 0;
            for (size_t i = 0; i < counts.size(); ++i) {
                cum += counts[i];
                const std::string le = i < h->bounds().size() ? format_value(h->bounds()[i]) : "+Inf";
                out += name + "_bucket" + render_labels(labels, "le", le) + " " + std::to_string(cum) + "\n";
            }
            out += name + "_sum" + render_labels(labels) + " " + format_value(h->sum()) + "\n";
            out += name + "_count" + render_labels(labels) + " " + std::to_string(cum) + "\n";
        }
    }
    return out;
}

std::string format_value(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(int64_t(v));
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    // Prefer the shortest representation that round-trips.
    for (int prec = 1; prec <= 17; ++prec) {
        char tmp[32];
        std::snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (std::strtod(tmp, nullptr) == v) return tmp;
    }
    return buf;
}

std::string escape_label_value(const std::string& v) {
    std::string out;
    for (char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

}  // namespace dg::metrics
