// Expected strings follow the official Qwen3.5 template (tokenizer_config.json chat_template) rule by rule.
#include <gtest/gtest.h>

#include "engine/tokenizer/chat_template.h"
#include "tests/unit/tokenizer/test_util.h"

namespace dg::tok {
namespace {

ChatMessage msg(std::string role, std::string content) { return ChatMessage{.role = role, .content = content}; }

TEST(ChatTemplate, UserThinkingOnAndOff) {
    std::vector<ChatMessage> m = {msg("user", "Hi")};
    EXPECT_EQ(*render_chat(m, {}), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n");
    EXPECT_EQ(*render_chat(m, {.enable_thinking = false}),
              "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    EXPECT_EQ(*render_chat(m, {.add_generation_prompt = false}), "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, SystemIsTrimmed) {
    std::vector<ChatMessage> m = {msg("system", "  Be brief.\n"), msg("user", " Hi ")};
    EXPECT_EQ(*render_chat(m, {.add_generation_prompt = false}),
              "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, ToolsGoInTheSystemTurnWithSystemTextAfter) {
    ojson tool = ojson::parse(R"({"type":"function","function":{"name":"get_weather","description":"Weather é","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}})");
    std::vector<ChatMessage> m = {msg("system", "Be brief."), msg("user", "Weather?")};
    std::string s = *render_chat(m, {.tools = {tool}, .add_generation_prompt = false});
    const std::string want_head =
        "<|im_start|>system\n# Tools\n\nYou have access to the following functions:\n\n<tools>\n"
        R"({"type": "function", "function": {"name": "get_weather", "description": "Weather é", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})"
        "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n<tool_call>\n";
    EXPECT_EQ(s.substr(0, want_head.size()), want_head);
    EXPECT_NE(s.find("</IMPORTANT>\n\nBe brief.<|im_end|>\n<|im_start|>user\nWeather?<|im_end|>\n"), std::string::npos) << s;
}

TEST(ChatTemplate, AssistantReasoningKeptOnlyAfterLastQuery) {
    ChatMessage a1 = msg("assistant", "<think>\nplan A\n</think>\n\nAnswer A");
    std::vector<ChatMessage> m = {msg("user", "Q1"), a1, msg("user", "Q2"),
                                  ChatMessage{.role = "assistant", .content = "Answer B", .reasoning_content = "plan B"}};
    EXPECT_EQ(*render_chat(m, {.add_generation_prompt = false}),
              "<|im_start|>user\nQ1<|im_end|>\n"
              "<|im_start|>assistant\nAnswer A<|im_end|>\n"
              "<|im_start|>user\nQ2<|im_end|>\n"
              "<|im_start|>assistant\n<think>\nplan B\n</think>\n\nAnswer B<|im_end|>\n");
    std::string kept = *render_chat(m, {.add_generation_prompt = false, .preserve_thinking = true});
    EXPECT_NE(kept.find("<|im_start|>assistant\n<think>\nplan A\n</think>\n\nAnswer A<|im_end|>"), std::string::npos);
}

TEST(ChatTemplate, ToolCallsAndToolResponses) {
    ChatMessage call{.role = "assistant", .content = "Let me check."};
    call.tool_calls.push_back({"get_weather", ojson::parse(R"({"city":"Paris","days":2,"opts":{"metric":true}})")});
    call.tool_calls.push_back({"get_time", R"({"tz":"CET"})"});  // arguments as a JSON string
    std::vector<ChatMessage> m = {msg("user", "Weather?"), call, msg("tool", "{\"temp\": 20}"), msg("tool", "12:00")};
    EXPECT_EQ(*render_chat(m, {}),
              "<|im_start|>user\nWeather?<|im_end|>\n"
              "<|im_start|>assistant\n<think>\n\n</think>\n\nLet me check.\n\n"
              "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
              "<parameter=days>\n2\n</parameter>\n<parameter=opts>\n{\"metric\": true}\n</parameter>\n</function>\n</tool_call>\n"
              "<tool_call>\n<function=get_time>\n<parameter=tz>\nCET\n</parameter>\n</function>\n</tool_call><|im_end|>\n"
              "<|im_start|>user\n<tool_response>\n{\"temp\": 20}\n</tool_response>\n<tool_response>\n12:00\n</tool_response><|im_end|>\n"
              "<|im_start|>assistant\n<think>\n");
}

TEST(ChatTemplate, Errors) {
    EXPECT_FALSE(render_chat({}, {}).ok());
    EXPECT_FALSE(render_chat({msg("user", "a"), msg("system", "b")}, {}).ok());
    EXPECT_FALSE(render_chat({msg("assistant", "a")}, {}).ok());  // no user query
    EXPECT_FALSE(render_chat({msg("user", "a"), msg("robot", "b")}, {}).ok());
}

TEST(ChatTemplate, PrefixStableIdsExtendTheLastTurn) {
    auto t = testing::tiny();
    for (bool thinking : {true, false}) {
        ChatOptions opt{.enable_thinking = thinking, .prefix_stable = true};
        std::vector<ChatMessage> conv = {msg("system", "sys"), msg("user", "hello")};
        auto turn1 = *render_chat_ids(*t, conv, opt);
        ChatMessage reply{.role = "assistant", .content = "hello world"};
        if (thinking) reply.reasoning_content = "\nhello\n";
        reply.thinking = thinking;
        conv.push_back(reply);
        conv.push_back(msg("user", "world"));
        auto turn2 = *render_chat_ids(*t, conv, opt);
        ASSERT_GE(turn2.size(), turn1.size());
        EXPECT_TRUE(std::equal(turn1.begin(), turn1.end(), turn2.begin())) << "thinking=" << thinking;
        // The official rendering strips the earlier think block, so its ids do not extend turn 1's.
        auto official = *render_chat_ids(*t, conv, {.enable_thinking = thinking});
        if (thinking) EXPECT_FALSE(std::equal(turn1.begin(), turn1.end(), official.begin()));
        // Verbatim generated ids are used as given.
        conv[2].generated_ids = {259, 271, 264};
        auto turn2b = *render_chat_ids(*t, conv, opt);
        EXPECT_TRUE(std::equal(turn1.begin(), turn1.end(), turn2b.begin()));
        EXPECT_EQ(std::vector<int32_t>(turn2b.begin() + turn1.size(), turn2b.begin() + turn1.size() + 3),
                  (std::vector<int32_t>{259, 271, 264}));
    }
}

TEST(PyJson, MatchesPythonJsonDumps) {
    EXPECT_EQ(py_json_dumps(ojson::parse(R"({"b":1,"a":[1.5,true,null,"x\"\n\u0001é"]})")),
              "{\"b\": 1, \"a\": [1.5, true, null, \"x\\\"\\n\\u0001é\"]}");
    EXPECT_EQ(py_strip("\xE3\x80\x80 a b\x1f\n"), "a b");
}

}  // namespace
}  // namespace dg::tok
