// The HTTP encodings of a GenerateResponse stream (openai_api.h, anthropic_api.h) where the random tiny
// model cannot take the integration tests: a continuation with tool calls, as OutputTrack reports them (pieces
// in Delta.tool_calls while generated, then Finished.tool_calls whole, finish reason TOOL_CALLS). Also
// request parsing's refusals.
#include <gtest/gtest.h>

#include "services/front/anthropic_api.h"
#include "services/front/openai_api.h"

namespace dg::front::http {
namespace {

v1::ToolCallDelta* piece(v1::GenerateResponse& m, int index, const std::string& name, const std::string& args) {
    auto* t = m.mutable_delta()->add_tool_calls();
    t->set_index(index);
    t->set_name(name);
    t->set_arguments_json(args);
    return t;
}

// Text, then get_weather streamed in three pieces (two of them merged into one Delta, as GenerateCall
// merges deltas waiting for the client), then the end.
std::vector<v1::GenerateResponse> tool_call_stream() {
    std::vector<v1::GenerateResponse> out(5);
    out[0].mutable_delta()->set_text("Let me check.");
    piece(out[1], 0, "get_weather", "");
    piece(out[2], 0, "", R"({"city":"Paris")");
    piece(out[2], 0, "", "}");
    out[2].mutable_delta()->add_token_ids(7);
    auto* f = out[3].mutable_finished();
    f->set_finish_reason(v1::FINISH_REASON_TOOL_CALLS);
    auto* tc = f->add_tool_calls();
    tc->set_name("get_weather");
    tc->set_arguments_json(R"({"city":"Paris"})");
    auto* u = out[4].mutable_final()->mutable_usage();
    u->set_prompt_tokens(40);
    u->set_cached_tokens_device(32);
    u->set_completion_tokens(20);
    return out;
}

// The JSON objects of "data: " lines.
std::vector<json> sse_data(const std::string& s) {
    std::vector<json> out;
    size_t pos = 0;
    while ((pos = s.find("data: ", pos)) != std::string::npos) {
        const size_t end = s.find("\n\n", pos);
        const std::string d = s.substr(pos + 6, end - pos - 6);
        if (d != "[DONE]") out.push_back(json::parse(d));
        pos = end;
    }
    return out;
}

TEST(HttpEncoding, OpenAIToolCallsWholeAndStreamed) {
    ParsedGenerate req;
    ApiError err;
    ASSERT_TRUE(parse_chat_request(json::parse(R"({"messages":[{"role":"user","content":"hi"}],"stream":true,
        "stream_options":{"include_usage":true}})"), true, &req, &err)) << err.message;
    OpenAIEncoder whole(req, nullptr, "m");
    for (const auto& m : tool_call_stream()) whole.add(m);
    const json w = json::parse(whole.whole_body());
    const json& msg = w["choices"][0]["message"];
    EXPECT_EQ(w["choices"][0]["finish_reason"], "tool_calls");
    ASSERT_EQ(msg["tool_calls"].size(), 1u);
    EXPECT_EQ(msg["tool_calls"][0]["type"], "function");
    EXPECT_EQ(msg["tool_calls"][0]["function"]["name"], "get_weather");
    EXPECT_EQ(json::parse(msg["tool_calls"][0]["function"]["arguments"].get<std::string>())["city"], "Paris");
    EXPECT_EQ(w["usage"]["prompt_tokens_details"]["cached_tokens"], 32);

    OpenAIEncoder streamed(req, nullptr, "m");
    std::string sse;
    for (const auto& m : tool_call_stream()) sse += streamed.stream_frames(m);
    sse += streamed.stream_end();
    ASSERT_TRUE(sse.ends_with("data: [DONE]\n\n"));
    const auto chunks = sse_data(sse);
    ASSERT_EQ(chunks.size(), 5u);  // content, the call's name, its arguments (one chunk), finish, usage
    EXPECT_EQ(chunks[0]["choices"][0]["delta"]["content"], "Let me check.");
    const json& first = chunks[1]["choices"][0]["delta"]["tool_calls"];
    ASSERT_EQ(first.size(), 1u);
    EXPECT_EQ(first[0]["index"], 0);
    EXPECT_EQ(first[0]["type"], "function");
    EXPECT_TRUE(first[0]["id"].get<std::string>().starts_with("call_"));
    EXPECT_EQ(first[0]["function"]["name"], "get_weather");
    EXPECT_EQ(first[0]["function"]["arguments"], "");
    const json& rest = chunks[2]["choices"][0]["delta"]["tool_calls"];
    ASSERT_EQ(rest.size(), 1u);
    EXPECT_EQ(rest[0]["index"], 0);
    EXPECT_FALSE(rest[0].contains("id"));
    EXPECT_EQ(rest[0]["function"]["arguments"], R"({"city":"Paris"})");
    EXPECT_EQ(chunks[3]["choices"][0]["finish_reason"], "tool_calls");
    EXPECT_FALSE(chunks[3]["choices"][0]["delta"].contains("tool_calls")) << "streamed once, not again at the end";
    EXPECT_TRUE(chunks[4]["choices"].empty());
    EXPECT_EQ(chunks[4]["usage"]["completion_tokens"], 20);
}

TEST(HttpEncoding, AnthropicToolUseWholeAndStreamed) {
    ParsedMessages req;
    ApiError err;
    ASSERT_TRUE(parse_messages_request(
        json::parse(R"({"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]})"), true, &req, &err))
        << err.message;
    AnthropicEncoder whole(req, "m");
    for (const auto& m : tool_call_stream()) whole.add(m);
    const json w = json::parse(whole.whole_body());
    EXPECT_EQ(w["stop_reason"], "tool_use");
    ASSERT_EQ(w["content"].size(), 2u);
    EXPECT_EQ(w["content"][1]["type"], "tool_use");
    EXPECT_EQ(w["content"][1]["input"]["city"], "Paris");
    EXPECT_EQ(w["usage"]["input_tokens"], 8);
    EXPECT_EQ(w["usage"]["cache_read_input_tokens"], 32);

    AnthropicEncoder streamed(req, "m");
    std::string sse;
    for (const auto& m : tool_call_stream()) sse += streamed.stream_frames(m);
    sse += streamed.stream_end();
    std::vector<std::string> events;
    for (size_t p = 0; (p = sse.find("event: ", p)) != std::string::npos; ++p)
        events.push_back(sse.substr(p + 7, sse.find('\n', p) - p - 7));
    const std::vector<std::string> want = {"message_start",       "content_block_start", "content_block_delta",
                                           "content_block_stop",  "content_block_start", "content_block_delta",
                                           "content_block_delta", "content_block_stop",  "message_delta",
                                           "message_stop"};
    EXPECT_EQ(events, want);
    EXPECT_NE(sse.find(R"("name":"get_weather")"), std::string::npos) << sse;
    EXPECT_NE(sse.find(R"("partial_json":"{\"city\":\"Paris\"")"), std::string::npos) << sse;
    EXPECT_NE(sse.find(R"("partial_json":"}")"), std::string::npos) << sse;
    EXPECT_NE(sse.find(R"("stop_reason":"tool_use")"), std::string::npos);
}

TEST(HttpEncoding, RefusesWhatItCannotHonour) {
    ParsedGenerate req;
    ApiError err;
    const char* bad[][2] = {
        {R"({"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema"}})", "response_format"},
        {R"({"messages":[{"role":"user","content":"x"}],"tool_choice":"required"})", "tool_choice"},
        {R"({"messages":[{"role":"user","content":"x"}],"logit_bias":{"1":5}})", "logit_bias"},
        {R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]})", "messages[0].content"},
        {R"({"messages":[]})", "messages"},
        {R"({"messages":[{"role":"user","content":"x"}],"max_tokens":0})", "max_tokens"},
        {R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":2})", "top_logprobs"},
    };
    for (const auto& [body, param] : bad) {
        ParsedGenerate r;
        EXPECT_FALSE(parse_chat_request(json::parse(body), true, &r, &err)) << body;
        EXPECT_EQ(err.param, param) << body;
        EXPECT_EQ(err.status, 400);
        const json e = json::parse(openai_error_body(err));
        EXPECT_EQ(e["error"]["type"], "invalid_request_error");
    }
}

}  // namespace
}  // namespace dg::front::http
