#include "services/common/otlp_json.h"

#include <chrono>

#include <nlohmann/json.hpp>

namespace dg::trace {
namespace {

using json = nlohmann::json;

json encode_value(const AttrValue& v) {
    json out = json::object();
    if (auto* s = std::get_if<std::string>(&v)) {
        out["stringValue"] = *s;
    } else if (auto* i = std::get_if<int64_t>(&v)) {
        out["intValue"] = std::to_string(*i);  // int64 as a decimal string (proto3 JSON)
    } else if (auto* d = std::get_if<double>(&v)) {
        out["doubleValue"] = *d;
    } else if (auto* b = std::get_if<bool>(&v)) {
        out["boolValue"] = *b;
    } else if (auto* a = std::get_if<std::vector<std::string>>(&v)) {
        json values = json::array();
        for (const auto& s : *a) values.push_back({{"stringValue", s}});
        out["arrayValue"] = {{"values", values}};
    }
    return out;
}

json encode_attributes(const Attributes& attrs) {
    json out = json::array();
    for (const auto& [k, v] : attrs) out.push_back({{"key", k}, {"value", encode_value(v)}});
    return out;
}

json encode_span(const Span& s) {
    json j = {
        {"traceId", to_hex(s.trace_id)},
        {"spanId", to_hex(s.span_id)},
        {"name", s.name},
        {"kind", int(s.kind)},
        {"startTimeUnixNano", std::to_string(s.start_ns)},
        {"endTimeUnixNano", std::to_string(s.end_ns)},
        {"attributes", encode_attributes(s.attributes)},
    };
    if (s.parent_span_id) j["parentSpanId"] = to_hex(*s.parent_span_id);
    if (!s.tracestate.empty()) j["traceState"] = s.tracestate;
    if (!s.events.empty()) {
        json events = json::array();
        for (const auto& e : s.events)
            events.push_back({{"timeUnixNano", std::to_string(e.time_ns)},
                              {"name", e.name},
                              {"attributes", encode_attributes(e.attributes)}});
        j["events"] = events;
    }
    json status = {{"code", int(s.status)}};
    if (!s.status_message.empty()) status["message"] = s.status_message;
    j["status"] = status;
    return j;
}

}  // namespace

uint64_t unix_nanos_now() {
    return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count());
}

std::string encode_otlp_json(const Resource& resource, const std::vector<Span>& spans) {
    Attributes rattrs = {{"service.name", resource.service_name}, {"telemetry.sdk.name", std::string("deltagate")},
                         {"telemetry.sdk.language", std::string("cpp")}};
    for (const auto& a : resource.attributes)
        if (a.first != "service.name") rattrs.push_back(a);
    json jspans = json::array();
    for (const auto& s : spans) jspans.push_back(encode_span(s));
    json req = {{"resourceSpans",
                 json::array({{{"resource", {{"attributes", encode_attributes(rattrs)}}},
                               {"scopeSpans", json::array({{{"scope", {{"name", "deltagate"}}},
                                                            {"spans", jspans}}})}}})}};
    // dump() with `replace` keeps invalid UTF-8 (a user's stop string, say) from throwing.
    return req.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace dg::trace
