#include <gtest/gtest.h>

#include "engine/tokenizer/reasoning_parser.h"
#include "engine/tokenizer/tool_call_parser.h"

namespace dg::tok {
namespace {

ReasoningDelta feed_by_char(std::string_view text, bool in_reasoning) {
    ReasoningParser p(in_reasoning);
    ReasoningDelta all;
    for (char c : text) {
        auto d = p.push(std::string_view(&c, 1));
        all.reasoning += d.reasoning;
        all.content += d.content;
    }
    auto d = p.finish();
    all.reasoning += d.reasoning;
    all.content += d.content;
    return all;
}

TEST(ReasoningParser, SplitsAtCloseTagAcrossChunks) {
    auto r = feed_by_char("I think so.\n</think>\n\nYes.", true);
    EXPECT_EQ(r.reasoning, "I think so.\n");
    EXPECT_EQ(r.content, "\n\nYes.");
    auto w = parse_reasoning("I think so.\n</think>\n\nYes.", true);
    EXPECT_EQ(w.reasoning, "I think so.");
    EXPECT_EQ(w.content, "Yes.");
}

TEST(ReasoningParser, ModelOpensThinkItself) {
    auto r = feed_by_char("<think>hmm</think>ok", false);
    EXPECT_EQ(r.reasoning, "hmm");
    EXPECT_EQ(r.content, "ok");
    auto plain = feed_by_char("<b>bold</b>", false);  // a tag that only looks like "<think>" at first
    EXPECT_EQ(plain.content, "<b>bold</b>");
}

TEST(ReasoningParser, ToolCallEndsReasoningImplicitly) {
    auto r = feed_by_char("need weather<tool_call>\n<function=f>\n</function>\n</tool_call>", true);
    EXPECT_EQ(r.reasoning, "need weather");
    EXPECT_EQ(r.content, "<tool_call>\n<function=f>\n</function>\n</tool_call>");
}

TEST(ReasoningParser, UnfinishedReasoningAndNoThinking) {
    EXPECT_EQ(feed_by_char("still </thi", true).reasoning, "still </thi");
    EXPECT_EQ(feed_by_char("plain answer", false).content, "plain answer");
}

TEST(ToolCallParser, ParsesXmlCallsWithSchemaTypes) {
    ojson tool = ojson::parse(R"({"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"},"opts":{"type":"object"}}}}})");
    std::string text =
        "Checking.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\n42\n</parameter>\n<parameter=days>\n2\n</parameter>\n"
        "<parameter=opts>\n{\"metric\": true}\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=noop>\n</function>\n</tool_call>";
    auto r = parse_tool_calls(text, {tool});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->content, "Checking.");
    ASSERT_EQ(r->calls.size(), 2u);
    EXPECT_EQ(r->calls[0].name, "get_weather");
    EXPECT_EQ(r->calls[0].arguments["city"], "42");  // schema says string: stays text
    EXPECT_EQ(r->calls[0].arguments["days"], 2);
    EXPECT_EQ(r->calls[0].arguments["opts"]["metric"], true);
    EXPECT_EQ(r->calls[1].name, "noop");
    EXPECT_TRUE(r->calls[1].arguments.empty());
    auto untyped = parse_tool_calls(text);
    EXPECT_EQ(untyped->calls[0].arguments["days"], "2");
}

TEST(ToolCallParser, MultiLineValuesKeepInnerNewlines) {
    auto r = parse_tool_calls("<tool_call>\n<function=w>\n<parameter=code>\nline1\nline2\n</parameter>\n</function>\n</tool_call>");
    EXPECT_EQ(r->calls[0].arguments["code"], "line1\nline2");
}

TEST(ToolCallParser, MalformedIsAnError) {
    EXPECT_FALSE(parse_tool_calls("<tool_call>\n<function=w>\n").ok());
    EXPECT_FALSE(parse_tool_calls("<tool_call>\nno function\n</tool_call>").ok());
    EXPECT_FALSE(parse_tool_calls("<tool_call><function=w><parameter=x>1</function></tool_call>").ok());
    EXPECT_EQ(parse_tool_calls("no calls here")->content, "no calls here");
}

// The incremental parser against the whole-text one (the reference), fed one character at a time as a
// model writes: the same calls, each call's pieces concatenate to its arguments, the name comes before any
// argument and as soon as "<function=NAME>" is complete, each parameter as soon as it closes.
TEST(ToolCallStream, PiecesConcatenateToTheWholeTextParse) {
    ojson tool = ojson::parse(R"({"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"},"opts":{"type":"object"}}}}})");
    const std::string text =
        "Checking.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\n42\n</parameter>\n<parameter=days>\n2\n</parameter>\n"
        "<parameter=opts>\n{\"metric\": true}\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=noop>\n</function>\n</tool_call>";
    const auto whole = parse_tool_calls(text, {tool});
    ASSERT_TRUE(whole.ok());
    ToolCallStream s(std::vector<ojson>{tool});
    std::vector<std::string> name(2), args(2);
    size_t name_at = 0, city_at = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        std::vector<ToolCallFragment> pieces;
        s.push(text.substr(i, 1), &pieces);
        for (const auto& p : pieces) {
            ASSERT_LT(p.index, 2);
            if (!p.name.empty()) {
                EXPECT_TRUE(name[size_t(p.index)].empty());
                EXPECT_TRUE(args[size_t(p.index)].empty()) << "the name comes first";
                name[size_t(p.index)] = p.name;
                if (p.index == 0) name_at = i;
            }
            args[size_t(p.index)] += p.arguments_json;
            if (p.index == 0 && p.arguments_json.find("city") != std::string::npos) city_at = i;
        }
    }
    EXPECT_EQ(name_at, text.find("<function=get_weather>") + std::string("<function=get_weather>").size() - 1);
    EXPECT_EQ(city_at, text.find("</parameter>") + std::string("</parameter>").size() - 1);
    ASSERT_EQ(s.calls().size(), 2u);
    for (size_t k = 0; k < 2; ++k) {
        EXPECT_EQ(name[k], whole->calls[k].name);
        EXPECT_EQ(s.calls()[k].name, whole->calls[k].name);
        EXPECT_EQ(args[k], whole->calls[k].arguments.dump());
        EXPECT_EQ(ojson::parse(args[k]), s.calls()[k].arguments);
    }
    EXPECT_EQ(args[1], "{}");
    EXPECT_EQ(parse_tool_calls(s.rest())->content, whole->content);
}

TEST(ToolCallStream, UnclosedAndMalformedBlocksStayText) {
    ToolCallStream s(std::vector<ojson>{});
    std::vector<ToolCallFragment> pieces;
    s.push("<tool_call>\nno function\n</tool_call>\n<tool_call>\n<function=w>\n<parameter=x>\n1", &pieces);
    EXPECT_TRUE(s.calls().empty());
    ASSERT_EQ(pieces.size(), 1u);  // the second call's name: it may still close well
    EXPECT_EQ(pieces[0].name, "w");
    EXPECT_EQ(s.rest(), "<tool_call>\nno function\n</tool_call>\n<tool_call>\n<function=w>\n<parameter=x>\n1");
    // A "<tool_c" that never completes is text too.
    ToolCallStream t(std::vector<ojson>{});
    t.push("see <tool_c", &pieces);
    EXPECT_EQ(t.rest(), "see <tool_c");
}

}  // namespace
}  // namespace dg::tok
