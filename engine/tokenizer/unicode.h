// UTF-8 decoding and the Unicode facts the pre-tokenizer and normalizer need (categories, NFC), from ICU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace dg::tok {

// Character classes as the tokenizer regexes see them (Oniguruma semantics, which HF tokenizers uses):
// \p{L}, \p{M}, \p{N} are general-category groups; \s is White_Space (9-D, 85, Zs, Zl, Zp).
enum : uint8_t { kCatL = 1, kCatM = 2, kCatN = 4, kCatWs = 8 };

// Class bits of one code point (a table built once from ICU; 1.1 MB, ~10 ms on first use).
uint8_t char_class(char32_t cp);

// Decodes one code point at s[i]; returns its byte length, or 0 when the bytes there are not valid UTF-8
// (overlong forms, surrogates, values past U+10FFFF and truncated sequences are all invalid).
size_t utf8_decode(std::string_view s, size_t i, char32_t* cp);
void utf8_append(std::string& out, char32_t cp);
// Byte offset of the first invalid sequence, or npos when all of `s` is valid UTF-8.
size_t utf8_find_invalid(std::string_view s);
// Replaces each maximal invalid subsequence with U+FFFD (the WHATWG / Python "replace" convention).
std::string utf8_replace_invalid(std::string_view s);
// Length of the longest prefix of `s` that does not end inside an incomplete (but so far valid) sequence.
size_t utf8_complete_prefix(std::string_view s);

// NFC of valid UTF-8. ASCII-only and already-NFC text is returned unchanged without a copy of work.
absl::StatusOr<std::string> nfc(std::string_view s);
bool is_nfc(std::string_view s);

}  // namespace dg::tok
