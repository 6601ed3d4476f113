// Hand-checked pre-tokenizer splits. The Qwen2/3 cases agree with the npm JS port; the Qwen3.5 pattern
// has no npm reference, so its cases are derived by hand from the regex (\p{M} joins letter runs and
// leaves the symbol runs) and each is written beside the Qwen2/3 split to show where they differ.
#include <gtest/gtest.h>

#include "engine/tokenizer/pretokenize.h"

namespace dg::tok {
namespace {

std::vector<std::string> split(PreTokenizer pre, const std::string& s) {
    std::vector<Piece> ps;
    pretokenize(pre, s, ps);
    std::vector<std::string> out;
    size_t at = 0;
    for (auto& p : ps) {
        EXPECT_EQ(p.begin, at) << "pieces must tile the text";
        at = p.end;
        out.push_back(s.substr(p.begin, p.end - p.begin));
    }
    EXPECT_EQ(at, s.size());
    return out;
}

using V = std::vector<std::string>;

TEST(Pretokenize, CommonCasesBothPatterns) {
    for (auto pre : {PreTokenizer::kQwen2, PreTokenizer::kQwen35}) {
        EXPECT_EQ(split(pre, "Hello world"), (V{"Hello", " world"}));
        EXPECT_EQ(split(pre, "it's   fine\n\n  ok"), (V{"it", "'s", "  ", " fine", "\n\n", " ", " ok"}));
        EXPECT_EQ(split(pre, "I'M we'Ve THEY'LL x'd"), (V{"I", "'M", " we", "'Ve", " THEY", "'LL", " x", "'d"}));
        EXPECT_EQ(split(pre, "'sfoo"), (V{"'s", "foo"}));            // contraction wins over the letter run
        EXPECT_EQ(split(pre, "ab12 345"), (V{"ab", "1", "2", " ", "3", "4", "5"}));  // digits one by one
        EXPECT_EQ(split(pre, "x = a->b;\n"), (V{"x", " =", " a", "->", "b", ";\n"}));
        EXPECT_EQ(split(pre, "a  \n  b"), (V{"a", "  \n", " ", " b"}));
        EXPECT_EQ(split(pre, "end   "), (V{"end", "   "}));          // trailing run: \s+(?!\S) takes all
        EXPECT_EQ(split(pre, "\t\tx"), (V{"\t", "\tx"}));
        EXPECT_EQ(split(pre, "\r\n\r\nx"), (V{"\r\n\r\n", "x"}));
        EXPECT_EQ(split(pre, "\n\nx"), (V{"\n\n", "x"}));
        EXPECT_EQ(split(pre, "?!\n\n"), (V{"?!\n\n"}));                // symbols swallow trailing CR/LF
        EXPECT_EQ(split(pre, " ...x"), (V{" ...", "x"}));
        EXPECT_EQ(split(pre, "中文，很好"), (V{"中文", "，很好"}));  // one symbol may prefix a letter run
        EXPECT_EQ(split(pre, "😀😀 x"), (V{"😀😀", " x"}));
        EXPECT_EQ(split(pre, "\xC2\xA0x"), (V{"\xC2\xA0x"}));           // NBSP is whitespace, may prefix letters
        EXPECT_EQ(split(pre, ""), V{});
    }
}

TEST(Pretokenize, Qwen35JoinsMarksIntoLetterRuns) {
    // Devanagari: क ि त ा ब — the vowel signs are Mc.
    const std::string kitab = "\xE0\xA4\x95\xE0\xA4\xBF\xE0\xA4\xA4\xE0\xA4\xBE\xE0\xA4\xAC";
    EXPECT_EQ(split(PreTokenizer::kQwen35, kitab), V{kitab});
    EXPECT_EQ(split(PreTokenizer::kQwen2, kitab),
              (V{"\xE0\xA4\x95", "\xE0\xA4\xBF\xE0\xA4\xA4", "\xE0\xA4\xBE\xE0\xA4\xAC"}));
    // Arabic with harakat (Mn): كَتَبَ
    const std::string kataba = "\xD9\x83\xD9\x8E\xD8\xAA\xD9\x8E\xD8\xA8\xD9\x8E";
    EXPECT_EQ(split(PreTokenizer::kQwen35, kataba), V{kataba});
    EXPECT_EQ(split(PreTokenizer::kQwen2, kataba),
              (V{"\xD9\x83", "\xD9\x8E\xD8\xAA", "\xD9\x8E\xD8\xA8", "\xD9\x8E"}));
    // A decomposed accent (before NFC, or one with no precomposed form).
    EXPECT_EQ(split(PreTokenizer::kQwen35, "xe\xCC\x81y z"), (V{"xe\xCC\x81y", " z"}));
    EXPECT_EQ(split(PreTokenizer::kQwen2, "xe\xCC\x81y z"), (V{"xe", "\xCC\x81y", " z"}));
    // A space before a mark: qwen35 glues space+mark+letters; qwen2 makes " \u0301" a symbol run.
    EXPECT_EQ(split(PreTokenizer::kQwen35, " \xCC\x81" "abc"), (V{" \xCC\x81" "abc"}));
    EXPECT_EQ(split(PreTokenizer::kQwen2, " \xCC\x81" "abc"), (V{" \xCC\x81", "abc"}));
    // Punctuation then a mark then letters: qwen35 takes "." as the one-char prefix of the letter run.
    EXPECT_EQ(split(PreTokenizer::kQwen35, ".\xCC\x81" "a"), (V{".\xCC\x81" "a"}));
    EXPECT_EQ(split(PreTokenizer::kQwen2, ".\xCC\x81" "a"), (V{".\xCC\x81", "a"}));
    // Stacked marks after a digit: digits stay single; the marks form a letter run in qwen35.
    EXPECT_EQ(split(PreTokenizer::kQwen35, "1\xCC\x81\xCC\x82"), (V{"1", "\xCC\x81\xCC\x82"}));
    EXPECT_EQ(split(PreTokenizer::kQwen2, "1\xCC\x81\xCC\x82"), (V{"1", "\xCC\x81\xCC\x82"}));
    // Keycap: digit + VS16 (Mn) + enclosing keycap (Me): same split both ways, different reasons.
    EXPECT_EQ(split(PreTokenizer::kQwen35, "1\xEF\xB8\x8F\xE2\x83\xA3"), (V{"1", "\xEF\xB8\x8F\xE2\x83\xA3"}));
    EXPECT_EQ(split(PreTokenizer::kQwen2, "1\xEF\xB8\x8F\xE2\x83\xA3"), (V{"1", "\xEF\xB8\x8F\xE2\x83\xA3"}));
}

TEST(Pretokenize, OnigurumaSemanticsWhereTheJsPortDeparts) {
    for (auto pre : {PreTokenizer::kQwen2, PreTokenizer::kQwen35}) {
        EXPECT_EQ(split(pre, "x\xC2\x85\xC2\x85y"), (V{"x", "\xC2\x85", "\xC2\x85y"}));       // U+0085 is \s
        EXPECT_EQ(split(pre, "a\xEF\xBB\xBF\xEF\xBB\xBF" "b"), (V{"a", "\xEF\xBB\xBF\xEF\xBB\xBF", "b"}));  // U+FEFF is not
        EXPECT_EQ(split(pre, "IT'\xC5\xBFnice"), (V{"IT", "'\xC5\xBF", "nice"}));            // (?i) folds U+017F to s
    }
}

}  // namespace
}  // namespace dg::tok
