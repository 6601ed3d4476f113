#include "services/worker/worker_metrics.h"

#include "services/common/status_http.h"

namespace dg::worker {
namespace {
constexpr const char* kRequestsHelp = "Requests finished, by gRPC status code (label code, spelled as the front spells it).";
}  // namespace

WorkerMetrics::WorkerMetrics(metrics::Registry& r, bool vllm_names) : reg_(r) {
    using metrics::kRequestTimeBuckets;
    ttft_ = &r.histogram("deltagate_time_to_first_token_seconds", "Time from arrival at the worker to the first sampled token.",
                         metrics::kTtftBuckets);
    itl_ = &r.histogram("deltagate_inter_token_latency_seconds", "Time between consecutive tokens of one continuation.",
                        metrics::kInterTokenBuckets);
    e2e_ = &r.histogram("deltagate_e2e_request_latency_seconds", "Time from arrival to the request's last event.",
                        kRequestTimeBuckets);
    queue_ = &r.histogram("deltagate_request_queue_time_seconds", "Time a request waited before admission.", kRequestTimeBuckets);
    prefill_ = &r.histogram("deltagate_request_prefill_time_seconds", "Admission to first token.", kRequestTimeBuckets);
    decode_ = &r.histogram("deltagate_request_decode_time_seconds", "First token to the last event.", kRequestTimeBuckets);
    prompt_tokens_ = &r.counter("deltagate_prompt_tokens_total", "Prompt tokens of finished requests (cached or computed).");
    generation_tokens_ = &r.counter("deltagate_generation_tokens_total", "Generated tokens, over all continuations.");
    prefill_tokens_ = &r.counter("deltagate_prefill_tokens_total", "Prompt tokens actually computed (not restored from a cache).");
    preemptions_ = &r.counter("deltagate_num_preemptions_total", "Sequences preempted under memory pressure.");
    cache_queries_ = &r.counter("deltagate_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.");
    cache_hits_device_ = &r.counter("deltagate_prefix_cache_hits_total",
                                    "Prompt tokens resumed from a state checkpoint, by checkpoint tier.", {{"tier", "device"}});
    cache_hits_host_ = &r.counter("deltagate_prefix_cache_hits_total",
                                  "Prompt tokens resumed from a state checkpoint, by checkpoint tier.", {{"tier", "host"}});
    running_ = &r.gauge("deltagate_num_requests_running", "Sequences in the running batch.");
    waiting_ = &r.gauge("deltagate_num_requests_waiting", "Sequences waiting for admission (new or preempted).");
    kv_used_ = &r.gauge("deltagate_kv_blocks_used", "KV blocks referenced by running sequences or checkpoints.");
    kv_cached_ = &r.gauge("deltagate_kv_blocks_cached", "Unreferenced KV blocks kept for prefix reuse (evictable).");
    kv_total_ = &r.gauge("deltagate_kv_blocks_capacity", "KV blocks in the pool (used + cached + free).");
    kv_usage_ = &r.gauge("deltagate_kv_cache_usage_ratio", "Referenced KV blocks / all KV blocks (0-1).");
    slots_used_ = &r.gauge("deltagate_state_slots_used", "Recurrent-state slots held by running sequences.");
    slots_total_ = &r.gauge("deltagate_state_slots_capacity", "Recurrent-state slots for running sequences (used + free).");
    ckpt_device_ = &r.gauge("deltagate_state_checkpoints", "State checkpoints held, by tier.", {{"tier", "device"}});
    ckpt_host_ = &r.gauge("deltagate_state_checkpoints", "State checkpoints held, by tier.", {{"tier", "host"}});
    host_bytes_ = &r.gauge("deltagate_host_cache_bytes", "Bytes in host RAM: state checkpoints and spilled KV blocks.");
    host_budget_ = &r.gauge("deltagate_host_cache_budget_bytes", "Byte budget of the host-RAM tier (checkpoints and KV blocks).");
    kv_host_ = &r.gauge("deltagate_kv_blocks_host", "KV blocks spilled to host RAM (uploaded back instead of recomputed).");
    draining_ = &r.gauge("deltagate_draining", "1 while the worker drains (refuses new requests).");
    if (vllm_names) {
        vllm_running_ = &r.gauge("vllm:num_requests_running", "Alias of deltagate_num_requests_running for vLLM-aware tooling.");
        vllm_waiting_ = &r.gauge("vllm:num_requests_waiting", "Alias of deltagate_num_requests_waiting for vLLM-aware tooling.");
        vllm_kv_usage_ = &r.gauge("vllm:kv_cache_usage_perc", "Alias of deltagate_kv_cache_usage_ratio (0-1) for vLLM-aware tooling.");
    }
    // The ok series exists from the start so that rate() has a baseline.
    reg_.counter("deltagate_requests_total", kRequestsHelp, {{"code", status_code_name(0)}});
}

void WorkerMetrics::request_finished(int grpc_code) {
    // Few distinct values (the gRPC codes), so a lookup per request is fine.
    reg_.counter("deltagate_requests_total", kRequestsHelp, {{"code", status_code_name(grpc_code)}}).inc();
}

void WorkerMetrics::usage(const sched::Usage& u) {
    prompt_tokens_->inc(u.prompt_tokens);
    generation_tokens_->inc(u.completion_tokens);
    prefill_tokens_->inc(u.prefill_tokens);
    preemptions_->inc(u.preemptions);
    cache_queries_->inc(u.prompt_tokens);
    cache_hits_device_->inc(u.cached_tokens_device);
    cache_hits_host_->inc(u.cached_tokens_host);
    queue_->observe(u.queue_ms / 1e3);
    prefill_->observe(u.prefill_ms / 1e3);
    decode_->observe(u.decode_ms / 1e3);
}

void WorkerMetrics::digest(const sched::LoadDigest& d, bool draining) {
    running_->set(d.running);
    waiting_->set(d.waiting);
    kv_used_->set(d.kv_blocks_referenced);
    kv_cached_->set(d.kv_blocks_cached);
    kv_total_->set(d.kv_blocks_total);
    const double usage = d.kv_blocks_total > 0 ? double(d.kv_blocks_referenced) / d.kv_blocks_total : 0.0;
    kv_usage_->set(usage);
    slots_used_->set(d.seq_slots_used);
    slots_total_->set(d.seq_slots_total);
    ckpt_device_->set(d.checkpoints_device);
    ckpt_host_->set(d.checkpoints_host);
    host_bytes_->set(double(d.host_bytes));
    kv_host_->set(d.kv_blocks_host);
    host_budget_->set(double(d.host_budget));
    draining_->set(draining ? 1 : 0);
    if (vllm_running_) {
        vllm_running_->set(d.running);
        vllm_waiting_->set(d.waiting);
        vllm_kv_usage_->set(usage);
    }
}

}  // namespace dg::worker
