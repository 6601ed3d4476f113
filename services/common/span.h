// A finished span as a process records it: enough of the OpenTelemetry data model for OTLP export
// (no links, no events beyond the basics). Built in-process; opentelemetry-cpp is not in Debian 12.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "services/common/trace_context.h"

namespace dg::trace {

using AttrValue = std::variant<std::string, int64_t, double, bool, std::vector<std::string>>;
using Attributes = std::vector<std::pair<std::string, AttrValue>>;

// OTLP enum values (integers on the wire, style doc §B1).
enum class SpanKind : int { kInternal = 1, kServer = 2, kClient = 3 };
enum class SpanStatus : int { kUnset = 0, kOk = 1, kError = 2 };

struct SpanEvent {
    uint64_t time_ns = 0;
    std::string name;
    Attributes attributes;
};

struct Span {
    TraceId trace_id{};
    SpanId span_id{};
    std::optional<SpanId> parent_span_id;
    std::string name;
    SpanKind kind = SpanKind::kInternal;
    uint64_t start_ns = 0;  // Unix epoch nanoseconds
    uint64_t end_ns = 0;
    Attributes attributes;
    std::vector<SpanEvent> events;
    SpanStatus status = SpanStatus::kUnset;
    std::string status_message;
    std::string tracestate;

    void set(std::string key, AttrValue v) { attributes.emplace_back(std::move(key), std::move(v)); }
};

uint64_t unix_nanos_now();

}  // namespace dg::trace
