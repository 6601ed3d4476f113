// The host sampler (engine/sampling.cpp: a radix descent, no sort) against its definition written the
// plain way (engine/sample_mass.h): sort the whole vocabulary by (logit descending, id ascending), weigh
// each token as floor(exp((l - top) / T) x 2^42), cut top-k, top-p (shortest prefix reaching
// floor(total x top_p)), min-p, and walk the running sums to floor(kept x u). The reference below uses
// 128-bit arithmetic and ldexp instead of sample_mass.h's helpers, so a slip in either shows. Then the
// draws' frequencies against the softmax, so the definition itself stays a temperature sampler.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "engine/det_exp.h"
#include "engine/philox.h"
#include "engine/sample_mass.h"
#include "engine/sample_weights.h"
#include "engine/sampling.h"

namespace dg {
namespace {

using u128 = unsigned __int128;

int32_t by_definition(const std::vector<float>& l, const SamplingParams& p, uint64_t position) {
    const int64_t V = int64_t(l.size());
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
    const int64_t k = p.top_k > 0 && p.top_k < V ? p.top_k : V;
    const double top = l[order[0]];
    std::vector<uint64_t> w(static_cast<size_t>(k));
    u128 total = 0;
    for (int64_t i = 0; i < k; ++i) {
        const double e = det_exp((double(l[order[i]]) - top) / double(p.temperature));
        w[i] = uint64_t(std::floor(std::ldexp(e, 42)));
        total += w[i];
    }
    int64_t keep = k;
    if (p.top_p < 1.f) {
        const u128 frac = u128(std::floor(std::ldexp(double(p.top_p), 24)));
        u128 target = total * frac >> 24;
        if (target == 0) target = 1;
        u128 run = 0;
        for (keep = 0; keep < k && run < target;) run += w[keep++];
    }
    std::vector<uint64_t> kept(w.begin(), w.begin() + keep);
    if (p.min_p > 0.f) {
        const u128 floor_w = u128(std::floor(std::ldexp(double(p.min_p), 24))) << 18;
        for (size_t i = 1; i < kept.size(); ++i)
            if (kept[i] < floor_w) kept[i] = 0;
    }
    u128 sum = 0;
    for (uint64_t x : kept) sum += x;
    const double u = philox_uniform(p.seed, position);  // an exact multiple of 2^-53
    const u128 r = sum * u128(std::ldexp(u, 53)) >> 53;
    u128 run = 0;
    for (size_t i = 0; i < kept.size(); ++i)
        if ((run += kept[i]) > r) return order[i];
    ADD_FAILURE() << "the draw ran past the kept tokens";
    return -1;
}

// Row kinds: smooth normal, a coarse grid (ties everywhere), one value (a tie of the whole row), a few
// peaks over signed zeros, and a wide spread (most tokens far below the cut of 29 x T).
std::vector<float> row(std::mt19937& rng, int kind, int64_t V) {
    std::normal_distribution<float> nd(0.f, 3.f);
    std::vector<float> l(static_cast<size_t>(V));
    for (float& x : l) {
        switch (kind) {
            case 0: x = nd(rng); break;
            case 1: x = std::round(nd(rng)) * 0.5f; break;
            case 2: x = 1.25f; break;
            case 3: x = rng() % 17 == 0 ? 4.f + float(rng() % 3) : (rng() & 1) ? 0.f : -0.f; break;
            default: x = nd(rng) * 8.f; break;
        }
    }
    return l;
}

TEST(SamplerDefinition, HostSamplerEqualsTheSortedDefinition) {
    std::mt19937 rng(21);
    int draws = 0, non_greedy = 0;
    for (int64_t V : {1, 2, 7, 1000, 5000}) {
        for (int kind = 0; kind < 5; ++kind) {
            const std::vector<float> l = row(rng, kind, V);
            const int64_t greedy = std::max_element(l.begin(), l.end()) - l.begin();
            for (float T : {0.3f, 1.f, 2.5f})
                for (int32_t top_k : {0, 1, 5, 50, int32_t(V) - 1, int32_t(V) + 3})
                    for (float top_p : {1.f, 0.9f, 0.3f, 0.05f})
                        for (float min_p : {0.f, 0.05f, 0.5f, 1.f}) {
                            const SamplingParams p{.temperature = T, .top_k = std::max(top_k, 0), .top_p = top_p,
                                                   .min_p = min_p, .seed = rng()};
                            const Sampler s(p);
                            for (uint64_t pos : {uint64_t(0), uint64_t(rng() % 1000)}) {
                                const int32_t got = s.sample(l, int64_t(pos));
                                ASSERT_EQ(got, by_definition(l, p, pos))
                                    << "V " << V << " kind " << kind << " T " << T << " top_k " << top_k << " top_p "
                                    << top_p << " min_p " << min_p << " seed " << p.seed << " position " << pos;
                                ++draws;
                                non_greedy += got != greedy;
                            }
                        }
        }
    }
    EXPECT_GT(non_greedy, draws / 8) << "too few draws left the top token to test the walk";
}

// sample_weights (SIMD where the CPU has it) against the scalar sample_weight, bit for bit: random logits
// over the whole live range, values at the cut (x = -30 and its neighbours), at multiples of ln2 / 2
// (where the reduction switches k), the top itself, and lengths with a scalar tail.
TEST(SamplerDefinition, SimdWeightsEqualTheScalarDefinition) {
    std::mt19937 rng(23);
    std::uniform_real_distribution<float> live(-35.f, 0.f);
    for (float T : {0.25f, 1.f, 3.f}) {
        const float top = 2.5f;
        std::vector<float> l;
        for (int i = 0; i < 20000; ++i) l.push_back(top + live(rng) * T);
        for (int i = -4; i <= 4; ++i) l.push_back(std::nextafter(top - 30.f * T, top) + float(i) * 1e-6f * T);
        for (int i = 0; i < 90; ++i) l.push_back(top - float(i) * 0.34657359f * T);
        l.push_back(top);
        for (size_t n : {l.size(), l.size() - 3, size_t(5)}) {
            std::vector<uint64_t> fast(n), scalar(n);
            sample_weights(l.data(), int64_t(n), top, T, fast.data());
            sample_weights_scalar(l.data(), int64_t(n), top, T, scalar.data());
            for (size_t i = 0; i < n; ++i) {
                ASSERT_EQ(fast[i], sample_weight(l[i], top, T)) << "logit " << l[i] << " T " << T << " index " << i;
                ASSERT_EQ(scalar[i], sample_weight(l[i], top, T));
            }
        }
    }
    // The SIMD exponential itself, bit for bit det_exp's (the weights above only see it to 2^-42): one live
    // lane of 8 in sum_exp_shifted, so the sum is that one term.
    std::uniform_real_distribution<float> wide(-60.f, 0.f);
    for (int i = 0; i < 20000; ++i) {
        const float mx = 3.f;
        std::vector<float> l(8, mx - 200.f);
        l[size_t(i % 8)] = i % 100 == 0 ? mx : mx + wide(rng);
        const double want = det_exp(double(l[size_t(i % 8)]) - double(mx));
        ASSERT_EQ(std::bit_cast<uint64_t>(sum_exp_shifted(l.data(), 8, mx)), std::bit_cast<uint64_t>(want))
            << "x " << double(l[size_t(i % 8)]) - double(mx);
    }
}

// -inf logits weigh 0 (never drawn; the definition with a full sort agrees); a +inf top leaves no token a
// finite share, and the draw is the first +inf token, as greedy's.
TEST(SamplerDefinition, InfiniteLogits) {
    std::vector<float> l = {1.f, -INFINITY, 2.f, -INFINITY, 0.5f, 1.5f, -INFINITY};
    for (float T : {0.5f, 1.f, 4.f})
        for (int32_t top_k : {0, 3})
            for (float top_p : {1.f, 0.6f}) {
                const SamplingParams p{.temperature = T, .top_k = top_k, .top_p = top_p, .seed = 9};
                for (int64_t pos = 0; pos < 200; ++pos) {
                    const int32_t got = Sampler(p).sample(l, pos);
                    ASSERT_TRUE(got != 1 && got != 3 && got != 6) << got;
                    ASSERT_EQ(got, by_definition(l, p, uint64_t(pos)));
                }
            }
    const std::vector<float> inf_top = {1.f, INFINITY, 3.f, INFINITY, -INFINITY};
    for (int32_t top_k : {0, 2})
        for (float min_p : {0.f, 0.5f})
            for (int64_t pos = 0; pos < 20; ++pos)
                EXPECT_EQ(Sampler({.temperature = 1.f, .top_k = top_k, .min_p = min_p, .seed = 4}).sample(inf_top, pos), 1);
}

// Qwen3.5's vocabulary: the sizes the server samples at, fewer parameter sets.
TEST(SamplerDefinition, LargeVocabulary) {
    std::mt19937 rng(22);
    for (int kind : {0, 1, 4}) {
        const std::vector<float> l = row(rng, kind, 248320);
        for (const SamplingParams& p : {SamplingParams{.temperature = 1.f, .seed = 1},
                                        SamplingParams{.temperature = 0.7f, .top_p = 0.95f, .seed = 2},
                                        SamplingParams{.temperature = 0.6f, .top_k = 20, .top_p = 0.95f, .seed = 3},
                                        SamplingParams{.temperature = 1.f, .min_p = 0.1f, .seed = 4}})
            for (int64_t pos = 0; pos < 4; ++pos)
                ASSERT_EQ(Sampler(p).sample(l, pos), by_definition(l, p, uint64_t(pos)))
                    << "kind " << kind << " T " << p.temperature << " top_k " << p.top_k << " position " << pos;
    }
}

// compute_logprobs (SIMD sum of exponentials, top-n from a heap) against the plain way: libm exp over
// every token summed in id order, a full sort for the top n. Values within the float result's rounding;
// the same ids in the same order (ties by lower id; rows of ties included). The sums agree to 1e-11: the
// id-order sum of 248,320 terms itself rounds that far (3.5e-12 seen), the 8-lane sum less.
TEST(SamplerDefinition, LogprobsAgainstThePlainComputation) {
    std::mt19937 rng(24);
    for (int kind = 0; kind < 5; ++kind) {
        for (int64_t V : {int64_t(3), int64_t(1001), int64_t(248320)}) {
            const std::vector<float> l = row(rng, kind, V);
            const double mx = *std::max_element(l.begin(), l.end());
            double sum = 0;
            for (float x : l) sum += std::exp(double(x) - mx);
            const double lse = mx + std::log(sum);
            std::vector<int32_t> order(static_cast<size_t>(V));
            std::iota(order.begin(), order.end(), 0);
            std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
            const int32_t token = int32_t(rng() % uint32_t(V));
            const TokenLogprobs got = compute_logprobs(l, token, 20);
            EXPECT_NEAR(got.logprob, double(l[token]) - lse, 2e-7 * std::max(1.0, std::fabs(double(l[token]) - lse)))
                << "kind " << kind << " V " << V;
            ASSERT_EQ(got.top.size(), size_t(std::min<int64_t>(20, V)));
            for (size_t i = 0; i < got.top.size(); ++i) {
                EXPECT_EQ(got.top[i].first, order[i]) << "kind " << kind << " V " << V << " rank " << i;
                EXPECT_FLOAT_EQ(got.top[i].second, float(double(l[order[i]]) - lse));
            }
            // The SIMD and scalar sums agree to rounding.
            const float mxf = float(mx);
            EXPECT_NEAR(sum_exp_shifted(l.data(), V, mxf), sum_exp_shifted_scalar(l.data(), V, mxf), 1e-11 * sum);
            EXPECT_NEAR(sum_exp_shifted(l.data(), V, mxf), sum, 1e-11 * sum);
        }
    }
}

// Frequencies over 20,000 positions against softmax(l / T): within 5 standard deviations per token. The
// integer weights must not bend the distribution (their truncation is below 2^-42 of the top).
TEST(SamplerDefinition, DrawsFollowTheSoftmax) {
    const std::vector<float> l = {1.f, 2.5f, 0.f, 2.4f, -3.f, 1.7f, -30.f, 2.5f};
    for (float T : {0.5f, 1.f, 2.f}) {
        std::vector<double> prob(l.size());
        double z = 0;
        for (size_t i = 0; i < l.size(); ++i) z += prob[i] = std::exp((l[i] - 2.5) / T);
        const Sampler s({.temperature = T, .seed = 77});
        const int n = 20000;
        std::vector<int> count(l.size(), 0);
        for (int pos = 0; pos < n; ++pos) ++count[size_t(s.sample(l, pos))];
        for (size_t i = 0; i < l.size(); ++i) {
            const double pi = prob[i] / z, sd = std::sqrt(n * pi * (1 - pi));
            EXPECT_NEAR(count[i], n * pi, 5 * sd + 1) << "token " << i << " T " << T;
        }
    }
}

}  // namespace
}  // namespace dg
