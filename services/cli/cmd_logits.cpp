// deltagate logits: the logits of a token sequence as JSON, for comparison with any reference.
#include <cstdio>

#include "absl/strings/str_format.h"
#include "services/cli/command.h"
#include "services/cli/model_args.h"

namespace dg::cli {
namespace {

int run_logits(const std::vector<std::string>& args) {
    auto value_flags = kModelFlags;
    value_flags.insert("tokens");
    auto f = parse_flags(args, value_flags, {"all", "help"});
    if (!f.ok() || f->has("help") || !f->get("tokens")) {
        if (!f.ok()) std::fprintf(stderr, "deltagate logits: %s\n", std::string(f.status().message()).c_str());
        std::fprintf(stderr,
                     "usage: deltagate logits [--model PATH] --tokens 1,2,3 [--all] [--backend cpu|cpu-exact|cuda|cuda-exact] [--kv-type f32]\n"
                     "prints {\"logits\": [[...]]}: the last position's logits, or every position's with --all.\n"
                     "PATH: an HF directory, a .gguf, or (default) the built-in tiny model.\n");
        return f.ok() && f->has("help") ? 0 : 2;
    }
    auto tokens = parse_token_list(*f->get("tokens"));
    if (!tokens.ok()) {
        std::fprintf(stderr, "deltagate logits: %s\n", std::string(tokens.status().message()).c_str());
        return 2;
    }
    RunnerOptions opt;
    opt.max_seqs = 1;
    opt.kv_type = DType::F32;  // exact by default: this command exists to compare against references
    opt.max_tokens_per_seq = int64_t(tokens->size());
    auto r = open_runner(*f, opt);
    if (!r.ok()) {
        std::fprintf(stderr, "deltagate logits: %s\n", std::string(r.status().message()).c_str());
        return 1;
    }
    auto seq = (*r)->new_sequence();
    const bool all = f->has("all");
    auto logits = seq.ok() ? (*r)->feed(*seq, *tokens, all) : absl::StatusOr<std::vector<float>>(seq.status());
    if (!logits.ok()) {
        std::fprintf(stderr, "deltagate logits: %s\n", std::string(logits.status().message()).c_str());
        return 1;
    }
    const int64_t V = (*r)->config().vocab_size;
    std::string out = "{\"logits\": [";
    for (size_t row = 0; row < logits->size() / V; ++row) {
        out += row ? ",\n[" : "[";
        for (int64_t i = 0; i < V; ++i) absl::StrAppendFormat(&out, i ? ",%.9g" : "%.9g", (*logits)[row * V + i]);
        out += "]";
    }
    out += "]}\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
}

}  // namespace

DG_COMMAND("logits", "print a token sequence's logits as JSON", run_logits);

}  // namespace dg::cli
