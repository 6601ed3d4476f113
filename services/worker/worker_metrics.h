// The worker's Prometheus series (style doc §B2): deltagate_* names, plus the three vLLM-named gauges
// that the Gateway API inference extension and KEDA recipes scrape. Counters and histograms are fed
// from the engine thread as events pass; gauges from each load digest.
#pragma once

#include <string>

#include "scheduler/engine_loop.h"
#include "services/common/metrics.h"

namespace dg::worker {

class WorkerMetrics {
public:
    // vllm_names: also export vLLM's `vllm:` gauges for vLLM-aware autoscalers (opt-in: Prometheus reserves
    // ':' for recording rules, so `promtool check metrics` flags them).
    WorkerMetrics(metrics::Registry& reg, bool vllm_names);

    // A request ended with this gRPC status code: deltagate_requests_total{code="CANCELLED"}, spelled
    // as the front spells it (services/common/status_http.h status_code_name).
    void request_finished(int grpc_code);
    // The final usage of a request that ran (any status).
    void usage(const sched::Usage& u);
    void first_token(double seconds) { ttft_->observe(seconds); }
    void inter_token(double seconds) { itl_->observe(seconds); }
    void e2e(double seconds) { e2e_->observe(seconds); }
    void digest(const sched::LoadDigest& d, bool draining);

private:
    metrics::Registry& reg_;
    metrics::Histogram *ttft_, *itl_, *e2e_, *queue_, *prefill_, *decode_;
    metrics::Counter *prompt_tokens_, *generation_tokens_, *prefill_tokens_, *preemptions_;
    metrics::Counter *cache_queries_, *cache_hits_device_, *cache_hits_host_;
    metrics::Gauge *running_, *waiting_, *kv_used_, *kv_cached_, *kv_total_, *kv_usage_, *slots_used_, *slots_total_;
    metrics::Gauge *ckpt_device_, *ckpt_host_, *host_bytes_, *host_budget_, *kv_host_, *draining_;
    metrics::Gauge *vllm_running_ = nullptr, *vllm_waiting_ = nullptr, *vllm_kv_usage_ = nullptr;
};

}  // namespace dg::worker
