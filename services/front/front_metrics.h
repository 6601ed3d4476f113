// The front's Prometheus series (services/common/metrics.h registry). Names follow vLLM's where the
// meaning matches (style doc §B2), prefixed deltagate_front_.
#pragma once

#include <string>

#include "services/common/metrics.h"
#include "services/common/status_http.h"

namespace dg::front {

class FrontMetrics {
public:
    explicit FrontMetrics(metrics::Registry& reg);

    metrics::Registry& registry() { return reg_; }
    // One finished RPC: `code` a gRPC status code (labelled by its name, services/common/status_http.h),
    // `protocol` grpc or http.
    void request_done(const std::string& rpc, int code, const std::string& protocol);
    void routed(const std::string& worker, const std::string& reason);

    metrics::Histogram& ttft;
    metrics::Histogram& inter_token;
    metrics::Histogram& e2e;
    metrics::Counter& prompt_tokens;
    metrics::Counter& generation_tokens;
    metrics::Counter& cached_device;
    metrics::Counter& cached_host;
    metrics::Counter& retries;
    metrics::Counter& midstream_failures;
    metrics::Counter& migrations;
    metrics::Gauge& running;

private:
    metrics::Registry& reg_;
};

using dg::status_code_name;

}  // namespace dg::front
