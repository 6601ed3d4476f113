// OTLP/HTTP JSON encoding of spans (the proto3 JSON mapping with OTLP's exceptions, style doc §B1):
// lowerCamelCase keys, hex trace/span ids, enums as integers, 64-bit integers as decimal strings.
#pragma once

#include <string>
#include <vector>

#include "services/common/span.h"

namespace dg::trace {

struct Resource {
    std::string service_name;
    Attributes attributes;  // OTEL_RESOURCE_ATTRIBUTES and the like
};

// One ExportTraceServiceRequest holding `spans` under one resource and one instrumentation scope.
std::string encode_otlp_json(const Resource& resource, const std::vector<Span>& spans);

}  // namespace dg::trace
