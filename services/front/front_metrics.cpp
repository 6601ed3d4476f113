#include "services/front/front_metrics.h"

namespace dg::front {

FrontMetrics::FrontMetrics(metrics::Registry& reg)
    : ttft(reg.histogram("deltagate_front_time_to_first_token_seconds",
                         "Request arrival at the front to the first token sent.", metrics::kTtftBuckets)),
      inter_token(reg.histogram("deltagate_front_inter_token_latency_seconds",
                                "Time between consecutive tokens of one continuation, as the front sees them.",
                                metrics::kInterTokenBuckets)),
      e2e(reg.histogram("deltagate_front_e2e_request_latency_seconds", "Generate/BatchGenerate duration.",
                        metrics::kRequestTimeBuckets)),
      prompt_tokens(reg.counter("deltagate_front_prompt_tokens_total", "Prompt tokens of finished requests.")),
      generation_tokens(reg.counter("deltagate_front_generation_tokens_total", "Tokens generated and streamed.")),
      cached_device(reg.counter("deltagate_front_cached_prompt_tokens_total",
                                "Prompt tokens resumed from a cached state checkpoint, by tier.", {{"tier", "device"}})),
      cached_host(reg.counter("deltagate_front_cached_prompt_tokens_total",
                              "Prompt tokens resumed from a cached state checkpoint, by tier.", {{"tier", "host"}})),
      retries(reg.counter("deltagate_front_retries_total",
                          "Worker attempts retried on another worker before the first token.")),
      midstream_failures(reg.counter("deltagate_front_midstream_failures_total",
                                     "Streams ended with UNAVAILABLE because a worker failed after tokens were sent "
                                     "and no migration was possible.")),
      migrations(reg.counter("deltagate_front_migrations_total",
                             "Continuations resubmitted to another worker after their worker failed mid-stream.")),
      running(reg.gauge("deltagate_front_requests_running", "Generate/BatchGenerate streams in flight.")),
      reg_(reg) {}

void FrontMetrics::request_done(const std::string& rpc, int code, const std::string& protocol) {
    reg_.counter("deltagate_front_requests_total",
                 "Finished requests, by method, gRPC status name and protocol (grpc, or http for the "
                 "OpenAI/Anthropic-compatible routes, counted under the method they map to).",
                 {{"rpc", rpc}, {"code", dg::status_code_name(code)}, {"protocol", protocol}})
        .inc();
}

void FrontMetrics::routed(const std::string& worker, const std::string& reason) {
    reg_.counter("deltagate_front_routing_decisions_total",
                 "Worker choices: reason session (sticky), prefix (cached prefix won) or load.",
                 {{"worker", worker}, {"reason", reason}})
        .inc();
}

}  // namespace dg::front
