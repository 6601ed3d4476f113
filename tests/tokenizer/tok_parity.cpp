// Parity driver for the npm reference (tests/tokenizer/parity.sh runs it): encodes a corpus with our
// tokenizer, compares the ids with the JS port's, checks decode(encode(x)) == NFC(x), and with --bench
// reports single-core encode throughput.
//
//   tok_parity --tokenizer T --corpus C.jsonl [--expected E.jsonl] [--bench] [--departures D.json]
//              [--decode-cases D.jsonl --pad-rows N --work DIR]
//
// --decode-cases: writes T's vocabulary into a GGUF padded to N rows as make-model does ("[PAD{id}]" rows of
// type unused), loads it back, and checks decode and streaming decode of each case's ids (ref_decode.js)
// against the JS port's decode of the same ids, with and without special tokens.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/formats/gguf.h"
#include "engine/tokenizer/detokenize.h"
#include "engine/tokenizer/gguf_vocab.h"
#include "engine/tokenizer/pretokenize.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/unicode.h"

using nlohmann::json;
using namespace dg::tok;

static std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream f(path);
    std::vector<std::string> out;
    for (std::string line; std::getline(f, line);)
        if (!line.empty()) out.push_back(line);
    return out;
}

static std::string show_tokens(const Tokenizer& t, const std::vector<int32_t>& ids, size_t from, size_t n) {
    std::string s;
    for (size_t i = from; i < ids.size() && i < from + n; ++i) {
        auto b = t.token_bytes(ids[i]);
        s += std::to_string(ids[i]) + ":" + json(utf8_replace_invalid(b.ok() ? *b : "?")).dump() + " ";
    }
    return s;
}

static std::vector<std::string> pieces(PreTokenizer pre, const std::string& text) {
    std::vector<Piece> ps;
    pretokenize(pre, text, ps);
    std::vector<std::string> out;
    for (auto& p : ps) out.push_back(text.substr(p.begin, p.end - p.begin));
    return out;
}

// Streams ids one by one through the streaming detokenizer, as the worker does, and returns all the text.
static std::string stream_decode(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
    StreamDecoder sd(tok, {.stop = {}, .skip_special = skip_special});
    std::string out;
    for (int32_t id : ids) {
        auto d = sd.push(id);
        if (!d.ok()) return "<error: " + std::string(d.status().message()) + ">";
        out += *d;
    }
    return out + sd.finish();
}

static int check_decode_cases(const Tokenizer& json_tok, std::map<std::string, std::string>& flags) {
    if (!flags.count("--pad-rows") || !flags.count("--work")) {
        std::printf("--decode-cases needs --pad-rows and --work\n");
        return 1;
    }
    dg::GgufWriter w;
    if (auto st = add_tokenizer_to_gguf(json_tok, w, std::stoll(flags["--pad-rows"])); !st.ok()) {
        std::printf("%s\n", st.ToString().c_str());
        return 1;
    }
    const std::string path = flags["--work"] + "/padded_vocab.gguf";
    auto padded = w.write(path).ok() ? load_tokenizer(path) : absl::InternalError("cannot write " + path);
    if (!padded.ok()) {
        std::printf("%s\n", padded.status().ToString().c_str());
        return 1;
    }
    const Tokenizer& tok = **padded;
    size_t n = 0, bad = 0;
    for (const auto& line : read_lines(flags["--decode-cases"])) {
        json c = json::parse(line);
        auto ids = c["ids"].get<std::vector<int32_t>>();
        const std::string want = c["text"].get<std::string>(), want_skip = c["text_skip"].get<std::string>();
        auto got = tok.decode(ids);
        auto got_skip = tok.decode(ids, {.skip_special = true});
        const std::string streamed = stream_decode(tok, ids, false), streamed_skip = stream_decode(tok, ids, true);
        ++n;
        bool ok = got.ok() && *got == want && got_skip.ok() && *got_skip == want_skip && streamed == want &&
                  streamed_skip == want_skip;
        if (!ok && ++bad <= 5)
            std::printf("DECODE MISMATCH ids %s\n  js:       %s\n  decode:   %s\n  streamed: %s\n", json(ids).dump().c_str(),
                        json(want).dump().c_str(), json(got.ok() ? *got : got.status().ToString()).dump().c_str(),
                        json(streamed).dump().c_str());
    }
    std::printf("decode: %zu of %zu id sequences with padding ids decode and stream as the JS port decodes them "
                "(vocabulary %d padded to %d rows)\n", n - bad, n, json_tok.vocab_size(), tok.vocab_size());
    return bad || n == 0 ? 1 : 0;
}

