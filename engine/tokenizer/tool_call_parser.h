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

// Length of the longest suffix of `s` that is a proper prefix of `tag`: text that may still become it, so
// a streaming parser holds it back.
size_t partial_tag_suffix(std::string_view s, std::string_view tag);

// A piece of a tool call being generated (see ToolCallStream).
struct ToolCallFragment {
    int index = 0;               // the call's position: 0, 1, ...
    std::string name;            // the call's first piece only
    std::string arguments_json;  // appended to the call's arguments so far
};

// The same parse, incremental: fed the answer text as it is generated, it hands out each call as soon as
// its parts are final — the name once "<function=NAME>" is complete, then the arguments one parameter at a
// time as each "</parameter>" closes ("{" + "\"city\":\"Paris\"", then ",\"days\":3", then "}" at
// "</function>"). The pieces of a call concatenate to its ToolCall's arguments, dumped (unless the model
// repeats a parameter name: the pieces then hold both, the ToolCall the last). A block that closes
// malformed, and one never closed, stay text (rest()); pieces already handed out for it cannot be taken
// back, as with any streaming server.
class ToolCallStream {
public:
    explicit ToolCallStream(std::vector<ojson> tools) : tools_(std::move(tools)) {}

    void push(std::string_view text, std::vector<ToolCallFragment>* out);
    // The calls closed so far, in order.
    const std::vector<ToolCall>& calls() const { return calls_; }
    // At the end of generation: the text outside the closed calls (with an unclosed call's raw text).
    std::string rest() const;

private:
    void scan_open_block(std::vector<ToolCallFragment>* out);

    std::vector<ojson> tools_;
    std::string outside_;  // text outside calls, in order
    std::string buf_;      // not yet consumed: the open block's body, or text that may begin "<tool_call>"
    bool in_block_ = false;
    // The open block: what has been handed out.
    std::string name_;
    size_t params_end_ = 0;  // offset in buf_ after the last parameter handed out
    int params_sent_ = 0;
    bool args_closed_ = false;
    std::vector<ToolCall> calls_;
};

}  // namespace dg::tok
