// One continuation's output on its way to the client: token ids -> UTF-8-safe text (StreamDecoder, which
// also applies stop strings) -> reasoning vs answer (ReasoningParser, chat with thinking) -> tool calls
// (chat with tools: answer text from "<tool_call>" on goes through tok::ToolCallStream, and the calls stream
// as Delta.tool_calls pieces while they are generated; the text around them is given at the end).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "services/front/protos.h"
#include "deltagate/v1/inference.pb.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/detokenize.h"
#include "engine/tokenizer/reasoning_parser.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/tool_call_parser.h"

namespace dg::front {

struct TrackOptions {
    const tok::Tokenizer* tokenizer = nullptr;  // null: ids only
    bool return_text = true;
    std::vector<std::string> stop;
    bool include_stop = false;
    bool thinking = false;                      // split reasoning (prompt ended inside <think>)
    std::vector<tok::ojson> tools;              // parse tool calls out of the answer
};

class OutputTrack {
public:
    OutputTrack(int index, TrackOptions opt);

    // Adds one sampled token to `delta` (ids, text, reasoning). Returns true when a stop string matched:
    // the continuation is over for the client (finish() must follow).
    bool push(int32_t id, v1::Delta* delta);
    // Flushes held text into `delta` and fills `fin` (tool calls, counts, matched stop).
    void finish(v1::FinishReason reason, int32_t last_token, v1::Delta* delta, v1::Finished* fin);

    bool finished() const { return finished_; }
    int32_t completion_tokens() const { return completion_; }
    int32_t reasoning_tokens() const { return reasoning_tokens_; }
    int index() const { return index_; }
    v1::FinishReason reason() const { return reason_; }

private:
    void add_text(const std::string& text, v1::Delta* delta);
    void add_answer(const std::string& text, v1::Delta* delta);
    void stream_tool_calls(const std::string& text, v1::Delta* delta);

    int index_;
    TrackOptions opt_;
    std::unique_ptr<tok::StreamDecoder> decoder_;
    std::unique_ptr<tok::ReasoningParser> reasoning_;
    std::string answer_tail_;   // tools: answer text that may be the start of "<tool_call>"
    std::unique_ptr<tok::ToolCallStream> tool_calls_;  // tools: from the first "<tool_call>" on
    bool finished_ = false;
    v1::FinishReason reason_ = v1::FINISH_REASON_UNSPECIFIED;
    int32_t completion_ = 0, reasoning_tokens_ = 0;
};

}  // namespace dg::front
