#include <gtest/gtest.h>

#include <filesystem>

#include "engine/formats/gguf.h"
#include "engine/tokenizer/detokenize.h"
#include "engine/tokenizer/gguf_vocab.h"
#include "tests/unit/tokenizer/test_util.h"

namespace dg::tok {
namespace {

TEST(GgufVocab, RoundTripsThroughAFileWithPadding) {
    auto t = testing::tiny();
    GgufWriter w;
    ASSERT_TRUE(add_tokenizer_to_gguf(*t, w, 300).ok());
    EXPECT_FALSE(add_tokenizer_to_gguf(*t, w, 10).ok());  // fewer rows than tokens
    std::vector<int64_t> ne = {4, 300};
    ASSERT_TRUE(w.add_tensor("token_embd.weight", ne, DType::F32, [](uint8_t* dst, uint64_t n) { std::memset(dst, 0, n); }).ok());
    std::string path = (std::filesystem::temp_directory_path() / "dg_tok_vocab_test.gguf").string();
    ASSERT_TRUE(w.write(path).ok());

    auto g = GgufFile::open(path);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(*(*g)->get_string("tokenizer.ggml.model"), "gpt2");
    EXPECT_EQ(*(*g)->get_string("tokenizer.ggml.pre"), "qwen35");
    auto tokens = *(*g)->get_string_array("tokenizer.ggml.tokens");
    ASSERT_EQ(tokens.size(), 300u);
    EXPECT_EQ(tokens[299], "[PAD299]");
    EXPECT_EQ((*(*g)->get_int_array("tokenizer.ggml.token_type"))[299], 5);
    EXPECT_EQ(*(*g)->get_uint("tokenizer.ggml.eos_token_id"), 267u);

    auto back = load_tokenizer(path);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ((*back)->vocab_size(), 300);
    const std::string text = "<|im_start|>hello world<think>é<|im_end|>";
    EXPECT_EQ(*(*back)->encode(text), *t->encode(text));
    // Padding rows keep their name (a GGUF written from this tokenizer lists them again) but render as no
    // text, in one-shot and streaming decode alike, as HF tokenizers and llama.cpp do.
    EXPECT_EQ((*back)->token(299), "[PAD299]");
    EXPECT_EQ((*back)->type(299), TokenType::kUnused);
    EXPECT_EQ(*(*back)->decode({299}), "");
    EXPECT_EQ(*(*back)->decode(*t->encode("hello")), *(*back)->decode([&] {
        auto ids = *t->encode("hello");
        ids.insert(ids.begin() + 1, 299);
        ids.push_back(298);
        return ids;
    }()));
    StreamDecoder sd(**back, {});
    auto delta = sd.push(299);
    ASSERT_TRUE(delta.ok()) << delta.status();
    EXPECT_EQ(*delta, "");
    EXPECT_EQ(sd.finish(), "");
    std::filesystem::remove(path);
}

}  // namespace
}  // namespace dg::tok
