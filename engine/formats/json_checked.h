// Internal to dg_formats: JSON parsing for untrusted headers (safetensors, index.json). Adds what
// nlohmann's parser leaves to the caller: a nesting limit (checked before parsing, so "[[[[..." cannot
// exhaust the stack), duplicate object keys as errors, and exceptions turned into a Status.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace dg {

// `what` prefixes error messages ("model.safetensors: header").
absl::StatusOr<nlohmann::json> parse_json_checked(std::string_view text, const std::string& what, int max_depth = 16);

}  // namespace dg
