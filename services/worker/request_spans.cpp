#include "services/worker/request_spans.h"

#include <algorithm>

namespace dg::worker {
namespace {

trace::Span child(const RequestTrace& t, const trace::Span& parent, const char* name, uint64_t begin, uint64_t end) {
    trace::Span s;
    s.trace_id = t.trace_id;
    s.span_id = trace::new_span_id();
    s.parent_span_id = parent.span_id;
    s.name = name;
    s.kind = trace::SpanKind::kInternal;
    s.start_ns = begin;
    s.end_ns = std::max(begin, end);
    return s;
}

}  // namespace

std::vector<trace::Span> request_spans(const RequestTrace& t, const sched::Usage& u, uint64_t end_ns, int code,
                                       const std::string& message) {
    // The scheduler's durations start at its submit, a post away from receipt: clamp every phase into
    // [receipt, end] so rounding never puts a child outside its parent.
    auto at = [&](double ms_from_start) {
        const uint64_t ns = t.start_ns + uint64_t(std::max(0.0, ms_from_start) * 1e6);
        return std::min(ns, end_ns);
    };
    end_ns = std::max(end_ns, t.start_ns);

    trace::Span server;
    server.trace_id = t.trace_id;
    server.span_id = trace::new_span_id();
    server.parent_span_id = t.parent;
    server.tracestate = t.tracestate;
    server.name = "deltagate.worker.v1.Worker/Generate";
    server.kind = trace::SpanKind::kServer;
    server.start_ns = t.start_ns;
    server.end_ns = end_ns;
    server.set("rpc.system", std::string("grpc"));
    server.set("rpc.service", std::string("deltagate.worker.v1.Worker"));
    server.set("rpc.method", std::string("Generate"));
    server.set("rpc.grpc.status_code", int64_t(code));
    server.set("deltagate.worker.id", t.worker_id);
    server.set("deltagate.worker.request_id", t.request_id);
    if (!t.public_request_id.empty()) server.set("deltagate.request_id", t.public_request_id);
    server.set("gen_ai.request.choice.count", int64_t(t.n));
    server.set("gen_ai.request.max_tokens", int64_t(t.max_tokens));
    server.set("gen_ai.usage.input_tokens", int64_t(u.prompt_tokens));
    server.set("gen_ai.usage.output_tokens", int64_t(u.completion_tokens));
    server.set("deltagate.usage.cached_tokens.device", int64_t(u.cached_tokens_device));
    server.set("deltagate.usage.cached_tokens.host", int64_t(u.cached_tokens_host));
    server.set("deltagate.usage.prefill_tokens", int64_t(u.prefill_tokens));
    server.set("deltagate.usage.recomputed_tokens", int64_t(u.recomputed_tokens));
    server.set("deltagate.preemptions", int64_t(u.preemptions));
    if (u.first_token) server.set("gen_ai.server.time_to_first_token", u.ttft_ms / 1e3);
    if (code != 0) {
        server.status = trace::SpanStatus::kError;
        server.status_message = message;
    }

    std::vector<trace::Span> out;
    const uint64_t admitted = u.admitted ? at(u.queue_ms) : end_ns;
    trace::Span queue = child(t, server, "queue", t.start_ns, admitted);
    if (!u.admitted) queue.set("deltagate.ended_in_queue", true);
    out.push_back(std::move(queue));
    if (u.admitted) {
        uint64_t prefill_begin = admitted;
        const int32_t cached = u.cached_tokens_device + u.cached_tokens_host;
        if (cached > 0) {
            prefill_begin = std::min(end_ns, admitted + uint64_t(std::max(0.0, u.restore_ms) * 1e6));
            trace::Span restore = child(t, server, "cache_restore", admitted, prefill_begin);
            restore.set("deltagate.cached_tokens", int64_t(cached));
            restore.set("deltagate.cache.tier", std::string(u.cached_tokens_host > 0 ? "host" : "device"));
            out.push_back(std::move(restore));
        }
        const uint64_t first = u.first_token ? std::max(prefill_begin, at(u.ttft_ms)) : end_ns;
        trace::Span prefill = child(t, server, "prefill", prefill_begin, first);
        prefill.set("deltagate.prefill_tokens", int64_t(u.prefill_tokens));
        out.push_back(std::move(prefill));
        if (u.first_token) {
            trace::Span decode = child(t, server, "decode", first, end_ns);
            decode.set("gen_ai.usage.output_tokens", int64_t(u.completion_tokens));
            out.push_back(std::move(decode));
        }
    }
    out.insert(out.begin(), std::move(server));
    return out;
}

}  // namespace dg::worker
