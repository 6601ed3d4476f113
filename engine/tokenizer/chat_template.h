// Qwen3.5 chat rendering (ChatML), written out in C++ from the official Jinja template's behaviour:
// system / user / assistant / tool turns, tool definitions in the system turn, assistant tool calls in
// the XML form, enable_thinking on/off, and a prefix-stable mode for multi-turn serving (docs/tokenizer.md).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace dg::tok {

using ojson = nlohmann::ordered_json;  // key order matters: tools are rendered with tojson in given order

struct ToolCall {
    std::string name;
    ojson arguments = ojson::object();  // an object; a JSON string holding an object is accepted too
};

struct ChatMessage {
    std::string role;  // system | user | assistant | tool
    std::string content;
    std::optional<std::string> reasoning_content;  // assistant: reasoning, else taken from <think>…</think> in content
    std::vector<ToolCall> tool_calls;              // assistant
    // Prefix-stable mode only (assistant): whether the turn was generated after the thinking prompt
    // ("<think>\n") or the non-thinking one ("<think>\n\n</think>\n\n"); default: thinking when there is
    // reasoning. And, when the server kept them, the exact ids it generated for the turn (after the
    // generation prompt, without the closing <|im_end|>), used verbatim instead of re-encoding.
    std::optional<bool> thinking;
    std::vector<int32_t> generated_ids;
};

struct ChatOptions {
    std::vector<ojson> tools;           // OpenAI-style tool definitions, rendered with tojson
    bool add_generation_prompt = true;
    bool enable_thinking = true;        // false: the prompt ends with an empty, closed think block
    bool preserve_thinking = false;     // keep <think> blocks of every assistant turn (Qwen3.6 kwarg)
    bool prefix_stable = false;         // turn N+1's ids extend turn N's; see docs/tokenizer.md
};

// The prompt text, identical to the official template for prefix_stable = false.
absl::StatusOr<std::string> render_chat(const std::vector<ChatMessage>& messages, const ChatOptions& opt);
// The prompt ids. Without prefix_stable: encode(render_chat(...)) with special tokens parsed (what HF's
// apply_chat_template + encode gives). With prefix_stable: each turn encoded on its own and concatenated.
absl::StatusOr<std::vector<int32_t>> render_chat_ids(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                                                     const ChatOptions& opt);

// Python's json.dumps(x, ensure_ascii=False) — the template's `tojson` filter (", " and ": " separators).
std::string py_json_dumps(const ojson& v);
// Python's str.strip() (Jinja's trim): removes leading and trailing Unicode whitespace.
std::string py_strip(std::string_view s);

}  // namespace dg::tok
