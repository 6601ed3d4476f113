// Request bodies of the HTTP API whose fields have the wrong JSON type. nlohmann's `obj.value(key, "")`
// throws on a number where a string is expected, and nothing catches it: before the fix one such request
// ended the front process (found by tests/fuzz/fuzz_front_request: {"thinking":{"type":5}} on
// /v1/messages; reproducer in tests/fuzz/regressions/). Each must be a 400 naming the field. The last
// test sends them to a real front and checks that it answers 400 and keeps serving.
#include <gtest/gtest.h>

#include "services/front/anthropic_api.h"
#include "services/front/openai_api.h"
#include "tests/unit/front/cluster.h"

namespace dg::front::http {
namespace {

struct Case {
    const char* body;
    const char* param;
};

const Case kMessages[] = {
    {R"({"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}],"thinking":{"type":5}})", "thinking.type"},
    {R"({"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}],"tool_choice":{"type":[]}})", "tool_choice.type"},
    {R"({"model":"m","max_tokens":8,"messages":[{"role":5,"content":"hi"}]})", "messages[0].role"},
    {R"({"model":"m","max_tokens":8,"messages":[{"role":"user","content":[{"type":1}]}]})", "messages[0].content[0].type"},
    {R"({"model":"m","max_tokens":8,"messages":[{"role":"user","content":[{"type":"text","text":{}}]}]})",
     "messages[0].content[0].text"},
    {R"({"model":"m","max_tokens":8,"messages":[{"role":"assistant","content":[{"type":"thinking","thinking":7}]}]})",
     "messages[0].content[0].thinking"},
    {R"({"model":"m","max_tokens":8,"messages":[{"role":"assistant","content":[{"type":"tool_use","name":false,"input":{}}]}]})",
     "messages[0].content[0].name"},
    {R"({"model":"m","max_tokens":8,"system":[{"type":"text","text":1}],"messages":[{"role":"user","content":"hi"}]})",
     "system[0].text"},
    {R"({"model":"m","max_tokens":8,"system":[{"type":true}],"messages":[{"role":"user","content":"hi"}]})", "system[0].type"},
    {R"({"model":"m","max_tokens":8,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":2}]}]}]})",
     "messages[0].content[0].content[0].type"},
};

TEST(HttpDecode, WrongTypedMessagesFieldsAre400) {
    for (const Case& c : kMessages) {
        SCOPED_TRACE(c.body);
        ParsedMessages out;
        ApiError err;
        EXPECT_FALSE(parse_messages_request(json::parse(c.body), true, &out, &err));
        EXPECT_EQ(err.status, 400);
        EXPECT_EQ(err.param, c.param);
        EXPECT_NE(err.message.find("must be a string"), std::string::npos) << err.message;
    }
}

TEST(HttpDecode, WrongTypedChatContentPartIs400) {
    ParsedGenerate out;
    ApiError err;
    EXPECT_FALSE(parse_chat_request(json::parse(R"({"messages":[{"role":"user","content":[{"type":3,"text":"x"}]}]})"),
                                    true, &out, &err));
    EXPECT_EQ(err.status, 400);
    EXPECT_EQ(err.param, "messages[0].content[0].type");
}

TEST(HttpDecode, RightTypesStillParse) {
    ParsedMessages out;
    ApiError err;
    ASSERT_TRUE(parse_messages_request(
        json::parse(R"({"model":"m","max_tokens":8,"thinking":{"type":"enabled"},"tool_choice":{"type":"auto"},
                        "system":[{"type":"text","text":"s"}],
                        "messages":[{"role":"user","content":[{"type":"text","text":"a"}]},
                                    {"role":"assistant","content":[{"type":"thinking","thinking":"t"},
                                                                   {"type":"tool_use","name":"f","input":{}}]}]})"),
        true, &out, &err))
        << err.message;
    const auto& chat = out.request.prompt().chat();
    EXPECT_TRUE(chat.enable_thinking());
    ASSERT_EQ(chat.messages_size(), 3);
    EXPECT_EQ(chat.messages(0).content(), "s");
    EXPECT_EQ(chat.messages(1).content(), "a");
    EXPECT_EQ(chat.messages(2).reasoning_content(), "t");
    EXPECT_EQ(chat.messages(2).tool_calls(0).name(), "f");
}

}  // namespace
}  // namespace dg::front::http

namespace dg::front::testing {
namespace {

std::string post(int port, const std::string& path, const std::string& body) {
    return http_exchange(port, "POST " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                               "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
}

// The same bodies (and the gateway's own optional booleans) against a real front: 400, and it lives on.
TEST(FrontHttp, WrongTypedFieldsAre400AndTheFrontLivesOn) {
    ClusterOptions o;
    o.workers = 1;
    const int http_port = free_port();
    o.front_args = {"--http-listen", "127.0.0.1:" + std::to_string(http_port)};
    Cluster c(o);
    ASSERT_TRUE(c.wait_ready(1));
    const std::pair<const char*, std::string> bad[] = {
        {"/v1/messages", R"({"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}],"thinking":{"type":5}})"},
        {"/v1/messages", R"({"model":"m","max_tokens":8,"messages":[{"role":"user","content":[{"type":"text","text":1}]}]})"},
        {"/v1/chat/completions", R"({"messages":[{"role":"user","content":[{"type":3}]}]})"},
        {"/detokenize", R"({"tokens":[1,2],"skip_special_tokens":"yes"})"},
        {"/tokenize", R"({"content":"x","with_pieces":1})"},
    };
    for (const auto& [path, body] : bad) {
        SCOPED_TRACE(std::string(path) + " " + body);
        const std::string resp = post(http_port, path, body);
        EXPECT_EQ(resp.rfind("HTTP/1.1 400 ", 0), 0u) << resp;
    }
    // Still serving: a token-id completion.
    const std::string ok = post(http_port, "/v1/completions", R"({"prompt":[1,2,3],"max_tokens":2,"ignore_eos":true})");
    EXPECT_EQ(ok.rfind("HTTP/1.1 200 ", 0), 0u) << ok;
    int st = 0;
    EXPECT_EQ(::waitpid(c.front_pid, &st, WNOHANG), 0) << "the front exited";
}

}  // namespace
}  // namespace dg::front::testing
