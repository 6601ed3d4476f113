// The worker's part of a trace: one SERVER span per Generate call, under the front's worker-call span
// (the `traceparent` in the call's metadata), with one child per phase the scheduler measured:
//
//   deltagate.worker.v1.Worker/Generate   SERVER  receipt .. end
//     queue                               INTERNAL receipt .. admission
//     cache_restore                       INTERNAL admission .. +restore_ms   (only when a prefix was reused)
//     prefill                             INTERNAL end of restore .. first token
//     decode                              INTERNAL first token .. end
//
// The spans are built once, when the request ends, from the scheduler's Usage (durations on the steady
// clock) anchored at the wall-clock receipt time: the engine thread does no tracing work per step.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "scheduler/request.h"
#include "services/common/span.h"
#include "services/common/trace_context.h"

namespace dg::worker {

struct RequestTrace {
    trace::TraceId trace_id{};
    std::optional<trace::SpanId> parent;  // the front's span (absent: the worker starts the trace)
    std::string tracestate;
    uint64_t start_ns = 0;                // Unix nanoseconds at receipt
    std::string request_id;               // this API's request id
    std::string public_request_id;        // the front's (x-deltagate-request-id)
    std::string worker_id;
    int32_t n = 1;
    int32_t max_tokens = 0;
};

// `end_ns`: Unix nanoseconds at the request's last event; `code`/`message`: how the call ended.
std::vector<trace::Span> request_spans(const RequestTrace& t, const sched::Usage& u, uint64_t end_ns, int code,
                                       const std::string& message);

}  // namespace dg::worker
