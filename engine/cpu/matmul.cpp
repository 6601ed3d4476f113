// y[n, out] = x[n, in] · Wᵀ straight from the stored rows (any DType): each weight row is read (and,
// for non-f32 types, dequantised) once per call and dotted with every token row, so decode (n = 1)
// streams the weights exactly once and prefill reuses each row across a tile of tokens.
#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/cpu/ops.h"
#include "engine/cpu/parallel.h"
#include "engine/cpu/rows16.h"
#include "engine/formats/quant_blocks.h"

namespace dg::cpu {
namespace {

// Dots of one weight row with up to kTile token rows at once: the weight values are loaded once per
// tile. Independent accumulators per token keep the loop vectorisable without -ffast-math; the clones
// ("avx2,fma" makes one for AVX2 and one for FMA) are picked at run time on CPUs that have them, the
// default elsewhere. Each tile size is its own instantiation so the accumulators live in registers (a
// run-time tile count kept them on the stack, which made the decode case, tile 1, latency-bound). A
// token's arithmetic is the same in every tile size: its result does not depend on how many tokens
// share its tile (batched == single, bit for bit).
constexpr int kTile = 4;
typedef float v8f __attribute__((vector_size(32)));  // 8 lanes: one AVX register, two SSE ones
template <int T>
inline __attribute__((always_inline)) void dot_tile_n(const float* w, const float* x, int64_t x_stride, int64_t n,
                                                      float* out) {
    v8f acc[T] = {};  // lane j of token t: the sum over i = j mod 8, as acc[t][j] += w[i] * x[t][i]
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f wv;
        std::memcpy(&wv, w + i, sizeof wv);
        for (int t = 0; t < T; ++t) {
            v8f xv;
            std::memcpy(&xv, x + t * x_stride + i, sizeof xv);
            acc[t] += wv * xv;
        }
    }
    for (int t = 0; t < T; ++t) {
        float s = 0.f;
        for (int64_t k = i; k < n; ++k) s += w[k] * x[t * x_stride + k];
        for (int j = 0; j < 8; ++j) s += acc[t][j];
        out[t] = s;
    }
}

__attribute__((target_clones("avx2,fma", "default")))
void dot_tile(const float* w, const float* x, int64_t x_stride, int tile, int64_t n, float* out) {
    static_assert(kTile == 4);
    switch (tile) {
        case 1: dot_tile_n<1>(w, x, x_stride, n, out); break;
        case 2: dot_tile_n<2>(w, x, x_stride, n, out); break;
        case 3: dot_tile_n<3>(w, x, x_stride, n, out); break;
        default: dot_tile_n<4>(w, x, x_stride, n, out); break;
    }
}

// One F16 or BF16 row dotted with x in dot_row's arithmetic (engine/formats/dequantize.cpp): blocks of
// 256 converted to f32; in each block 16 lane sums (lane k takes elements k mod 16), added in lane order,
// then the block's tail; the blocks added in order. The result is bit for bit dot_row's (the test
// cpu_matmul_test checks it); only the code differs: an AVX2 clone, where dot_row is built for the
// x86-64-v2 baseline and converts and multiplies 4 lanes at a time, which made bf16 decode compute-bound.
template <bool kBf16>
inline __attribute__((always_inline)) float dot_half_row_t(const uint8_t* p, const float* x, int64_t n) {
    alignas(32) float buf[256];
    float s = 0.f;
    for (int64_t i = 0; i < n; i += 256) {
        const int64_t m = std::min<int64_t>(256, n - i);
        for (int64_t j = 0; j < m; ++j) {
            const uint16_t h = qb::load_u16(p + 2 * (i + j));
            buf[j] = kBf16 ? qb::bf16_to_f32_fast(h) : qb::f16_to_f32_fast(h);
        }
        const float* xi = x + i;
        const int64_t body = m & ~int64_t{15};
        v8f lo = {}, hi = {};  // lanes 0-7 and 8-15
        for (int64_t k = 0; k < body; k += 16) {
            v8f a0, a1, b0, b1;
            std::memcpy(&a0, buf + k, sizeof a0);
            std::memcpy(&a1, buf + k + 8, sizeof a1);
            std::memcpy(&b0, xi + k, sizeof b0);
            std::memcpy(&b1, xi + k + 8, sizeof b1);
            lo += a0 * b0;
            hi += a1 * b1;
        }
        float blk = 0.f;
        for (int k = 0; k < 8; ++k) blk += lo[k];
        for (int k = 0; k < 8; ++k) blk += hi[k];
        for (int64_t k = body; k < m; ++k) blk += buf[k] * xi[k];
        s += blk;
    }
    return s;
}

__attribute__((target_clones("avx2", "default")))
float dot_half_row(bool bf16, const uint8_t* p, const float* x, int64_t n) {
    return bf16 ? dot_half_row_t<true>(p, x, n) : dot_half_row_t<false>(p, x, n);
}

}  // namespace

float dot_row_cpu(DType t, const void* row, const float* x, int64_t n) {
    if (t == DType::BF16 || t == DType::F16)
        return dot_half_row(t == DType::BF16, static_cast<const uint8_t*>(row), x, n);
    return dot_row(t, row, x, n);
}

void matmul(const float* x, int32_t n, const Matrix& W, float* y) {
    const int64_t in = W.cols, out = W.rows;
    const bool plain_f32 = W.type == DType::F32;
    parallel_for(out, [&](int64_t r0, int64_t r1) {
        std::vector<float> row(plain_f32 || n == 1 ? 0 : in);  // decode dots straight from the stored row
        // A matrix the serving backend packed (the MoE router's oracle call, a fallback) is read row by row
        // as it was in the file.
        std::vector<uint8_t> unpacked(W.packing == Packing::kRows ? 0 : W.row_bytes);
        float dots[kTile];
        for (int64_t r = r0; r < r1; ++r) {
            const float* wr;
            const uint8_t* stored = plain_row(W, r, unpacked.data());
            if (plain_f32) {
                wr = reinterpret_cast<const float*>(stored);
            } else if (n == 1) {
                y[r] = dot_row_cpu(W.type, stored, x, in);  // fused dequant+dot: no row buffer
                continue;
            } else {
                dequantize_row(W.type, stored, row.data(), in);
                wr = row.data();
            }
            for (int32_t t = 0; t < n; t += kTile) {
                const int tile = std::min<int32_t>(kTile, n - t);
                dot_tile(wr, x + int64_t(t) * in, in, tile, in, dots);
                for (int k = 0; k < tile; ++k) y[int64_t(t + k) * out + r] = dots[k];
            }
        }
    }, 16);
}

}  // namespace dg::cpu
