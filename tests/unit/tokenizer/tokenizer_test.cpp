#include <gtest/gtest.h>

#include <random>

#include "engine/tokenizer/bpe.h"
#include "engine/tokenizer/unicode.h"
#include "tests/unit/tokenizer/test_util.h"

namespace dg::tok {
namespace {

using testing::tiny;
using Ids = std::vector<int32_t>;

TEST(Tokenizer, BpeMergesByRank) {
    auto t = tiny();
    EXPECT_EQ(*t->encode("hello world"), (Ids{259, 264}));
    EXPECT_EQ(*t->encode("hell"), (Ids{258}));
    EXPECT_EQ(*t->encode("ll"), (Ids{256}));
    EXPECT_EQ(*t->encode("hello hello"), (Ids{259, ' ', 259}));  // " hello" has no " h" merge
    EXPECT_EQ(*t->decode(*t->encode("hello world")), "hello world");
}

TEST(Tokenizer, AddedTokensMatchedBeforeBpe) {
    auto t = tiny();
    // "<|" has a merge, but the added token is matched first; leftmost-longest among added tokens.
    EXPECT_EQ(*t->encode("<|im_start|>hello<|im_end|>"), (Ids{268, 259, 269}));
    EXPECT_EQ(*t->encode("<|im_start"), (Ids{265, 'i', 'm', '_', 's', 't', 'a', 'r', 't'}));
    EXPECT_EQ(*t->encode("<<think>>"), (Ids{'<', 270, '>'}));
}

TEST(Tokenizer, SpecialParsingModes) {
    auto t = tiny();
    const std::string s = "<|im_end|><think>";
    EXPECT_EQ(*t->encode(s, {.special = SpecialTokens::kParse}), (Ids{269, 270}));
    Ids non_special = *t->encode(s, {.special = SpecialTokens::kParseNonSpecial});
    EXPECT_EQ(non_special.back(), 270);
    EXPECT_EQ(non_special.front(), 265);  // "<|" as text
    Ids none = *t->encode(s, {.special = SpecialTokens::kNone});
    EXPECT_EQ(std::count(none.begin(), none.end(), 270), 0);
    EXPECT_EQ(*t->decode(none), s);
}

TEST(Tokenizer, NfcBeforeBpe) {
    auto t = tiny();
    // "e" + U+0301 composes to U+00E9, whose two bytes have a merge (266).
    EXPECT_EQ(*t->encode("e\xCC\x81"), (Ids{266}));
    EXPECT_EQ(*t->encode("\xC3\xA9"), (Ids{266}));
}

TEST(Tokenizer, InvalidUtf8IsAnErrorOrReplaced) {
    auto t = tiny();
    auto r = t->encode("ab\xC3(");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("offset 2"), std::string::npos) << r.status();
    for (const char* bad : {"\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF", "\xE2\x82"}) EXPECT_FALSE(t->encode(bad).ok());
    auto rep = t->encode("ab\xC3(", {.invalid_utf8 = InvalidUtf8::kReplace});
    ASSERT_TRUE(rep.ok());
    EXPECT_EQ(*t->decode(*rep), "ab\xEF\xBF\xBD(");
}

TEST(Tokenizer, DecodeUnknownIdNamesIt) {
    auto t = tiny();
    auto r = t->decode({259, 99999});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("99999"), std::string::npos) << r.status();
    EXPECT_FALSE(t->decode({-1}).ok());
}

TEST(Tokenizer, DecodeLossyOrStrictAndSkipSpecial) {
    auto t = tiny();
    EXPECT_EQ(*t->decode({0xC3}), "\xEF\xBF\xBD");
    EXPECT_FALSE(t->decode({0xC3}, {.strict_utf8 = true}).ok());
    EXPECT_EQ(*t->decode({268, 259, 269, 270}, {.skip_special = true}), "hello<think>");
}

TEST(Tokenizer, LengthLimit) {
    auto t = tiny();
    EXPECT_TRUE(t->encode("hello world", {.max_tokens = 2}).ok());
    auto r = t->encode("hello world x", {.max_tokens = 2});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
    // Text that cannot fit even if every token were the longest is rejected without being read.
    std::string huge(10'000'000, 'a');
    huge[5'000'000] = '\xFF';  // never reached: the limit check comes first
    auto h = t->encode(huge, {.invalid_utf8 = InvalidUtf8::kReplace, .max_tokens = 1000});
    EXPECT_EQ(h.status().code(), absl::StatusCode::kOutOfRange);
}

TEST(Tokenizer, ShortAndLongMergePathsAgree) {
    auto t = tiny();
    std::mt19937 rng(7);
    const std::string alphabet = "helo wrd";
    for (int n : {3, 50, 255, 256, 257, 600, 3000}) {
        for (int rep = 0; rep < 5; ++rep) {
            std::string s;
            for (int i = 0; i < n; ++i) s += alphabet[rng() % (alphabet.size() - 1)];  // no spaces: one word
            Ids a = *t->encode(s);
            EXPECT_EQ(*t->decode(a), s);
        }
    }
    std::string hellos;
    for (int i = 0; i < 400; ++i) hellos += "hello";
    Ids ids = *t->encode(hellos);  // 2000 bytes, long path
    EXPECT_EQ(ids, Ids(400, 259));
    std::string ls(1001, 'l');
    Ids l = *t->encode(ls);  // leftmost-first pairing on a tie: ll ll ... l
    EXPECT_EQ(l.size(), 501u);
    EXPECT_EQ(l.back(), 'l');
}

TEST(Tokenizer, CacheGivesSameAnswers) {
    auto t = tiny();
    for (int i = 0; i < 3; ++i) EXPECT_EQ(*t->encode("hello hello world"), (Ids{259, ' ', 259, 264}));
}

TEST(Unicode, Utf8Helpers) {
    EXPECT_EQ(utf8_find_invalid("abc\xE4\xB8\xAD"), std::string_view::npos);
    EXPECT_EQ(utf8_find_invalid("ab\xE4\xB8"), 2u);
    EXPECT_EQ(utf8_complete_prefix("ab\xE4\xB8"), 2u);
    EXPECT_EQ(utf8_complete_prefix("ab\xE4\xB8\xAD"), 5u);
    EXPECT_EQ(utf8_complete_prefix("ab\xFF"), 3u);  // invalid, not incomplete: nothing to wait for
    EXPECT_EQ(utf8_replace_invalid("a\xF0\x9F\x98" "b"), "a\xEF\xBF\xBD" "b");  // one U+FFFD per maximal subpart
    EXPECT_EQ(utf8_replace_invalid("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
    EXPECT_EQ(*nfc("e\xCC\x81"), "\xC3\xA9");
}

TEST(RealTokenizer, KnownIdsWhenInstalled) {
    std::string path = testing::real_tokenizer_json();
    if (path.empty()) GTEST_SKIP() << "npm reference not installed (run the tokenizer_npm_parity test first)";
    auto t = load_tokenizer(path);
    ASSERT_TRUE(t.ok()) << t.status();
    // Ids printed by the JS port for this text.
    EXPECT_EQ(*(*t)->encode("it's   fine\n\n  ok"), (Ids{275, 594, 256, 6915, 271, 220, 5394}));
    EXPECT_EQ(*(*t)->encode("Hello, my dog is cute<|im_end|> <think>x"),
              (Ids{9707, 11, 847, 5562, 374, 18838, 151645, 220, 151667, 87}));
    EXPECT_EQ((*t)->vocab_size(), 151669);
    EXPECT_EQ((*t)->pre_tokenizer(), PreTokenizer::kQwen2);
}

}  // namespace
}  // namespace dg::tok
