// deltagate generate: greedy generation from token ids on one model, with prefill and decode speed.
// The quick start's "it works" command: with no --model it runs the built-in tiny model on the CPU.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "engine/sampling.h"
#include "services/cli/command.h"
#include "services/cli/model_args.h"

namespace dg::cli {
namespace {

int run_generate(const std::vector<std::string>& args) {
    auto value_flags = kModelFlags;
    value_flags.insert({"tokens", "max-new"});
    auto f = parse_flags(args, value_flags, {"help"});
    if (!f.ok() || f->has("help")) {
        if (!f.ok()) std::fprintf(stderr, "deltagate generate: %s\n", std::string(f.status().message()).c_str());
        std::fprintf(stderr, "usage: deltagate generate [--model PATH] [--tokens 1,2,3] [--max-new N] [--backend cpu|cpu-exact|cuda|cuda-exact]\n"
                             "         [--kv-type f16|bf16|q8_0|q4_0|f32] [--threads N]\n");
        return f.ok() ? 0 : 2;
    }
    int64_t max_new = 32;
    if (auto m = f->get("max-new"); m && (!absl::SimpleAtoi(*m, &max_new) || max_new <= 0 || max_new > 1'000'000)) {
        std::fprintf(stderr, "deltagate generate: --max-new must be in [1, 1000000]\n");
        return 2;
    }
    auto prompt = parse_token_list(f->get("tokens").value_or("1,2,3,4,5,6,7,8"));
    if (!prompt.ok()) {
        std::fprintf(stderr, "deltagate generate: %s\n", std::string(prompt.status().message()).c_str());
        return 2;
    }
    RunnerOptions opt;
    opt.max_seqs = 1;
    opt.max_tokens_per_seq = int64_t(prompt->size()) + max_new;
    auto r = open_runner(*f, opt);
    if (!r.ok()) {
        std::fprintf(stderr, "deltagate generate: %s\n", std::string(r.status().message()).c_str());
        return 1;
    }
    Runner& run = **r;
    const ModelConfig& c = run.config();
    std::fprintf(stderr, "model: %s, %lld layers (%lld Gated DeltaNet, %lld attention), hidden %lld, vocab %lld, %s\n",
                 c.arch.c_str(), (long long)c.n_layers, (long long)c.n_gdn_layers(), (long long)c.n_attention_layers(),
                 (long long)c.hidden, (long long)c.vocab_size,
                 (run.model().backend().name() + " on " + run.model().backend().device_name()).c_str());
    auto seq = run.new_sequence();
    if (!seq.ok()) return 1;
    auto t0 = std::chrono::steady_clock::now();
    auto logits = run.feed(*seq, *prompt, false);
    auto t1 = std::chrono::steady_clock::now();
    std::vector<int32_t> out;
    // The first token from the prompt's logits; each later one drawn as the server draws it, from the logits
    // where the backend left them (Runner::feed_sample), not from a copy of all 248,320 per token.
    const SampleRow greedy_row;  // temperature 0: the first maximum
    absl::Status status = logits.status();
    int32_t next = status.ok() && max_new > 0 ? Sampler().sample(*logits, 0) : -1;
    while (status.ok() && int64_t(out.size()) < max_new) {
        out.push_back(next);
        if (std::find(c.eos_ids.begin(), c.eos_ids.end(), next) != c.eos_ids.end()) break;
        auto drawn = run.feed_sample(*seq, std::vector<int32_t>{next}, {&greedy_row, 1});
        status = drawn.status();
        if (status.ok()) next = (*drawn)[0].token;
    }
    auto t2 = std::chrono::steady_clock::now();
    if (!status.ok()) {
        std::fprintf(stderr, "deltagate generate: %s\n", std::string(status.message()).c_str());
        return 1;
    }
    const double pre = std::chrono::duration<double>(t1 - t0).count(), dec = std::chrono::duration<double>(t2 - t1).count();
    std::printf("prompt:    %s\ngenerated: %s\n", absl::StrJoin(*prompt, " ").c_str(), absl::StrJoin(out, " ").c_str());
    std::fprintf(stderr, "prefill %zu tokens in %.3f s (%.1f tok/s), decode %zu tokens in %.3f s (%.1f tok/s)\n",
                 prompt->size(), pre, prompt->size() / pre, out.size(), dec, out.size() / std::max(dec, 1e-9));
    return 0;
}

}  // namespace

DG_COMMAND("generate", "greedy generation from token ids (default: the built-in tiny model)", run_generate);

}  // namespace dg::cli
