// The serving matmul (the default CPU backend; `cpu-exact` keeps matmul.cpp's f32 oracle): for quantised
// weights, each token's activations are quantised once per call to 8-bit blocks (quant_dot.h) and every
// weight row is dotted with them in integers, whole blocks at a time, with the widest kernel the CPU
// has (Q4_K and Q5_K with VNNI: one activation scale per 256 elements, quant_dot.h's kSuper256). Rows
// are split over the thread pool; a row is read once per call and reused from L1 for every token of a
// prefill tile. A token's result does not depend on the other tokens of the call (same
// quantisation, same kernel), so batched == single and prefill == decode for each row.
// Float weights (f32, f16, bf16) use float_dot.h's FMA kernels at decode. From gemm_min_tokens() tokens on,
// every type goes through the tiled GEMM (gemm.h) where the CPU has it; there a token's result depends on
// the GEMM's summation order, not on the other tokens, but differs from the per-row kernels' in rounding.
#include <algorithm>
#include <vector>

#include "engine/cpu/float_dot.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/parallel.h"
#include "engine/cpu/quant_dot.h"

namespace dg::cpu {

void matmul_fast(const float* x, int32_t n, const Matrix& W, float* y) {
    if (n >= gemm_min_tokens(W.type) && gemm_supported(W.type) && W.cols % kActBlock == 0) return gemm(x, n, W, y);
    matmul_fast_rows(x, n, W, y);
}

void matmul_fast_rows(const float* x, int32_t n, const Matrix& W, float* y, FastActs acts) {
    const int64_t in = W.cols, out = W.rows;
    static const Bf16RowsDotFn brows = bf16_rows_dot_kernel();
    if (W.type == DType::BF16 && brows) {
        thread_local std::vector<uint16_t> xb;
        xb.resize(size_t(n) * in);
        for (int32_t t = 0; t < n; ++t) to_bf16(x + int64_t(t) * in, in, xb.data() + int64_t(t) * in);
        const uint16_t* xp = xb.data();
        parallel_for_balanced(out, [&](int64_t r0, int64_t r1) {
            float o[kBf16Rows];
            for (int64_t r = r0; r < r1; r += kBf16Rows) {
                const int nr = int(std::min<int64_t>(kBf16Rows, r1 - r));
                for (int32_t t = 0; t < n; ++t) {
                    brows(W.row(r), W.row_bytes, nr, xp + int64_t(t) * in, in, o);
                    for (int k = 0; k < nr; ++k) y[int64_t(t) * out + r + k] = o[k];
                }
            }
        }, matmul_chunks_per_thread(), 16);
        return;
    }
    if (const FloatDotFn fdot = float_dot_kernel(W.type, best_quant_isa())) {
        parallel_for_balanced(out, [&](int64_t r0, int64_t r1) {
            for (int64_t r = r0; r < r1; ++r)
                for (int32_t t = 0; t < n; ++t) y[int64_t(t) * out + r] = fdot(W.row(r), x + int64_t(t) * in, in);
        }, matmul_chunks_per_thread(), 16);
        return;
    }
    const QuantIsa isa = best_quant_isa();
    const ActFormat fmt = acts == FastActs::kBlock32 ? ActFormat::kBlock32 : fast_act_format(W.type, isa);
    const QuantDotFn dot = quant_dot_kernel(W.type, isa, fmt);
    if (!dot || in % act_scale_elems(fmt) != 0) return matmul(x, n, W, y);
    // Reused across calls on the calling thread: a decode step makes hundreds of these.
    thread_local std::vector<int8_t> q;
    thread_local std::vector<float> d;
    thread_local std::vector<int32_t> s;
    const int64_t nd = in / act_scale_elems(fmt), ns = in / kActBlock;
    q.resize(size_t(n) * in);
    d.resize(size_t(n) * nd);
    s.resize(size_t(n) * ns);
    quantize_act(fmt, x, n, in, q.data(), d.data(), s.data());
    const int8_t* qp = q.data();
    const float* dp = d.data();
    const int32_t* sp = s.data();
    auto act = [&](int64_t t) { return Q8Row{qp + t * in, dp + t * nd, sp + t * ns}; };
    const QuantDotTileFn tile = n > 1 ? quant_dot_tile_kernel(W.type, isa, fmt) : nullptr;
    parallel_for_balanced(out, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            const uint8_t* row = W.row(r);
            if (!tile) {
                for (int32_t t = 0; t < n; ++t) y[int64_t(t) * out + r] = dot(row, act(t), in);
                continue;
            }
            // Prefill: the row's blocks are unpacked once per tile of kTokTile tokens (the row itself stays
            // in L1 across tiles); the tile kernel's per-token result equals the decode kernel's.
            for (int32_t t = 0; t < n; t += kTokTile) {
                const int ntok = std::min<int32_t>(kTokTile, n - t);
                Q8Row xs[kTokTile];
                float o[kTokTile];
                for (int k = 0; k < ntok; ++k) xs[k] = act(t + k);
                tile(row, xs, ntok, in, o);
                for (int k = 0; k < ntok; ++k) y[int64_t(t + k) * out + r] = o[k];
            }
        }
    }, matmul_chunks_per_thread(), 16);
}

}  // namespace dg::cpu
