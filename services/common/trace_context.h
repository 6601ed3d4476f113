// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` header carried in gRPC
// metadata from the client to the front and from the front to the worker, and random ids for new spans.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dg::trace {

using TraceId = std::array<uint8_t, 16>;
using SpanId = std::array<uint8_t, 8>;

struct TraceContext {
    TraceId trace_id{};
    SpanId span_id{};   // the parent span (the caller's) when parsed from a header
    bool sampled = false;
    std::string tracestate;  // passed through unchanged

    bool valid() const;
};

// Parses `00-<32 hex>-<16 hex>-<2 hex>`. Invalid headers (bad length or hex, all-zero ids, version ff)
// give nullopt, as the spec says: the receiver then starts a new trace. A later version is read by its
// first four fields. Upper-case hex is rejected (the spec requires lowercase).
std::optional<TraceContext> parse_traceparent(std::string_view header);
// "00-<trace>-<span>-<01|00>".
std::string format_traceparent(const TraceContext& ctx);

std::string to_hex(const uint8_t* p, size_t n);
inline std::string to_hex(const TraceId& id) { return to_hex(id.data(), id.size()); }
inline std::string to_hex(const SpanId& id) { return to_hex(id.data(), id.size()); }

// Random non-zero ids (a thread-local generator seeded from the OS).
TraceId new_trace_id();
SpanId new_span_id();
// The trace id's low 8 bytes as a number, for the trace-id-ratio sampler (same rule as the OTel SDKs).
uint64_t trace_id_low(const TraceId& id);

}  // namespace dg::trace
