// The Anthropic Messages encoding of the front's API (POST /v1/messages, what llama-server also serves and
// agent tools built on Anthropic's SDK use): the request becomes the same deltagate.v1.GenerateRequest a
// gRPC client sends (a chat prompt), and the GenerateResponse stream becomes a Message (content blocks:
// thinking, text, tool_use) or its SSE events (message_start ... message_stop). No I/O here.
#pragma once

#include <string>

#include "services/front/openai_api.h"

namespace dg::front::http {

// {"type":"error","error":{"type","message"}}
std::string anthropic_error_body(const ApiError& e);

struct ParsedMessages {
    v1::GenerateRequest request;
    bool stream = false;
};

bool parse_messages_request(const json& body, bool prefix_stable_default, ParsedMessages* out, ApiError* err);

class AnthropicEncoder {
public:
    AnthropicEncoder(const ParsedMessages& req, std::string model);

    std::string stream_frames(const v1::GenerateResponse& msg);
    std::string stream_end();
    std::string error_frame(const ApiError& e) const;
    void add(const v1::GenerateResponse& msg);
    std::string whole_body() const;

private:
    enum class Block { kNone, kThinking, kText, kToolUse };
    std::string open_block(Block b);
    std::string close_block();
    json usage_json() const;
    const char* stop_reason() const;
    static std::string event(const char* name, const json& data);

    const ParsedMessages& req_;
    std::string model_, id_;
    // Whole response
    std::string text_, thinking_;
    json tool_uses_ = json::array();
    // Stream state
    bool started_ = false;
    Block open_ = Block::kNone;
    int next_block_ = 0;
    // Both
    v1::FinishReason finish_ = v1::FINISH_REASON_UNSPECIFIED;
    std::string matched_stop_;
    bool has_final_ = false;
    v1::Final final_;
    int tool_seq_ = 0;
    int open_tool_call_ = -1;  // streaming: the continuation's tool call the open tool_use block holds
};

}  // namespace dg::front::http
