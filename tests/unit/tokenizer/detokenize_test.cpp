#include <gtest/gtest.h>

#include "engine/tokenizer/detokenize.h"
#include "engine/tokenizer/unicode.h"
#include "tests/unit/tokenizer/test_util.h"

namespace dg::tok {
namespace {

using testing::tiny;

std::vector<std::string> stream(const Tokenizer& t, const std::vector<int32_t>& ids, StreamOptions opt,
                                bool* stopped = nullptr) {
    StreamDecoder d(t, std::move(opt));
    std::vector<std::string> out;
    for (int32_t id : ids) out.push_back(*d.push(id));
    out.push_back(d.finish());
    if (stopped) *stopped = d.stopped();
    return out;
}

TEST(StreamDecoder, NeverSplitsACharacter) {
    auto t = tiny();
    // "中" = E4 B8 AD, fed one byte token at a time.
    auto out = stream(*t, {'a', 0xE4, 0xB8, 0xAD, 'b'}, {});
    EXPECT_EQ(out, (std::vector<std::string>{"a", "", "", "\xE4\xB8\xAD", "b", ""}));
    for (auto& d : out) EXPECT_EQ(utf8_find_invalid(d), std::string_view::npos);
}

TEST(StreamDecoder, InvalidBytesBecomeReplacementOnceKnown) {
    auto t = tiny();
    auto out = stream(*t, {0xE4, 'x', 0xE4}, {});
    EXPECT_EQ(out, (std::vector<std::string>{"", "\xEF\xBF\xBDx", "", "\xEF\xBF\xBD"}));
}

TEST(StreamDecoder, StopStringAcrossTokensIsNeverPartiallyEmitted) {
    auto t = tiny();
    // "hello world" as tokens h,e,l,l,o,' ',w,o,r,l,d with stop "o w".
    std::vector<int32_t> ids;
    for (char c : std::string("hello world")) ids.push_back(static_cast<uint8_t>(c));
    bool stopped = false;
    auto out = stream(*t, ids, {.stop = {"o w"}}, &stopped);
    std::string all;
    for (auto& d : out) all += d;
    EXPECT_TRUE(stopped);
    EXPECT_EQ(all, "hell");
    // Every emitted prefix is a prefix of the final text: nothing emitted is later withdrawn.
    std::string acc;
    for (auto& d : out) {
        acc += d;
        EXPECT_EQ(std::string("hell").substr(0, acc.size()), acc);
    }
}

TEST(StreamDecoder, HeldPrefixIsReleasedWhenRuledOut) {
    auto t = tiny();
    auto out = stream(*t, {'a', 'x', 'y', 'b'}, {.stop = {"xyz"}});
    EXPECT_EQ(out, (std::vector<std::string>{"a", "", "", "xyb", ""}));
    auto end = stream(*t, {'a', 'x'}, {.stop = {"xyz"}});
    EXPECT_EQ(end.back(), "x");  // end of stream: the held prefix was not a stop after all
}

TEST(StreamDecoder, SpecialTokensAndUnknownIds) {
    auto t = tiny();
    auto out = stream(*t, {259, 269}, {});
    EXPECT_EQ(out[0] + out[1] + out[2], "hello");
    auto raw = stream(*t, {259, 269}, {.skip_special = false});
    EXPECT_EQ(raw[0] + raw[1] + raw[2], "hello<|im_end|>");
    StreamDecoder d(*t, {});
    auto r = d.push(424242);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("424242"), std::string::npos);
}

TEST(StreamDecoder, IncludeStopAndEarliestMatch) {
    auto t = tiny();
    std::vector<int32_t> ids;
    for (char c : std::string("abcdef")) ids.push_back(c);
    auto out = stream(*t, ids, {.stop = {"def", "cd"}, .include_stop = true});
    std::string all;
    for (auto& d : out) all += d;
    EXPECT_EQ(all, "abcd");
}

}  // namespace
}  // namespace dg::tok
