// Hand-written equivalent of the Qwen pre-tokenizer regexes (see pretokenize.h). Each alternative is
// resolved the way a backtracking engine resolves it; the reasoning is written beside each branch.
#include "engine/tokenizer/pretokenize.h"

#include "engine/tokenizer/unicode.h"

namespace dg::tok {

namespace {

// Every code point falls in exactly one of these classes for a given pattern, which is what makes a
// direct matcher possible: letter (L, plus M for qwen35), number, whitespace, or "other".
enum Kind : uint8_t { kLetter, kNumber, kSpace, kOther };

struct Decoded {
    std::vector<char32_t> cp;
    std::vector<uint8_t> kind;
    std::vector<size_t> off;  // byte offset of each code point; off[n] = text size
};

// ASCII classes are fixed; a table avoids the general lookup on the common path.
inline Kind classify(char32_t c, bool marks_are_letters) {
    uint8_t f = char_class(c);
    if (f & kCatL) return kLetter;
    if (f & kCatM) return marks_are_letters ? kLetter : kOther;
    if (f & kCatN) return kNumber;
    if (f & kCatWs) return kSpace;
    return kOther;
}

// (?i:...) folds with Unicode simple case folding in Oniguruma and Rust regex alike: besides ASCII
// upper case, U+017F LATIN SMALL LETTER LONG S folds to 's'. No other code point folds to t,r,e,v,m,l,d.
inline char32_t fold(char32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x17F) return 's';
    return c;
}

inline bool is_crlf(char32_t c) { return c == '\r' || c == '\n'; }

}  // namespace

void pretokenize(PreTokenizer pre, std::string_view text, std::vector<Piece>& out) {
    const bool marks = pre == PreTokenizer::kQwen35;
    thread_local Decoded d;
    d.cp.clear();
    d.kind.clear();
    d.off.clear();
    for (size_t i = 0; i < text.size();) {
        char32_t c;
        size_t len = utf8_decode(text, i, &c);
        if (len == 0) {  // callers validate first; be total anyway: treat the byte as an "other" char
            c = 0xFFFD;
            len = 1;
        }
        d.cp.push_back(c);
        d.kind.push_back(classify(c, marks));
        d.off.push_back(i);
        i += len;
    }
    d.off.push_back(text.size());
    const size_t n = d.cp.size();
    const char32_t* cp = d.cp.data();
    const uint8_t* kind = d.kind.data();

    auto run = [&](size_t j, Kind k) {
        while (j < n && kind[j] == k) ++j;
        return j;
    };

    size_t i = 0;
    while (i < n) {
        const char32_t c = cp[i];
        size_t end = 0;
        // 1. Contractions: '(s|t|re|ve|m|ll|d), case-insensitive. None is a prefix of another.
        if (c == '\'' && i + 1 < n) {
            char32_t a = fold(cp[i + 1]);
            if (a == 's' || a == 't' || a == 'm' || a == 'd') {
                end = i + 2;
            } else if (i + 2 < n) {
                char32_t b = fold(cp[i + 2]);
                if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) end = i + 3;
            }
        }
        if (!end) {
            if (kind[i] == kLetter) {
                // 2. A letter run (the optional prefix char is empty here, or is this letter itself).
                end = run(i, kLetter);
            } else if (!is_crlf(c) && kind[i] != kNumber && i + 1 < n && kind[i + 1] == kLetter) {
                // 2. One non-letter, non-number, non-CR/LF char (a space, a symbol, a mark in qwen2)
                //    glued in front of a letter run.
                end = run(i + 1, kLetter);
            } else if (kind[i] == kNumber) {
                // 3. Digits are split one per token.
                end = i + 1;
            } else if (kind[i] == kOther || (c == ' ' && i + 1 < n && kind[i + 1] == kOther)) {
                // 4. An optional single space, a run of symbols, then any CR/LF run.
                size_t j = c == ' ' ? i + 1 : i;
                j = run(j, kOther);
                while (j < n && is_crlf(cp[j])) ++j;
                end = j;
            } else {
                // Whitespace. 5. \s*[\r\n]+ backtracks to the last CR/LF inside the whitespace run.
                size_t ws_end = run(i, kSpace);
                size_t last_crlf = n;
                for (size_t j = ws_end; j > i; --j)
                    if (is_crlf(cp[j - 1])) {
                        last_crlf = j - 1;
                        break;
                    }
                if (last_crlf != n) {
                    end = last_crlf + 1;
                } else if (ws_end == n || ws_end - i == 1) {
                    // 6./7. At the end of text the whole run matches; a single space before a
                    //       non-space is matched by the plain \s+.
                    end = ws_end;
                } else {
                    // 6. \s+(?!\S): give back the last whitespace char so the next token can own it.
                    end = ws_end - 1;
                }
            }
        }
        out.push_back({d.off[i], d.off[end]});
        i = end;
    }
}

}  // namespace dg::tok
