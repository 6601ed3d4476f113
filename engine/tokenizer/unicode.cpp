// Unicode support for the tokenizer. Categories come from ICU so they follow one Unicode version
// (ICU 72 = Unicode 15.0) consistently; the regex engines we must agree with read the same tables.
#include "engine/tokenizer/unicode.h"

#include <memory>
#include <mutex>
#include <vector>

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/bytestream.h>

namespace dg::tok {

namespace {

const std::vector<uint8_t>& class_table() {
    static const std::vector<uint8_t> table = [] {
        std::vector<uint8_t> t(0x110000, 0);
        for (UChar32 c = 0; c < 0x110000; ++c) {
            uint32_t mask = U_GET_GC_MASK(c);
            uint8_t f = 0;
            if (mask & U_GC_L_MASK) f |= kCatL;
            if (mask & U_GC_M_MASK) f |= kCatM;
            if (mask & U_GC_N_MASK) f |= kCatN;
            if (u_isUWhiteSpace(c)) f |= kCatWs;
            t[c] = f;
        }
        return t;
    }();
    return table;
}

}  // namespace

uint8_t char_class(char32_t cp) {
    static const uint8_t* t = class_table().data();
    return cp < 0x110000 ? t[cp] : 0;
}

size_t utf8_decode(std::string_view s, size_t i, char32_t* cp) {
    const size_t n = s.size();
    const auto b0 = static_cast<uint8_t>(s[i]);
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    auto cont = [&](size_t k) { return i + k < n && (static_cast<uint8_t>(s[i + k]) & 0xC0) == 0x80; };
    auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(s[i + k])); };
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        if (!cont(1)) return 0;
        *cp = ((b0 & 0x1F) << 6) | (byte(1) & 0x3F);
        return 2;
    }
    if (b0 >= 0xE0 && b0 <= 0xEF) {
        if (!cont(1) || !cont(2)) return 0;
        uint32_t c = ((b0 & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F);
        if (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF)) return 0;
        *cp = c;
        return 3;
    }
    if (b0 >= 0xF0 && b0 <= 0xF4) {
        if (!cont(1) || !cont(2) || !cont(3)) return 0;
        uint32_t c = ((b0 & 0x07) << 18) | ((byte(1) & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) | (byte(3) & 0x3F);
        if (c < 0x10000 || c > 0x10FFFF) return 0;
        *cp = c;
        return 4;
    }
    return 0;
}

void utf8_append(std::string& out, char32_t c) {
    if (c < 0x80) {
        out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (c >> 6)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (c >> 12)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (c >> 18)));
        out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
}

size_t utf8_find_invalid(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        if (static_cast<uint8_t>(s[i]) < 0x80) {
            ++i;
            continue;
        }
        char32_t cp;
        size_t len = utf8_decode(s, i, &cp);
        if (len == 0) return i;
        i += len;
    }
    return std::string_view::npos;
}

// Length of the longest prefix at s[i] that could still start a valid sequence (>= 1): the "maximal
// subpart" that one U+FFFD replaces, so our output matches TextDecoder, Python and Rust's lossy decoding.
static size_t maximal_subpart(std::string_view s, size_t i) {
    const auto b0 = static_cast<uint8_t>(s[i]);
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) need = 1;
    else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        return 1;
    }
    size_t k = 1;
    for (; k <= need && i + k < s.size(); ++k) {
        auto b = static_cast<uint8_t>(s[i + k]);
        if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) break;
    }
    return k;
}

std::string utf8_replace_invalid(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        char32_t cp;
        size_t len = utf8_decode(s, i, &cp);
        if (len) {
            out.append(s.substr(i, len));
            i += len;
        } else {
            out.append("\xEF\xBF\xBD");
            i += maximal_subpart(s, i);
        }
    }
    return out;
}

size_t utf8_complete_prefix(std::string_view s) {
    // Look back at most 3 bytes for the start of a sequence that runs past the end.
    const size_t n = s.size();
    for (size_t back = 1; back <= 3 && back <= n; ++back) {
        const auto b = static_cast<uint8_t>(s[n - back]);
        if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
        if (b < 0xC2 || b > 0xF4) return n;  // ASCII or a byte that never starts a sequence
        size_t want = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
        if (want > back && maximal_subpart(s, n - back) == back) return n - back;  // valid so far, incomplete
        return n;
    }
    return n;
}

static const icu::Normalizer2* nfc_instance(UErrorCode* err) { return icu::Normalizer2::getNFCInstance(*err); }

static bool is_ascii(std::string_view s) {
    for (char c : s)
        if (static_cast<uint8_t>(c) >= 0x80) return false;
    return true;
}

bool is_nfc(std::string_view s) {
    if (is_ascii(s)) return true;
    UErrorCode err = U_ZERO_ERROR;
    const icu::Normalizer2* n = nfc_instance(&err);
    if (U_FAILURE(err)) return false;
    bool ok = n->isNormalizedUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())), err);
    return U_SUCCESS(err) && ok;
}

absl::StatusOr<std::string> nfc(std::string_view s) {
    if (s.size() > INT32_MAX) return absl::InvalidArgumentError("text over 2 GiB cannot be normalised");
    if (is_nfc(s)) return std::string(s);
    UErrorCode err = U_ZERO_ERROR;
    const icu::Normalizer2* n = nfc_instance(&err);
    if (U_FAILURE(err)) return absl::InternalError(std::string("ICU NFC unavailable: ") + u_errorName(err));
    std::string out;
    out.reserve(s.size());
    icu::StringByteSink<std::string> sink(&out);
    n->normalizeUTF8(0, icu::StringPiece(s.data(), static_cast<int32_t>(s.size())), sink, nullptr, err);
    if (U_FAILURE(err)) return absl::InternalError(std::string("ICU NFC failed: ") + u_errorName(err));
    return out;
}

}  // namespace dg::tok
