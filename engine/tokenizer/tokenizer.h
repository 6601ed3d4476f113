// The text <-> token id mapping of a Qwen-family byte-level BPE model (docs/tokenizer.md).
// Loaded from an HF tokenizer.json or from GGUF metadata; immutable and thread-safe once built.
//
//   encode: [added tokens matched first] -> NFC -> pre-tokenizer split -> bytes -> BPE (cached)
//   decode: ids -> token bytes -> UTF-8 (lossy or strict)
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/bpe.h"
#include "engine/tokenizer/pretokenize.h"

namespace dg::tok {

// llama.cpp's token types (tokenizer.ggml.token_type), which also classify tokenizer.json entries.
enum class TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// What a loader hands over. Tokens of type kNormal are byte-level strings (GPT-2 alphabet); the others
// (added tokens, padding) are stored as their literal text.
struct TokenizerSpec {
    std::vector<std::string> tokens;
    std::vector<TokenType> types;
    std::vector<std::pair<std::string, std::string>> merges;  // byte-level strings, in rank order
    PreTokenizer pre = PreTokenizer::kQwen35;
    bool nfc = true;
    std::optional<int32_t> eos_id, pad_id, bos_id;
    std::string source;  // file name, for error messages
};

// Which added tokens are recognised in input text.
enum class SpecialTokens {
    kParse,           // every added token (HF default; what chat templates rely on)
    kParseNonSpecial, // only non-control ones such as <think> (HF split_special_tokens=True, llama.cpp parse_special=false)
    kNone,            // none: the text is taken literally
};

enum class InvalidUtf8 {
    kError,    // InvalidArgument naming the byte offset
    kReplace,  // each maximal invalid subsequence becomes U+FFFD, then encoding proceeds
};

struct EncodeOptions {
    SpecialTokens special = SpecialTokens::kParse;
    InvalidUtf8 invalid_utf8 = InvalidUtf8::kError;
    size_t max_tokens = 0;  // 0: no limit. Over it: OutOfRange, usually before most of the text is read
};

struct DecodeOptions {
    bool skip_special = false;  // drop control tokens (<|im_end|> ...), as HF skip_special_tokens
    bool strict_utf8 = false;   // error on bytes that are not UTF-8 instead of U+FFFD replacement
};

class Tokenizer {
public:
    static absl::StatusOr<std::unique_ptr<Tokenizer>> create(TokenizerSpec spec);

    absl::StatusOr<std::vector<int32_t>> encode(std::string_view text, const EncodeOptions& opt = {}) const;
    // Appends; for callers that build a prompt from pieces.
    absl::Status encode_append(std::string_view text, const EncodeOptions& opt, std::vector<int32_t>& out) const;

    absl::StatusOr<std::string> decode(const std::vector<int32_t>& ids, const DecodeOptions& opt = {}) const;
    // The raw bytes of one token (no UTF-8 repair); NotFound-style error for ids outside the vocabulary.
    // Unused tokens (GGUF padding rows) have no bytes: they decode and stream as nothing, as in HF and llama.cpp.
    absl::StatusOr<std::string_view> token_bytes(int32_t id) const;

    int32_t vocab_size() const { return static_cast<int32_t>(tokens_.size()); }
    const std::string& token(int32_t id) const { return tokens_[id]; }  // as stored (byte-level for normal)
    TokenType type(int32_t id) const { return types_[id]; }
    std::optional<int32_t> find(std::string_view token) const;           // stored form (added: literal text)
    bool is_special(int32_t id) const { return id >= 0 && id < vocab_size() && types_[id] == TokenType::kControl; }
    const std::vector<std::pair<std::string, std::string>>& merges() const { return merges_; }
    PreTokenizer pre_tokenizer() const { return pre_; }
    std::optional<int32_t> eos_id() const { return eos_id_; }
    std::optional<int32_t> pad_id() const { return pad_id_; }
    std::optional<int32_t> bos_id() const { return bos_id_; }
    const std::string& source() const { return source_; }
    // Longest token in bytes: bounds how much text one token can cover (used for early length checks).
    size_t max_token_bytes() const { return max_token_bytes_; }

    // Ordinary-text encoding of one section between added tokens (NFC, split, BPE). Valid UTF-8 only.
    absl::Status encode_ordinary(std::string_view text, std::vector<int32_t>& out, size_t max_tokens) const;

private:
    Tokenizer() = default;
    struct Added {
        std::string text;
        int32_t id;
        bool special;
    };
    // Leftmost-longest match of an added token at or after `from`; returns npos when none.
    size_t next_added(std::string_view text, size_t from, SpecialTokens mode, const Added** hit) const;

    std::vector<std::string> tokens_;
    std::vector<std::string> bytes_;  // decoded bytes of each token
    std::vector<TokenType> types_;
    std::vector<std::pair<std::string, std::string>> merges_;
    absl::flat_hash_map<std::string, int32_t> by_token_;
    std::vector<Added> added_;                    // sorted longest first
    std::vector<std::vector<uint16_t>> added_by_byte_;  // first byte -> indices into added_
    std::unique_ptr<Bpe> bpe_;
    PreTokenizer pre_ = PreTokenizer::kQwen35;
    bool nfc_ = true;
    std::optional<int32_t> eos_id_, pad_id_, bos_id_;
    std::string source_;
    size_t max_token_bytes_ = 1;
};

// Loads tokenizer.json or .gguf, chosen by content (GGUF magic) rather than by the file name.
absl::StatusOr<std::unique_ptr<Tokenizer>> load_tokenizer(const std::string& path);
absl::StatusOr<std::unique_ptr<Tokenizer>> load_tokenizer_json(const std::string& path);
absl::StatusOr<std::unique_ptr<Tokenizer>> parse_tokenizer_json(std::string_view json, const std::string& source);

}  // namespace dg::tok