int main(int argc, char** argv) {
    std::map<std::string, std::string> flags;
    bool bench = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--bench") bench = true;
        else if (i + 1 < argc) flags[a] = argv[++i];
    }
    if (!flags.count("--tokenizer")) {
        std::fprintf(stderr, "usage: tok_parity --tokenizer T [--corpus C.jsonl] [--expected E.jsonl] [--bench] [--departures D.json]\n");
        return 2;
    }
    auto tok_or = load_tokenizer(flags["--tokenizer"]);
    if (!tok_or.ok()) {
        std::fprintf(stderr, "%s\n", tok_or.status().ToString().c_str());
        return 1;
    }
    const Tokenizer& tok = **tok_or;
    int failures = 0;

    if (flags.count("--corpus")) {
        std::vector<std::string> docs;
        size_t bytes = 0;
        for (const auto& l : read_lines(flags["--corpus"])) {
            docs.push_back(json::parse(l).get<std::string>());
            bytes += docs.back().size();
        }
        std::vector<std::vector<int32_t>> ours(docs.size());
        auto t0 = std::chrono::steady_clock::now();
        for (size_t i = 0; i < docs.size(); ++i) {
            auto r = tok.encode(docs[i]);
            if (!r.ok()) {
                std::printf("doc %zu: encode failed: %s\n", i, r.status().ToString().c_str());
                ++failures;
                continue;
            }
            ours[i] = std::move(*r);
        }
        double cold = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        size_t n_tokens = 0;
        for (auto& v : ours) n_tokens += v.size();
        std::printf("ours: %zu documents, %zu bytes, %zu tokens\n", docs.size(), bytes, n_tokens);

        if (flags.count("--expected")) {
            auto lines = read_lines(flags["--expected"]);
            if (lines.size() != docs.size()) {
                std::printf("expected file has %zu lines for %zu documents\n", lines.size(), docs.size());
                return 1;
            }
            size_t mismatched = 0, mismatched_bytes = 0;
            for (size_t i = 0; i < docs.size(); ++i) {
                auto want = json::parse(lines[i]).get<std::vector<int32_t>>();
                if (want == ours[i]) continue;
                ++mismatched;
                mismatched_bytes += docs[i].size();
                if (mismatched <= 10) {
                    size_t k = 0;
                    while (k < want.size() && k < ours[i].size() && want[k] == ours[i][k]) ++k;
                    size_t from = k >= 3 ? k - 3 : 0;
                    std::printf("MISMATCH doc %zu at token %zu\n  text: %s\n  js:   %s\n  ours: %s\n", i, k,
                                json(docs[i].substr(0, 300)).dump().c_str(), show_tokens(tok, want, from, 8).c_str(),
                                show_tokens(tok, ours[i], from, 8).c_str());
                }
            }
            std::printf("parity: %zu of %zu documents (%zu of %zu bytes) differ from the JS port\n", mismatched,
                        docs.size(), mismatched_bytes, bytes);
            failures += mismatched ? 1 : 0;
        }

        size_t rt_bad = 0, non_nfc = 0;
        for (size_t i = 0; i < docs.size(); ++i) {
            auto text = tok.decode(ours[i]);
            auto want = nfc(docs[i]);
            if (*want != docs[i]) ++non_nfc;
            if (!text.ok() || *text != *want) {
                if (++rt_bad <= 5) std::printf("ROUNDTRIP doc %zu: %s\n", i, json(docs[i].substr(0, 200)).dump().c_str());
            }
        }
        std::printf("roundtrip: decode(encode(x)) == NFC(x) for %zu of %zu documents (%zu of them not NFC as written; "
                    "the rest round-trip byte for byte)\n", docs.size() - rt_bad, docs.size(), non_nfc);
        failures += rt_bad ? 1 : 0;

        if (bench) {
            // Warm: the merge cache is populated, as in a server that has seen the vocabulary's common words.
            double best = 1e9;
            for (int rep = 0; rep < 3; ++rep) {
                auto t1 = std::chrono::steady_clock::now();
                size_t n = 0;
                for (auto& d : docs) n += tok.encode(d)->size();
                best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
                if (n != n_tokens) return 1;
            }
            std::printf("bench: ours cold %.2f MB/s, warm %.2f MB/s (single thread, %zu bytes)\n", bytes / 1e6 / cold,
                        bytes / 1e6 / best, bytes);
        }
    }

    if (flags.count("--departures")) {
        // Cases where the JS port is known to depart from HF tokenizers: check our pre-token split against
        // the split HF's regex engine (Oniguruma) produces, derived by hand and written in the file.
        std::ifstream f(flags["--departures"]);
        json cases = json::parse(f);
        for (const auto& c : cases) {
            std::string text = c["text"].get<std::string>();
            auto want = c["hf_pieces"].get<std::vector<std::string>>();
            auto got = pieces(tok.pre_tokenizer(), text);
            bool ok = got == want;
            std::printf("departure %-28s ours %s HF: %s\n", c["name"].get<std::string>().c_str(),
                        ok ? "==" : "!=", json(got).dump(-1, ' ', true).c_str());
            failures += ok ? 0 : 1;
        }
    }
    if (flags.count("--decode-cases")) failures += check_decode_cases(tok, flags);
    return failures ? 1 : 0;
}
