// Splits generated text into reasoning and answer. Qwen3.5's thinking prompt already contains "<think>\n",
// so generated output normally holds only the closing "</think>"; a model that opens "<think>" itself is
// handled too. "<tool_call>" before "</think>" ends the reasoning implicitly (Qwen3.5 does emit this;
// vLLM's parser treats it the same way), and the tool call stays in the answer.
#pragma once

#include <string>
#include <string_view>

namespace dg::tok {

struct ReasoningDelta {
    std::string reasoning;
    std::string content;
};

class ReasoningParser {
public:
    // `in_reasoning`: the prompt ended inside a think block (enable_thinking = true).
    explicit ReasoningParser(bool in_reasoning) : in_reasoning_(in_reasoning), at_start_(true) {}

    // Streaming: text in (any split, e.g. a StreamDecoder's deltas), classified text out. A tag split
    // across calls is held back until it is complete or ruled out.
    ReasoningDelta push(std::string_view text);
    ReasoningDelta finish();
    bool in_reasoning() const { return in_reasoning_; }

private:
    ReasoningDelta drain(bool final);
    std::string buf_;
    bool in_reasoning_;
    bool at_start_;
};

// Whole-text form: reasoning without the newlines the template puts around it, and the answer.
ReasoningDelta parse_reasoning(std::string_view text, bool in_reasoning);

}  // namespace dg::tok
