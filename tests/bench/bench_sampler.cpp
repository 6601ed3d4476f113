// The host sampler's cost per sampled row (engine/sampling.cpp: the CPU backend's sampler, called once per
// generated token), at Qwen3.5's 248,320 tokens, for the parameter sets clients send: greedy, the
// OpenAI default (temperature 1, nothing else), top-p, top-k with top-p (Qwen's recommended settings),
// min-p; then the logprobs a request may ask for. Rows: normal logits (σ 3) with one peak 27 above the mean, as a trained model's next-token
// logits roughly are, and a flat row (σ 1, no peak: every token within the weight cut).
//
//   bench_sampler [--vocab N] [--reps N]
//
// Prints one markdown table: milliseconds per row, best and median of --reps.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/sampling.h"

namespace {

struct Case {
    const char* name;
    dg::SamplingParams p;
};

double ms_per_row(const dg::Sampler& s, const std::vector<float>& l, int reps, double* median) {
    std::vector<double> t;
    volatile int64_t sink = 0;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        sink = sink + s.sample(l, r);
        t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    *median = t[t.size() / 2];
    return t.front();
}

}  // namespace

int main(int argc, char** argv) {
    int64_t V = 248320;
    int reps = 30;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--vocab")) V = std::atoll(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--reps")) reps = std::max(1, std::atoi(argv[i + 1]));
        else {
            std::fprintf(stderr, "usage: bench_sampler [--vocab N] [--reps N]\n");
            return 2;
        }
    }
    std::mt19937 rng(1);
    std::vector<float> peaked(static_cast<size_t>(V)), flat(static_cast<size_t>(V));
    std::normal_distribution<float> nd(0.f, 3.f), nd1(0.f, 1.f);
    for (float& x : peaked) x = nd(rng);
    for (float& x : flat) x = nd1(rng);
    peaked[size_t(V / 3)] = 27.f;
    const Case cases[] = {
        {"greedy", {}},
        {"temperature 1", {.temperature = 1.f, .seed = 1}},
        {"temperature 0.7, top_p 0.9", {.temperature = 0.7f, .top_p = 0.9f, .seed = 2}},
        {"temperature 0.6, top_k 20, top_p 0.95", {.temperature = 0.6f, .top_k = 20, .top_p = 0.95f, .seed = 3}},
        {"temperature 1, min_p 0.05", {.temperature = 1.f, .min_p = 0.05f, .seed = 4}},
    };
    std::printf("host sampler, %lld tokens, best / median of %d rows (ms per sampled row)\n\n", (long long)V, reps);
    std::printf("| parameters | peaked row | flat row |\n|---|---|---|\n");
    for (const Case& c : cases) {
        const dg::Sampler s(c.p);
        double med_p = 0, med_f = 0;
        const double best_p = ms_per_row(s, peaked, reps, &med_p), best_f = ms_per_row(s, flat, reps, &med_f);
        std::printf("| %s | %.3f / %.3f | %.3f / %.3f |\n", c.name, best_p, med_p, best_f, med_f);
    }
    // A request's logprobs (compute_logprobs: the chosen token's and the top n), after its draw.
    for (int32_t top_n : {0, 5, 20}) {
        double best[2], med[2];
        for (int k = 0; k < 2; ++k) {
            const std::vector<float>& l = k == 0 ? peaked : flat;
            std::vector<double> t;
            volatile float sink = 0;
            for (int r = 0; r < reps; ++r) {
                const auto t0 = std::chrono::steady_clock::now();
                sink = sink + dg::compute_logprobs(l, r, top_n).logprob;
                t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            }
            std::sort(t.begin(), t.end());
            best[k] = t.front(), med[k] = t[t.size() / 2];
        }
        std::printf("| logprobs, top %d | %.3f / %.3f | %.3f / %.3f |\n", top_n, best[0], med[0], best[1], med[1]);
    }
    return 0;
}
