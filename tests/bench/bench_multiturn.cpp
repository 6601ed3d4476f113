// An 8-turn agent conversation through the scheduler (EngineLoop): a long system + tool-schema prompt,
// then per turn a tool result / user message appended to the whole history and a reply generated.
// Prints, per turn, the prompt tokens computed with the state cache and without it (every turn cold),
// and checks that both runs produce the same tokens (exactness).
//
//   bench_multiturn [model path (HF dir or GGUF); default tests/golden/fixtures/dense/hf] [reply tokens]
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "engine/weights.h"
#include "scheduler/engine_loop.h"

using namespace dg;
using namespace dg::sched;

namespace {

struct Turn {
    int32_t prompt = 0, computed = 0, cached_dev = 0, cached_host = 0;
    double ms = 0;
    std::vector<int32_t> reply;
};

std::vector<Turn> run(const std::string& path, bool cache, int32_t reply_tokens, int32_t vocab_hint) {
    auto w = load_model(path);
    if (!w.ok()) {
        std::fprintf(stderr, "%s\n", std::string(w.status().message()).c_str());
        std::exit(1);
    }
    const int32_t vocab = int32_t(std::min<int64_t>((*w)->config.vocab_size, vocab_hint));
    SchedulerOptions opt;
    opt.prefix_cache = cache;
    opt.token_budget = 512;
    CacheOptions copt;
    copt.n_blocks = 512;
    auto loop = EngineLoop::create(std::move(*w), BackendKind::kCpu, copt, opt);
    if (!loop.ok()) {
        std::fprintf(stderr, "%s\n", std::string(loop.status().message()).c_str());
        std::exit(1);
    }
    std::mt19937 rng(99);  // same workload in both runs
    auto tokens = [&](int n) {
        std::vector<int32_t> v(n);
        for (auto& t : v) t = int32_t(rng() % uint32_t(vocab - 1));
        return v;
    };
    std::vector<int32_t> history = tokens(300);  // system prompt + tool schemas
    std::vector<Turn> turns;
    for (int t = 0; t < 8; ++t) {
        const auto msg = tokens(t % 2 == 0 ? 40 + 10 * t : 120);  // user message / tool result
        history.insert(history.end(), msg.begin(), msg.end());
        Turn turn;
        turn.prompt = int32_t(history.size());
        Request r;
        r.prompt = history;
        r.max_tokens = reply_tokens;
        r.ignore_eos = true;
        r.on_event = [&](const Event& e) {
            if (e.token >= 0) turn.reply.push_back(e.token);
            if (e.request_done) {
                turn.computed = e.usage.prefill_tokens;
                turn.cached_dev = e.usage.cached_tokens_device;
                turn.cached_host = e.usage.cached_tokens_host;
            }
        };
        const auto t0 = std::chrono::steady_clock::now();
        if (!(*loop)->submit(std::move(r)).ok() || !(*loop)->run_until_idle().ok()) std::exit(1);
        turn.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        history.insert(history.end(), turn.reply.begin(), turn.reply.end());
        turns.push_back(turn);
    }
    return turns;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string path = argc > 1 ? argv[1] : "tests/golden/fixtures/dense/hf";
    const int32_t reply = argc > 2 ? std::atoi(argv[2]) : 24;
    const auto warm = run(path, true, reply, 1 << 30);
    const auto cold = run(path, false, reply, 1 << 30);
    std::printf("model %s, reply %d tokens, block 16, CPU backend\n\n", path.c_str(), reply);
    std::printf("| turn | prompt tokens | computed, no cache | computed, cache | cached (GPU slot / host) | ms no cache | ms cache | same tokens |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|:---:|\n");
    int64_t sum_cold = 0, sum_warm = 0;
    bool all_same = true;
    for (size_t i = 0; i < warm.size(); ++i) {
        const bool same = warm[i].reply == cold[i].reply;
        all_same &= same;
        sum_cold += cold[i].computed;
        sum_warm += warm[i].computed;
        std::printf("| %zu | %d | %d | %d | %d / %d | %.1f | %.1f | %s |\n", i + 1, warm[i].prompt, cold[i].computed,
                    warm[i].computed, warm[i].cached_dev, warm[i].cached_host, cold[i].ms, warm[i].ms,
                    same ? "yes" : "NO");
    }
    std::printf("| all | | %lld | %lld | | | | %s |\n", (long long)sum_cold, (long long)sum_warm, all_same ? "yes" : "NO");
    std::printf("\nprefill tokens computed with the cache: %.1f%% of the cold run\n", 100.0 * sum_warm / sum_cold);
    return all_same ? 0 : 1;
}
