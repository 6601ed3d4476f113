// The serving matmul (the default CPU backend; `cpu-exact` keeps matmul.cpp's f32 oracle): for quantised
// weights, each token's activations are quantised once per call to 8-bit blocks (quant_dot.h) and every
// weight row is dotted with them in integers, whole blocks at a time, with the widest kernel the CPU
// has (Q4_K and Q5_K with VNNI: one activation scale per 256 elements, quant_dot.h's kSuper256), or, for
// matrices the backend packed by 16 rows (rows16.h: Q4_K, Q6_K, Q8_0), 16 rows at a time with a scale per 32. Rows
// are split over the thread pool; a row is read once per call and reused from L1 for every token of a
// prefill tile. A token's result does not depend on the other tokens of the call (same
// quantisation, same kernel), so batched == single and prefill == decode for each row.
// Float weights (f32, f16, bf16) use float_dot.h's FMA kernels at decode, and bf16 matrices packed by 16
// rows (rows16.h) its 16-row kernel. From gemm_min_tokens() tokens on,
// every type goes through the tiled GEMM (gemm.h) where the CPU has it; there a token's result depends on
// the GEMM's summation order, not on the other tokens, but differs from the per-row kernels' in rounding.
//
// Several matrices of one input (matmuls_fast: q/k/v, the GDN mixer's qkv/z/b/a, gate/up) share one
// conversion of the input per activation format and one pass over the pool, split by weight bytes: a
// decode step makes about 90 fewer dispatches and quantisations, and the small matrices (the mixer's b and
// a, 16 rows each) no longer run alone on the calling thread. Each row's result is the one a separate
// matmul_fast call gives, bit for bit.
#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "engine/cpu/float_dot.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/parallel.h"
#include "engine/cpu/quant_dot.h"
#include "engine/cpu/rows16.h"

namespace dg::cpu {
namespace {

// The input of one call in the forms its matrices read, each made once: bf16 for the BF16 kernel, 8-bit
// blocks per activation format. Reused across calls on the calling thread: a decode step makes hundreds.
struct PreparedInput {
    struct Quantised {
        bool ready = false, s16_ready = false;
        std::vector<int8_t> q;
        std::vector<float> d;
        std::vector<int32_t> s, s16;  // s16: made only for a kernel that reads it (Q8Row)
    };
    bool bf16_ready = false;
    std::vector<uint16_t> bf16;
    Quantised fmt[2];  // indexed by ActFormat

    void reset() {
        bf16_ready = false;
        fmt[0].ready = fmt[1].ready = false;
    }
    const uint16_t* as_bf16(const float* x, int32_t n, int64_t in) {
        if (!bf16_ready) {
            bf16.resize(size_t(n) * in);
            for (int32_t t = 0; t < n; ++t) to_bf16(x + int64_t(t) * in, in, bf16.data() + int64_t(t) * in);
            bf16_ready = true;
        }
        return bf16.data();
    }
    const Quantised& quantised(ActFormat f, const float* x, int32_t n, int64_t in) {
        Quantised& a = fmt[int(f)];
        if (!a.ready) {
            a.q.resize(size_t(n) * in);
            a.d.resize(size_t(n) * (in / act_scale_elems(f)));
            a.s.resize(size_t(n) * (in / kActBlock));
            quantize_act(f, x, n, in, a.q.data(), a.d.data(), a.s.data());
            a.ready = true;
            a.s16_ready = false;
        }
        return a;
    }
    const Quantised& quantised_with_sums16(const float* x, int32_t n, int64_t in) {
        quantised(ActFormat::kBlock32, x, n, in);
        Quantised& a = fmt[int(ActFormat::kBlock32)];
        if (!a.s16_ready) {
            a.s16.resize(size_t(n) * (in / 16));
            act_sums16(a.q.data(), n, in, a.s16.data());
            a.s16_ready = true;
        }
        return a;
    }
};

// One matrix's rows against the prepared input: which kernel, and where its activations lie.
struct RowsJob {
    const Matrix* W = nullptr;
    float* y = nullptr;
    Bf16RowsDotFn brows = nullptr;
    const uint16_t* xb = nullptr;
    Rows16DotFn rows16 = nullptr;  // a quantised matrix packed by 16 rows (kBlock32 activations in acts)
    Rows16Bf16DotFn rows16_bf16 = nullptr;  // a BF16 matrix packed by 16 rows (activations in xb)
    FloatDotFn fdot = nullptr;
    const float* x = nullptr;
    QuantDotFn dot = nullptr;
    QuantDotTileFn tile = nullptr;
    const PreparedInput::Quantised* acts = nullptr;
    int64_t nd = 0;  // activation scales per token

