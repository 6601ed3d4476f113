#include "engine/tokenizer/tokenizer.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "engine/status.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/unicode.h"

namespace dg::tok {

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::create(TokenizerSpec spec) {
    const std::string& src = spec.source;
    if (spec.tokens.empty()) return absl::InvalidArgumentError(absl::StrFormat("%s: empty vocabulary", src));
    if (spec.tokens.size() != spec.types.size())
        return absl::InvalidArgumentError(absl::StrFormat("%s: %d tokens but %d token types", src,
                                                          spec.tokens.size(), spec.types.size()));
    if (spec.tokens.size() > INT32_MAX / 2)
        return absl::InvalidArgumentError(absl::StrFormat("%s: vocabulary too large", src));
    auto t = std::unique_ptr<Tokenizer>(new Tokenizer());
    t->tokens_ = std::move(spec.tokens);
    t->types_ = std::move(spec.types);
    t->merges_ = std::move(spec.merges);
    t->pre_ = spec.pre;
    t->nfc_ = spec.nfc;
    t->source_ = src;
    const int32_t n = static_cast<int32_t>(t->tokens_.size());
    for (auto* id : {&spec.eos_id, &spec.pad_id, &spec.bos_id})
        if (*id && (**id < 0 || **id >= n))
            return absl::InvalidArgumentError(absl::StrFormat("%s: special token id %d outside the vocabulary", src, **id));
    t->eos_id_ = spec.eos_id;
    t->pad_id_ = spec.pad_id;
    t->bos_id_ = spec.bos_id;

    t->bytes_.resize(n);
    t->by_token_.reserve(n);
    for (int32_t id = 0; id < n; ++id) {
        const std::string& tok = t->tokens_[id];
        const TokenType type = t->types_[id];
        if (type == TokenType::kNormal) {
            if (!byte_level_to_bytes(tok, &t->bytes_[id]) || tok.empty())
                return absl::InvalidArgumentError(absl::StrFormat(
                    "%s: token %d '%s' is not a byte-level BPE string", src, id, absl::CHexEscape(tok)));
        } else if (type == TokenType::kUnused) {
            // Rows the tokenizer does not define ("[PAD151918]": embedding rows past the vocabulary, which a
            // model can still sample). HF tokenizers has no such id and llama.cpp skips unused tokens, so
            // both render it as no text; the stored name stays in token() for GGUF round trips.
            t->bytes_[id].clear();
        } else {
            t->bytes_[id] = tok;
            if ((type == TokenType::kControl || type == TokenType::kUserDefined) && !tok.empty())
                t->added_.push_back({tok, id, type == TokenType::kControl});
        }
        t->max_token_bytes_ = std::max(t->max_token_bytes_, t->bytes_[id].size());
        // The first id wins for a duplicated string, which is what lookups by text should return.
        t->by_token_.try_emplace(tok, id);
    }

    std::stable_sort(t->added_.begin(), t->added_.end(),
                     [](const Added& a, const Added& b) { return a.text.size() > b.text.size(); });
    if (t->added_.size() > UINT16_MAX)
        return absl::InvalidArgumentError(absl::StrFormat("%s: too many added tokens", src));
    t->added_by_byte_.resize(256);
    for (size_t i = 0; i < t->added_.size(); ++i)
        t->added_by_byte_[static_cast<uint8_t>(t->added_[i].text[0])].push_back(static_cast<uint16_t>(i));

    std::array<int32_t, 256> byte_ids{};
    for (int b = 0; b < 256; ++b) {
        std::string s = bytes_to_byte_level(std::string(1, static_cast<char>(b)));
        auto it = t->by_token_.find(s);
        if (it == t->by_token_.end() || t->types_[it->second] != TokenType::kNormal)
            return absl::InvalidArgumentError(
                absl::StrFormat("%s: vocabulary lacks the byte token for 0x%02x ('%s')", src, b, s));
        byte_ids[b] = it->second;
    }
    std::vector<Bpe::Merge> merges;
    merges.reserve(t->merges_.size());
    for (size_t r = 0; r < t->merges_.size(); ++r) {
        const auto& [a, b] = t->merges_[r];
        auto ia = t->by_token_.find(a), ib = t->by_token_.find(b), ic = t->by_token_.find(a + b);
        if (ia == t->by_token_.end() || ib == t->by_token_.end() || ic == t->by_token_.end())
            return absl::InvalidArgumentError(absl::StrFormat(
                "%s: merge %d ('%s' '%s') refers to a token missing from the vocabulary", src, r, a, b));
        merges.push_back({ia->second, ib->second, ic->second});
    }
    DG_ASSIGN_OR_RETURN(t->bpe_, Bpe::create(byte_ids, merges));
    return t;
}

std::optional<int32_t> Tokenizer::find(std::string_view token) const {
    auto it = by_token_.find(absl::string_view(token.data(), token.size()));
    if (it == by_token_.end()) return std::nullopt;
    return it->second;
}

size_t Tokenizer::next_added(std::string_view text, size_t from, SpecialTokens mode, const Added** hit) const {
    if (mode == SpecialTokens::kNone || added_.empty()) return std::string_view::npos;
    for (size_t i = from; i < text.size(); ++i) {
        const auto& cands = added_by_byte_[static_cast<uint8_t>(text[i])];
        for (uint16_t k : cands) {  // longest first, so the first hit is the leftmost-longest match
            const Added& a = added_[k];
            if (mode == SpecialTokens::kParseNonSpecial && a.special) continue;
            if (text.compare(i, a.text.size(), a.text) == 0) {
                *hit = &a;
                return i;
            }
        }
    }
    return std::string_view::npos;
}

static absl::Status too_long(size_t max_tokens) {
    return absl::OutOfRangeError(absl::StrFormat("input is longer than the limit of %d tokens", max_tokens));
}

absl::Status Tokenizer::encode_ordinary(std::string_view text, std::vector<int32_t>& out, size_t limit) const {
    if (text.empty()) return absl::OkStatus();
    std::string normalized;
    if (nfc_ && !is_nfc(text)) {
        DG_ASSIGN_OR_RETURN(normalized, nfc(text));
        text = normalized;
    }
    thread_local std::vector<Piece> pieces;
    pieces.clear();
    pretokenize(pre_, text, pieces);
    for (const Piece& p : pieces) {
        bpe_->encode_word(text.substr(p.begin, p.end - p.begin), out);
        if (limit && out.size() > limit) return too_long(limit);
    }
    return absl::OkStatus();
}

absl::Status Tokenizer::encode_append(std::string_view text, const EncodeOptions& opt,
                                      std::vector<int32_t>& out) const {
    // No token covers more than max_token_bytes_ bytes, so longer text cannot fit: reject it unread.
    if (opt.max_tokens && text.size() / max_token_bytes_ > opt.max_tokens) return too_long(opt.max_tokens);
    std::string repaired;
    if (size_t bad = utf8_find_invalid(text); bad != std::string_view::npos) {
        if (opt.invalid_utf8 == InvalidUtf8::kError)
            return absl::InvalidArgumentError(absl::StrFormat(
                "text is not valid UTF-8: byte 0x%02x at offset %d", static_cast<uint8_t>(text[bad]), bad));
        repaired = utf8_replace_invalid(text);
        text = repaired;
    }
    const size_t base = out.size();
    const size_t limit = opt.max_tokens ? base + opt.max_tokens : 0;
    size_t pos = 0;
    while (pos < text.size()) {
        const Added* hit = nullptr;
        size_t at = next_added(text, pos, opt.special, &hit);
        size_t end = at == std::string_view::npos ? text.size() : at;
        DG_RETURN_IF_ERROR(encode_ordinary(text.substr(pos, end - pos), out, limit));
        if (!hit) break;
        out.push_back(hit->id);
        if (limit && out.size() > limit) return too_long(opt.max_tokens);
        pos = at + hit->text.size();
    }
    return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::encode(std::string_view text, const EncodeOptions& opt) const {
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 8);
    DG_RETURN_IF_ERROR(encode_append(text, opt, ids));
    return ids;
}

absl::StatusOr<std::string_view> Tokenizer::token_bytes(int32_t id) const {
    if (id < 0 || id >= vocab_size())
        return absl::InvalidArgumentError(
            absl::StrFormat("token id %d is outside the vocabulary (0..%d)", id, vocab_size() - 1));
    return std::string_view(bytes_[id]);
}

absl::StatusOr<std::string> Tokenizer::decode(const std::vector<int32_t>& ids, const DecodeOptions& opt) const {
    std::string out;
    for (int32_t id : ids) {
        DG_ASSIGN_OR_RETURN(std::string_view b, token_bytes(id));
        if (opt.skip_special && types_[id] == TokenType::kControl) continue;
        out.append(b);
    }
    if (size_t bad = utf8_find_invalid(out); bad != std::string_view::npos) {
        if (opt.strict_utf8)
            return absl::InvalidArgumentError(
                absl::StrFormat("decoded bytes are not valid UTF-8 at offset %d", bad));
        return utf8_replace_invalid(out);
    }
    return out;
}

}  // namespace dg::tok
