// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a counter-based
// random number generator. Its output is a pure function of (counter, key), so a sampled token's random
// draw depends only on the request's seed and the token's position in its continuation — not on which
// worker or backend drew the tokens before it. That is what lets a stream migrate to another worker
// mid-generation and continue exactly as it would have (docs/reliability.md), and what the CUDA sampler
// must reproduce bit for bit. Known-answer vectors: tests/unit/sched/philox_test.cpp (Random123's
// tests/kat_vectors).
#pragma once

#include <array>
#include <cstdint>

#if defined(__CUDACC__)
#define DG_HOST_DEVICE __host__ __device__
#else
#define DG_HOST_DEVICE
#endif

namespace dg {

struct Philox4x32Out {
    uint32_t v[4];
};

DG_HOST_DEVICE inline Philox4x32Out philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2]) {
    constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
    constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key schedule (Weyl) increments
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint32_t k0 = key_in[0], k1 = key_in[1];
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += kW0;
            k1 += kW1;
        }
        const uint64_t p0 = uint64_t(kM0) * c0, p1 = uint64_t(kM1) * c2;
        const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
        const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    return Philox4x32Out{{c0, c1, c2, c3}};
}

// The 53 random bits for token `position` (0 = the continuation's first generated token) of a request
// seeded `seed`: the top 53 of words 0 and 1. Counter = (position, 0, 0, 0), key = the seed's halves.
DG_HOST_DEVICE inline uint64_t philox_bits53(uint64_t seed, uint64_t position) {
    const uint32_t ctr[4] = {uint32_t(position), uint32_t(position >> 32), 0u, 0u};
    const uint32_t key[2] = {uint32_t(seed), uint32_t(seed >> 32)};
    const Philox4x32Out r = philox4x32_10(ctr, key);
    return (uint64_t(r.v[0]) << 32 | r.v[1]) >> 11;
}
// The same bits as a uniform draw in [0, 1).
DG_HOST_DEVICE inline double philox_uniform(uint64_t seed, uint64_t position) {
    return double(philox_bits53(seed, position)) * 0x1.0p-53;
}

}  // namespace dg
