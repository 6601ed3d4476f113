// The OpenAI-compatible encoding of the front's API (style doc §B5; what llama-server and vLLM serve):
// JSON request bodies -> the same deltagate.v1.GenerateRequest a gRPC client sends, and the stream of
// GenerateResponse messages -> chat.completion / text_completion objects, whole or as SSE chunks.
// No I/O here: http_gateway.cpp moves the bytes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"

#include <nlohmann/json.hpp>

#include "services/front/protos.h"
#include "deltagate/v1/inference.pb.h"
#include "engine/tokenizer/tokenizer.h"

namespace dg::front::http {

using json = nlohmann::ordered_json;

// A request the HTTP layer refuses, with what the error body says.
struct ApiError {
    int status = 400;
    std::string message;
    std::string param;  // the request field at fault, or empty
    std::string code;   // optional machine-readable code
    int64_t retry_after_ms = 0;  // > 0: an overload refusal (429) says when to retry (Retry-After header)
};

// {"error":{"message","type","param","code"}}
std::string openai_error_body(const ApiError& e);

// Request decoders of both APIs: sets a 400 on `param` whose message joins `parts`, and returns false so
// a decoder can `return bad_request(...)`.
bool bad_request(ApiError* err, std::string param, auto&&... parts) {
    err->status = 400;
    err->param = std::move(param);
    err->message = absl::StrCat(parts...);
    return false;
}

// An optional string field of a request object: `fallback` when `obj` is not an object, or the key is
// absent or null; a value of another type is a 400 naming `where` + "." + `key`. (nlohmann's
// `obj.value(key, "")` throws on a number there, which would end the process: never use it on input.)
bool opt_string(const json& obj, const char* key, const std::string& where, const char* fallback, std::string* out,
                ApiError* err);

// A response id: `prefix` + 24 random characters of `alphabet` (OpenAI's ids are hex, Anthropic's
// base62).
std::string random_id(const char* prefix, std::string_view alphabet);

struct ParsedGenerate {
    v1::GenerateRequest request;
    bool stream = false;
    bool include_usage = false;  // stream_options.include_usage
    bool chat = false;
    int logprobs_top = -1;       // -1: no logprobs; else top_logprobs (chat) / logprobs (completions)
};

// `prefix_stable_default`: how multi-turn chats render unless the request says
// ("chat_template_kwargs": {"prefix_stable": false} or "prefix_stable": false).
bool parse_chat_request(const json& body, bool prefix_stable_default, ParsedGenerate* out, ApiError* err);
bool parse_completion_request(const json& body, ParsedGenerate* out, ApiError* err);

// Turns the GenerateResponse stream of one request into OpenAI's shapes.
class OpenAIEncoder {
public:
    OpenAIEncoder(const ParsedGenerate& req, const tok::Tokenizer* tok, std::string model);

    // SSE frames ("data: {...}\n\n") for one message of the stream (streaming requests).
    std::string stream_frames(const v1::GenerateResponse& msg);
    // The closing frames: the usage chunk when asked for, then "data: [DONE]".
    std::string stream_end();
    // Folds one message into the whole response (non-streaming requests).
    void add(const v1::GenerateResponse& msg);
    std::string whole_body() const;

private:
    struct Choice {
        std::string content, reasoning;
        json tool_calls = json::array();
        json logprobs = json::array();
        std::string finish_reason;
        bool role_sent = false;
        std::vector<std::string> call_ids;  // streaming: the id given to each tool call, by its index
    };
    std::string new_tool_call_id();
    json logprob_entries(const v1::Delta& d) const;
    json chunk(json choices) const;
    json usage_json() const;
    static std::string frame(const json& j);

    const ParsedGenerate& req_;
    const tok::Tokenizer* tok_;
    std::string model_, id_;
    int64_t created_;
    std::vector<Choice> choices_;
    bool has_final_ = false;
    v1::Final final_;
    int tool_call_seq_ = 0;
};

// "finish_reason" of OpenAI for a v1 FinishReason.
const char* openai_finish_reason(v1::FinishReason r);

}  // namespace dg::front::http
