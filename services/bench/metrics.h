// One cell's figures from its requests' results: latency percentiles (TTFT, inter-token, end-to-end, per-
// request mean inter-token = TPOT), throughput over the cell's wall time (first send to last byte),
// cached-token fractions from the servers' usage, errors by status, and goodput against the SLOs.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "services/bench/driver.h"
#include "services/bench/stats.h"

namespace dg::bench {

struct Slo {
    double ttft_ms = 0;  // 0 = no bound
    double itl_ms = 0;   // bound on a request's mean inter-token latency; 0 = no bound
};

struct CellMetrics {
    int requests = 0, ok = 0, failed = 0;
    std::map<std::string, int> errors;  // error class -> count
    std::string first_error;            // one message, for the log
    double wall_s = 0, req_per_s = 0, output_tok_per_s = 0, total_tok_per_s = 0;
    Summary ttft_ms, itl_ms, e2e_ms, tpot_ms;
    Summary prefill_tok_per_s, decode_tok_per_s;  // per request: uncached prompt / TTFT, (output-1) / decode time
    int64_t prompt_tokens = 0;         // sent by this client
    int64_t usage_prompt_tokens = 0;   // as the servers' usage says, over requests that report it
    int64_t cached_tokens = 0, cached_device = 0, cached_host = 0;
    int64_t output_tokens = 0;
    double cached_fraction = -1, cached_device_fraction = -1, cached_host_fraction = -1;  // -1: not reported
    int good = 0;
    double goodput_req_per_s = 0, good_fraction = 0;
};

CellMetrics compute_metrics(const std::vector<RequestResult>& results, const Slo& slo);

}  // namespace dg::bench
