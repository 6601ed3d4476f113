// GPT-2 byte-level alphabet: each byte maps to one printable code point, so BPE vocabularies can be
// stored as text. Printable Latin-1 bytes map to themselves, the other 68 to U+0100.. in byte order.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace dg::tok {

char32_t byte_to_char(uint8_t b);
// -1 when `c` is not in the alphabet.
int char_to_byte(char32_t c);
std::string bytes_to_byte_level(std::string_view bytes);
// false when a char is outside the alphabet (the token is then not a byte-level string).
bool byte_level_to_bytes(std::string_view text, std::string* out);

}  // namespace dg::tok
