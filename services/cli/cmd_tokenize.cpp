// `deltagate tokenize`: text -> JSON array of token ids, or with --decode ids -> text.
// The tokenizer is a tokenizer.json or a .gguf (detected by content). See docs/tokenizer.md.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/tokenizer/tokenizer.h"
#include "services/cli/command.h"
#include "services/cli/flags.h"

namespace dg::cli {
namespace {

constexpr const char* kUsage =
    "usage: deltagate tokenize --tokenizer PATH [--file F | TEXT...]   print the ids as a JSON array\n"
    "       deltagate tokenize --tokenizer PATH --decode [--file F | IDS...]   print the text of the ids\n"
    "PATH: tokenizer.json or .gguf. Without TEXT/IDS or --file, reads standard input.\n"
    "flags: --no-special (added tokens are plain text), --replace-invalid (invalid UTF-8 -> U+FFFD instead of\n"
    "       an error), --max-tokens N (reject longer input), --skip-special (decode: drop control tokens)\n"
    "IDS: a JSON array or numbers separated by spaces/commas.\n";

int fail(const std::string& msg) {
    std::fprintf(stderr, "deltagate tokenize: %s\n", msg.c_str());
    return 1;
}

bool read_all(std::istream& in, std::string* out) {
    out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return !in.bad();
}

absl::StatusOr<std::vector<int32_t>> parse_ids(const std::string& s) {
    std::vector<int32_t> ids;
    for (absl::string_view part : absl::StrSplit(s, absl::ByAnyChar(" ,\n\t\r[]"), absl::SkipEmpty())) {
        int64_t v;
        if (!absl::SimpleAtoi(part, &v) || v < INT32_MIN || v > INT32_MAX)
            return absl::InvalidArgumentError("not a token id: '" + std::string(part) + "'");
        ids.push_back(static_cast<int32_t>(v));
    }
    return ids;
}

int run_tokenize(const std::vector<std::string>& args) {
    auto flags = parse_flags(args, {"tokenizer", "file", "max-tokens"},
                             {"decode", "no-special", "replace-invalid", "skip-special", "help"});
    if (!flags.ok()) return fail(std::string(flags.status().message()) + "\n" + kUsage);
    if (flags->has("help")) {
        std::fputs(kUsage, stdout);
        return 0;
    }
    auto path = flags->get("tokenizer");
    if (!path) return fail(std::string("--tokenizer is required\n") + kUsage);
    auto tok = tok::load_tokenizer(*path);
    if (!tok.ok()) return fail(tok.status().ToString());

    std::string input;
    if (auto file = flags->get("file")) {
        if (!flags->positional.empty()) return fail("give --file or inline input, not both");
        std::ifstream f(*file, std::ios::binary);
        if (!f || !read_all(f, &input)) return fail("cannot read " + *file);
    } else if (!flags->positional.empty()) {
        input = absl::StrJoin(flags->positional, " ");
    } else if (!read_all(std::cin, &input)) {
        return fail("cannot read standard input");
    }

    if (flags->has("decode")) {
        auto ids = parse_ids(input);
        if (!ids.ok()) return fail(std::string(ids.status().message()));
        auto text = (*tok)->decode(*ids, {.skip_special = flags->has("skip-special")});
        if (!text.ok()) return fail(std::string(text.status().message()));
        std::fwrite(text->data(), 1, text->size(), stdout);
        return 0;
    }
    tok::EncodeOptions opt;
    if (flags->has("no-special")) opt.special = tok::SpecialTokens::kNone;
    if (flags->has("replace-invalid")) opt.invalid_utf8 = tok::InvalidUtf8::kReplace;
    if (auto m = flags->get("max-tokens")) {
        if (!absl::SimpleAtoi(*m, &opt.max_tokens)) return fail("--max-tokens needs a number");
    }
    auto ids = (*tok)->encode(input, opt);
    if (!ids.ok()) return fail(std::string(ids.status().message()));
    std::string out = "[" + absl::StrJoin(*ids, ", ") + "]\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
}

}  // namespace

DG_COMMAND("tokenize", "text <-> token ids with a tokenizer.json or .gguf", run_tokenize);

}  // namespace dg::cli
