// The retry-after hint of an overload rejection (RESOURCE_EXHAUSTED, HTTP 429): when the rejecting server
// will likely have room again. A bounded queue frees a place each time a running request finishes, and with
// `running` requests of mean duration D that happens about every D / running. D is a moving average of the
// durations this server saw end. Not thread-safe: each owner keeps it under its own lock or thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>

#include <grpcpp/support/string_ref.h>

namespace dg {

// Trailing metadata key (gRPC) of the hint, in milliseconds; the HTTP API sends Retry-After (seconds).
inline constexpr const char* kRetryAfterMsKey = "retry-after-ms";

// The hint in a finished call's trailing metadata (ClientContext::GetServerTrailingMetadata()); 0 = none.
inline int64_t retry_after_ms_from(const std::multimap<grpc::string_ref, grpc::string_ref>& trailing) {
    auto it = trailing.find(kRetryAfterMsKey);
    if (it == trailing.end()) return 0;
    const std::string v(it->second.data(), it->second.size());
    char* end = nullptr;
    const long long ms = std::strtoll(v.c_str(), &end, 10);
    return end != v.c_str() && *end == '\0' && ms > 0 ? int64_t(ms) : 0;
}

class RetryAfterEstimate {
public:
    void observe(double request_ms) {
        mean_ms_ = mean_ms_ <= 0 ? request_ms : mean_ms_ + (request_ms - mean_ms_) * 0.1;
    }
    // 1000 ms before any request finished; within [50 ms, 30 s].
    int64_t ms_until_room(int64_t running) const {
        if (mean_ms_ <= 0) return 1000;
        return std::clamp<int64_t>(int64_t(mean_ms_ / double(std::max<int64_t>(1, running))) + 1, 50, 30000);
    }

    // How long a request arriving now would wait for a running slot: 0 while one is free, else a slot frees
    // every mean / slots and `waiting` are ahead of it. 0 before any request finished (nothing known).
    int64_t expected_wait_ms(int64_t running, int64_t slots, int64_t waiting) const {
        if (mean_ms_ <= 0 || (running < slots && waiting == 0)) return 0;
        return int64_t(mean_ms_ * double(waiting + 1) / double(std::max<int64_t>(1, slots)));
    }

private:
    double mean_ms_ = 0;
};

}  // namespace dg
