// The bound the CPU benchmarks print beside decode: how fast all threads of the pool can read a buffer of
// `bytes` (clamped to 64 MiB - 2 GiB) held in 2 MiB pages as the serving backend holds its weights
// (engine/cpu/huge_page_weights.h), best of `reps` passes.
//
// The loop XORs 512-bit loads where the CPU has AVX-512 (the decode dots load 512 bits too), 256-bit
// otherwise. On the development VM the earlier loop (AVX2 float sums) read 48-51 GB/s where this one
// read 60-65 and the bf16 decode dot itself up to 70: a bound below what decode reaches is no bound.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/cpu/huge_page_weights.h"
#include "engine/cpu/parallel.h"

namespace dg::bench {

__attribute__((target("avx512f"))) inline uint64_t xor_stream_512(const uint8_t* p, int64_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0;
    for (int64_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm512_xor_si512(a0, _mm512_loadu_si512(p + i));
        a1 = _mm512_xor_si512(a1, _mm512_loadu_si512(p + i + 64));
    }
    return uint64_t(_mm512_reduce_add_epi64(_mm512_xor_si512(a0, a1)));
}

__attribute__((target("avx2"))) inline uint64_t xor_stream_256(const uint8_t* p, int64_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0;
    for (int64_t i = 0; i + 64 <= n; i += 64) {
        a0 = _mm256_xor_si256(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    }
    const __m256i a = _mm256_xor_si256(a0, a1);
    return uint64_t(_mm256_extract_epi64(a, 0) ^ _mm256_extract_epi64(a, 3));
}

// The buffer is mapped and written once; each call of best_gbs reads it again, so that a benchmark can
// measure the bound between its own runs (bench_engine_cpu measures it before and after every decode, on
// a VM whose memory rate drifts by 10-30% over minutes).
class ReadLoop {
public:
    explicit ReadLoop(double bytes) {
        const double clamped = std::min(std::max(bytes, 64.0 * (1 << 20)), 2048.0 * (1 << 20));
        chunks_ = std::max<int64_t>(2, int64_t(clamped / double(kChunk)));
        auto mapping = dg::cpu::map_huge_pages(uint64_t(chunks_ * kChunk));
        if (!mapping.ok()) {
            std::fprintf(stderr, "read_gbs: %s\n", std::string(mapping.status().message()).c_str());
            std::exit(1);
        }
        mapping_ = std::move(*mapping);
        std::memset(mapping_.get(), 1, size_t(chunks_ * kChunk));
        part_.resize(size_t(chunks_));
    }

    // GB/s, best of `reps` passes over the whole buffer with every thread of the pool.
    double best_gbs(int reps) {
        static const bool wide = __builtin_cpu_supports("avx512f");
        const uint8_t* a = mapping_.get();
        double best = 0;
        for (int rep = 0; rep < reps; ++rep) {
            const auto t = std::chrono::steady_clock::now();
            dg::cpu::parallel_for(chunks_, [&](int64_t c0, int64_t c1) {
                const uint8_t* p = a + c0 * kChunk;
                const int64_t n = (c1 - c0) * kChunk;
                part_[size_t(c0)] = wide ? xor_stream_512(p, n) : xor_stream_256(p, n);
            });
            const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
            best = std::max(best, double(chunks_ * kChunk) / sec / 1e9);
        }
        volatile uint64_t sink = 0;
        for (uint64_t x : part_) sink = sink ^ x;
        return best;
    }

private:
    static constexpr int64_t kChunk = int64_t(1) << 20;  // bytes per task of the pool
    int64_t chunks_ = 0;
    std::shared_ptr<uint8_t> mapping_;
    std::vector<uint64_t> part_;
};

inline double read_gbs(double bytes, int reps = 8) { return ReadLoop(bytes).best_gbs(reps); }

}  // namespace dg::bench
