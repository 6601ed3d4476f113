// The pre-tokenizer split: a hand-written matcher equivalent to the Split regex in the tokenizer file
// (leftmost-first alternation as Oniguruma runs it; RE2 has no `(?!\S)` lookahead, and a direct matcher
// is several times faster than any regex engine here).
//
// Qwen2/Qwen3 (`tokenizer.ggml.pre` = qwen2):
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// Qwen3.5 (`qwen35`): the same with \p{M} joined to the letter runs and excluded from the symbol runs:
//   ...|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|...
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace dg::tok {

enum class PreTokenizer { kQwen2, kQwen35 };

struct Piece {
    size_t begin, end;  // byte offsets into the text
};

// Splits valid UTF-8 `text` into pre-tokens (every byte lands in exactly one piece). Appends to `out`.
void pretokenize(PreTokenizer kind, std::string_view text, std::vector<Piece>& out);

}  // namespace dg::tok
