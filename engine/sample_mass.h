// The sampler's arithmetic, shared by the host sampler (engine/sampling.cpp, the oracle) and the device
// sampler (engine/cuda/sampling.cu), so that a seeded request draws the same token on both.
//
// Why integers: a candidate's share of the draw is its weight exp((l - top) / T) relative to the top
// token (det_exp, the same bits on both sides), truncated to an integer count of 2^-42. Sums of integers
// do not depend on their order, so the host can add the weights in one pass in id order (sorting nothing)
// and the device in a tree (walking nothing on one thread), and still agree bit for bit.
// The price: a token whose weight is below 2^-42 of the top's (more than 29.1 x T below the top logit)
// is never drawn; at Qwen3.5's 248,320 tokens that drops at most 6e-8 of the mass, far below what the
// model's own rounding moves.
//
// The definition (docs/worker.md, "Sampling"): tokens in the order (logit descending, id ascending);
// top-k keeps the first k; the weights W as above (only W > 0 can be drawn); top-p keeps the shortest
// prefix of the order whose weight reaches top_p_target(); min-p drops tokens with W < min_p_floor()
// (never the first); the draw r = sample_draw_point(kept total) picks the first kept token whose running
// sum of W exceeds r; where no token has weight, the first token of the order.
#pragma once

#include <cstdint>
#include <cstring>

#include "engine/det_exp.h"
#include "engine/philox.h"

namespace dg {

constexpr int kSampleWeightBits = 42;
// The largest vocabulary whose weights sum below 2^63 (a weight is at most 2^42).
constexpr int64_t kSampleMaxVocab = int64_t(1) << 21;

// One integer per (logit, id) whose order is the sampler's: larger key = higher logit, then lower id. -0
// counts as +0 (the host's comparisons treat them alike). Finite logits only.
DG_HOST_DEVICE inline uint64_t sample_order_key(float l, int64_t id) {
    const float z = l == 0.f ? 0.f : l;
    uint32_t u;
    std::memcpy(&u, &z, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (uint64_t(u) << 32) | uint64_t(0xFFFFFFFFu - uint32_t(id));
}
DG_HOST_DEVICE inline int32_t sample_key_id(uint64_t k) { return int32_t(0xFFFFFFFFu - uint32_t(k)); }

// W of a token with logit l when the top logit is `top` (l <= top): floor(det_exp((l - top) / T) x 2^42).
DG_HOST_DEVICE inline uint64_t sample_weight(float l, float top, float temperature) {
    const double x = (double(l) - double(top)) / double(temperature);
    // Below -30 det_exp(x) < 2^-43: the weight truncates to 0 (skipping det_exp is exact). NaN (an infinite
    // top logit) weighs 0 too; a row with no weight left draws its first token (sample_no_weight).
    if (!(x >= -30.0)) return 0;
    return uint64_t(det_exp(x) * 0x1p42);  // exact (a power of two), so nothing to fuse
}

// Where every weight is 0 (only when the top logit is +inf, or NaN logits), the draw is the first token of
// the order: the top, as greedy picks it.

// p as a fraction of 2^24 (truncated): top_p and min_p enter the integer arithmetic this way.
DG_HOST_DEVICE inline uint64_t sample_fraction_24(float p) { return uint64_t(double(p) * 16777216.0); }

// Top-p keeps the shortest prefix whose weight is at least floor(total x top_p) (at least 1).
DG_HOST_DEVICE inline uint64_t top_p_target(uint64_t total, float top_p) {
    const uint64_t f = sample_fraction_24(top_p);
    const uint64_t t = (total >> 24) * f + (((total & 0xFFFFFFu) * f) >> 24);  // floor(total x f / 2^24), exact
    return t > 0 ? t : 1;
}

// Min-p keeps tokens with W >= min_p x W(top) = min_p x 2^42 (min_p to 24 bits).
DG_HOST_DEVICE inline uint64_t min_p_floor(float min_p) {
    return sample_fraction_24(min_p) << (kSampleWeightBits - 24);
}

// The draw: floor(total x u) for the request's uniform u = philox_bits53(seed, position) / 2^53, in
// [0, total).
DG_HOST_DEVICE inline uint64_t sample_draw_point(uint64_t total, uint64_t seed, uint64_t position) {
    const uint64_t u = philox_bits53(seed, position) << 11;
#if defined(__CUDA_ARCH__)
    return __umul64hi(total, u);
#else
    return uint64_t((static_cast<unsigned __int128>(total) * u) >> 64);
#endif
}

}  // namespace dg
