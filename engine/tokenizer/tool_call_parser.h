// Parses Qwen3.5's XML tool calls out of generated text:
//   <tool_call>\n<function=NAME>\n<parameter=KEY>\nVALUE\n</parameter>\n...</function>\n</tool_call>
// Values are text; with the tool definitions at hand, a parameter whose schema type is not "string" is
// read as JSON when it parses (numbers, booleans, objects), the way the template wrote it with tojson.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "engine/tokenizer/chat_template.h"

namespace dg::tok {

struct ParsedToolCalls {
    std::string content;          // text outside the tool calls (trailing whitespace trimmed)
    std::vector<ToolCall> calls;  // in order
};

// A malformed block (unclosed tags, no function name) is an InvalidArgument naming what is wrong, so
// the front can return the raw text instead of a half-parsed call.
absl::StatusOr<ParsedToolCalls> parse_tool_calls(std::string_view text, const std::vector<ojson>& tools = {});

}  // namespace dg::tok