    // y[t][r] for rows [r0, r1) and every token t < n.
    void run(int32_t n, int64_t r0, int64_t r1) const {
        const int64_t in = W->cols, out = W->rows;
        if (rows16_bf16) {  // r0 and r1 are group boundaries (run_jobs): 32 KiB at 1,024 columns
            for (int64_t r = r0; r < r1; r += kRows16)
                for (int32_t t = 0; t < n; ++t)
                    rows16_bf16(W->data + r * int64_t(W->row_bytes), in, xb + int64_t(t) * in, y + int64_t(t) * out + r);
            return;
        }
        if (brows) {
            float o[kBf16Rows];
            for (int64_t r = r0; r < r1; r += kBf16Rows) {
                const int nr = int(std::min<int64_t>(kBf16Rows, r1 - r));
                for (int32_t t = 0; t < n; ++t) {
                    brows(W->row(r), W->row_bytes, nr, xb + int64_t(t) * in, in, o);
                    for (int k = 0; k < nr; ++k) y[int64_t(t) * out + r + k] = o[k];
                }
            }
            return;
        }
        if (fdot) {
            for (int64_t r = r0; r < r1; ++r)
                for (int32_t t = 0; t < n; ++t) y[int64_t(t) * out + r] = fdot(W->row(r), x + int64_t(t) * in, in);
            return;
        }
        const int64_t ns = in / kActBlock;
        auto act = [&](int64_t t) {
            return Q8Row{acts->q.data() + t * in, acts->d.data() + t * nd, acts->s.data() + t * ns,
                         acts->s16_ready ? acts->s16.data() + t * (in / 16) : nullptr};
        };
        if (rows16) {  // r0 and r1 are group boundaries (run_jobs); a group is 9 KiB (Q4_K) or 17 KiB (Q8_0) at 1,024 columns
            for (int64_t r = r0; r < r1; r += kRows16)
                for (int32_t t = 0; t < n; ++t) rows16(W->data + r * int64_t(W->row_bytes), in, act(t), y + int64_t(t) * out + r);
            return;
        }
        for (int64_t r = r0; r < r1; ++r) {
            const uint8_t* row = W->row(r);
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
    }
};

// The job for W, or false where the fast per-row path has no kernel (the caller falls back to the oracle).
bool plan_rows(const float* x, int32_t n, const Matrix& W, float* y, FastActs acts, PreparedInput& in, RowsJob* job) {
    static const Bf16RowsDotFn brows = bf16_rows_dot_kernel();
    *job = RowsJob{};
    job->W = &W;
    job->y = y;
    if (W.type == DType::BF16 && W.packing == Packing::kRows16) {  // packed only where the kernel exists
        job->rows16_bf16 = rows16_bf16_dot_kernel();
        job->xb = in.as_bf16(x, n, W.cols);
        return job->rows16_bf16 != nullptr;
    }
    if (W.type == DType::BF16 && brows) {
        job->brows = brows;
        job->xb = in.as_bf16(x, n, W.cols);
        return true;
    }
    if (W.packing == Packing::kRows16) {  // packed only where the kernel exists (can_pack_rows16)
        job->rows16 = rows16_dot_kernel(W.type);
        job->acts = W.type == DType::Q6_K ? &in.quantised_with_sums16(x, n, W.cols)
                                          : &in.quantised(ActFormat::kBlock32, x, n, W.cols);
        job->nd = W.cols / kActBlock;
        return job->rows16 != nullptr;
    }
    const QuantIsa isa = best_quant_isa();
    if (const FloatDotFn fdot = float_dot_kernel(W.type, isa)) {
        job->fdot = fdot;
        job->x = x;
        return true;
    }
    const ActFormat fmt = acts == FastActs::kBlock32 ? ActFormat::kBlock32 : fast_act_format(W.type, isa);
    job->dot = quant_dot_kernel(W.type, isa, fmt);
    if (!job->dot || W.cols % act_scale_elems(fmt) != 0) return false;
    job->tile = n > 1 ? quant_dot_tile_kernel(W.type, isa, fmt) : nullptr;
    job->acts = &in.quantised(fmt, x, n, W.cols);
    job->nd = W.cols / act_scale_elems(fmt);
    return true;
}

// The rows of every job in one pass over the pool. Work is measured in weight bytes (the matrices of one
// input may differ in type): a chunk [b, e) of the concatenated bytes takes the rows that start in it.
void run_jobs(int32_t n, std::span<const RowsJob> jobs) {
    if (jobs.empty()) return;
    int64_t total = 0, min_rb = INT64_MAX;
    for (const RowsJob& j : jobs) {
        total += j.W->rows * int64_t(j.W->row_bytes);
        min_rb = std::min(min_rb, int64_t(j.W->row_bytes));
    }
    parallel_for_stealing(total, [&](int64_t b, int64_t e) {
        int64_t start = 0;  // where this job's bytes begin in the concatenation
        for (const RowsJob& j : jobs) {
            const int64_t rb = int64_t(j.W->row_bytes), rows = j.W->rows, end = start + rows * rb;
            if (e > start && b < end) {
                // A packed matrix is split at group boundaries (its rows are a multiple of the group).
                const int64_t step = j.W->packing == Packing::kRows16 ? kRows16 : 1;
                auto first_row_from = [&](int64_t byte) {
                    return std::clamp<int64_t>((byte - start + rb * step - 1) / (rb * step) * step, 0, rows);
                };
                const int64_t r0 = first_row_from(std::max(b, start)), r1 = first_row_from(e);
                if (r0 < r1) j.run(n, r0, r1);
            }
            start = end;
        }
    }, 16 * min_rb);
}

// Where matmul_fast takes the tiled GEMM instead of the per-row kernels.
bool takes_gemm(int32_t n, const Matrix& W) {
    return n >= gemm_min_tokens(W.type) && gemm_supported(W.type) && W.cols % kActBlock == 0;
}

thread_local PreparedInput t_input;

}  // namespace

void matmul_fast(const float* x, int32_t n, const Matrix& W, float* y) {
    if (takes_gemm(n, W)) return gemm(x, n, W, y);
    matmul_fast_rows(x, n, W, y);
}

void matmul_fast_rows(const float* x, int32_t n, const Matrix& W, float* y, FastActs acts) {
    t_input.reset();
    RowsJob job;
    if (!plan_rows(x, n, W, y, acts, t_input, &job)) return matmul(x, n, W, y);
    run_jobs(n, std::span(&job, 1));
}

void matmuls_fast(const float* x, int32_t n, std::span<const Matrix* const> Ws, std::span<float* const> ys) {
    t_input.reset();
    thread_local std::vector<RowsJob> jobs;  // a decode step makes dozens of these calls
    jobs.clear();
    for (size_t i = 0; i < Ws.size(); ++i) {
        const Matrix& W = *Ws[i];
        if (takes_gemm(n, W)) {
            gemm(x, n, W, ys[i]);
            continue;
        }
        RowsJob job;
        if (plan_rows(x, n, W, ys[i], FastActs::kServing, t_input, &job)) jobs.push_back(job);
        else matmul(x, n, W, ys[i]);
    }
    run_jobs(n, jobs);
}

}  // namespace dg::cpu
