#include "engine/tokenizer/byte_level.h"

#include "engine/tokenizer/unicode.h"

namespace dg::tok {

namespace {

struct Tables {
    std::array<char32_t, 256> to_char{};
    std::array<int16_t, 512> to_byte{};  // indexed by code point; every mapped char is below U+0200
    Tables() {
        to_byte.fill(-1);
        int next = 0;
        for (int b = 0; b < 256; ++b) {
            bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            to_char[b] = keep ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
            to_byte[to_char[b]] = static_cast<int16_t>(b);
        }
    }
};

const Tables& tables() {
    static const Tables t;
    return t;
}

}  // namespace

char32_t byte_to_char(uint8_t b) { return tables().to_char[b]; }

int char_to_byte(char32_t c) { return c < 512 ? tables().to_byte[c] : -1; }

std::string bytes_to_byte_level(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char b : bytes) utf8_append(out, byte_to_char(static_cast<uint8_t>(b)));
    return out;
}

bool byte_level_to_bytes(std::string_view text, std::string* out) {
    out->clear();
    for (size_t i = 0; i < text.size();) {
        char32_t c;
        size_t len = utf8_decode(text, i, &c);
        if (!len) return false;
        int b = char_to_byte(c);
        if (b < 0) return false;
        out->push_back(static_cast<char>(b));
        i += len;
    }
    return true;
}

}  // namespace dg::tok
