// The scheduler's penalties and logprobs, checked against hand-computed values (vLLM semantics).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "scheduler/sampling.h"

namespace dg::sched {
namespace {

TEST(Penalties, RepetitionOverPromptAndOutputFrequencyPresenceOverOutput) {
    std::vector<float> l = {2.f, -2.f, 1.f, 0.5f, 3.f};
    SamplingParams p;
    p.repetition_penalty = 2.f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    // prompt: 0 1 0; generated: 2 2 1
    const std::vector<int32_t> toks = {0, 1, 0, 2, 2, 1};
    apply_penalties(p, l, toks, 3);
    EXPECT_FLOAT_EQ(l[0], 1.f);                       // repetition only (prompt), once despite two occurrences
    EXPECT_FLOAT_EQ(l[1], -4.f - 0.5f - 0.25f);       // negative: multiplied; generated once
    EXPECT_FLOAT_EQ(l[2], 0.5f - 2 * 0.5f - 0.25f);   // generated twice
    EXPECT_FLOAT_EQ(l[3], 0.5f);                      // untouched
    EXPECT_FLOAT_EQ(l[4], 3.f);
}

TEST(Penalties, GreedyFollowsPenalisedLogits) {
    const std::vector<float> l = {1.f, 0.9f};
    SamplingParams p;
    EXPECT_EQ(Sampler(p).sample(l, 0, std::vector<int32_t>{0}, 0), 0);
    p.presence_penalty = 0.5f;
    EXPECT_EQ(Sampler(p).sample(l, 0, std::vector<int32_t>{0}, 0), 1);
    EXPECT_EQ(Sampler(p).sample(l, 0, std::vector<int32_t>{0}, 1), 0);  // token 0 is prompt: no presence penalty
}

// Greedy picks the first maximum exactly as std::max_element does (NaN never wins, unless it is first;
// -0 and +0 tie; a tie goes to the lower id), on every length around the SIMD widths and the real vocabulary.
TEST(Greedy, FirstMaximumAsStdMaxElement) {
    std::mt19937 rng(17);
    std::normal_distribution<float> nd;
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const SamplingParams greedy;
    int cases = 0;
    for (int64_t n : {1, 2, 15, 16, 17, 63, 64, 65, 127, 1000, 248320}) {
        for (int variant = 0; variant < 8; ++variant) {
            std::vector<float> l(static_cast<size_t>(n));
            for (auto& x : l) x = nd(rng);
            const size_t a = rng() % l.size(), b = rng() % l.size();
            switch (variant) {
                case 1: l[b] = *std::max_element(l.begin(), l.end()); break;  // a tie somewhere
                case 2: std::fill(l.begin(), l.end(), 0.f); l[a] = -0.f; break;  // -0 and +0 alike
                case 3: l[a] = nan; break;
                case 4: l[0] = nan; break;  // nothing compares with the first: it stays
                case 5: std::fill(l.begin(), l.end(), -inf); l[b] = -inf; break;
                case 6: l[a] = inf; l[b] = inf; break;
                case 7: std::fill(l.begin(), l.end(), nan); break;
                default: break;
            }
            const int32_t want = int32_t(std::max_element(l.begin(), l.end()) - l.begin());
            EXPECT_EQ(Sampler(greedy).sample(l, 0, std::vector<int32_t>{}, 0), want) << "n " << n << " variant " << variant;
            ++cases;
        }
    }
    EXPECT_EQ(cases, 88);
}

TEST(Penalties, Validation) {
    SamplingParams p;
    p.repetition_penalty = 0.f;
    EXPECT_NE(validate_sampling(p).message().find("repetition_penalty"), std::string::npos);
    p = {};
    p.presence_penalty = 3.f;
    EXPECT_NE(validate_sampling(p).message().find("presence_penalty"), std::string::npos);
    p = {};
    p.frequency_penalty = NAN;
    EXPECT_NE(validate_sampling(p).message().find("frequency_penalty"), std::string::npos);
}

TEST(Logprobs, LogSoftmaxAndTopN) {
    const std::vector<float> l = {0.f, std::log(3.f), 0.f};  // probs 1/5, 3/5, 1/5
    TokenLogprobs lp = compute_logprobs(l, 2, 2);
    EXPECT_NEAR(lp.logprob, std::log(0.2), 1e-6);
    ASSERT_EQ(lp.top.size(), 2u);
    EXPECT_EQ(lp.top[0].first, 1);
    EXPECT_NEAR(lp.top[0].second, std::log(0.6), 1e-6);
    EXPECT_EQ(lp.top[1].first, 0);  // tie with 2: lower id first
}

}  // namespace
}  // namespace dg::sched
