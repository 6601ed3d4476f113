// Decode GEMV (docs/cuda.md, "Matmul"): y[n, out] = x[n, in] · Wᵀ for n ≤ kGemvMaxTokens tokens per
// launch, every weight block read once for all the tokens of the launch.
//
// Quantised weights (Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K): the activations are quantised once per call
// (quantize_act_q8: per 32 floats an int8 block, a scale max|x|/127 and the sum of the int8 values, the
// CPU fast path's quantize_act_rows bit for bit), then each weight block is unpacked to int8 lanes and
// dotted with __dp4a, one float per 32-element sub-block: weight scale × activation scale × integer dot
// (and the block offset × activation sum for Q4_1 / Q4_K / Q5_K), the CPU fast path's formula.
// Float weights (F32, F16, BF16): fp32 FMA against the fp32 activations.
//
// Geometry: 128 threads = 4 warps per block, each warp kGemvRows = 2 consecutive rows; the 32 lanes of a
// warp stride over the row's units (a unit: 64 elements for Q4_K / Q5_K, 32 for the other quantised
// types, 8 for float types), each lane loading a whole unit of both rows before using it for every
// token. Then one shuffle reduction per (row, token). Loads: Q4_K / Q5_K quants, float weights and all
// activations as 16-byte vectors (their rows are multiples of 16 bytes); Q8_0 (34-byte blocks), Q4_0
// (18) and Q6_K (210) are only 2-byte aligned in memory and load 32-bit words as two 16-bit halves,
// Q4_1 (20) as aligned 32-bit words.
#include <algorithm>
#include <climits>

#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/matmul.cuh"
#include "engine/cuda/ops.cuh"

namespace dg::cuda {
namespace {

constexpr int kGemvWarps = 4, kGemvRows = 2;
constexpr int64_t kRowsPerBlock = int64_t(kGemvWarps) * kGemvRows;
constexpr int kQuantWarps = 8;  // quantize_act_q8: one warp per 32-float block

// ---- activation quantisation: one warp per block of 32 floats ------------------------------------------
__global__ void quantize_act_kernel(const float* x, int64_t n_blocks, int8_t* q, float* d, int32_t* s) {
    const int64_t g = int64_t(blockIdx.x) * kQuantWarps + threadIdx.x / kWarp;  // uniform per warp
    const int lane = threadIdx.x % kWarp;
    if (g >= n_blocks) return;
    quantize_q8_block(x[g * 32 + lane], lane, q + g * 32, d + g, s + g);
}

// ---- loads ------------------------------------------------------------------------------------------------
__device__ __forceinline__ int ld_u32_a2(const uint8_t* p) {  // a 32-bit word at a 2-byte aligned address
    const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
    return int(uint32_t(h[0]) | (uint32_t(h[1]) << 16));
}
__device__ __forceinline__ void ld_16x2(const void* p, int (&v)[8]) {  // 32 bytes, 16-byte aligned
    const int4 a = reinterpret_cast<const int4*>(p)[0], b = reinterpret_cast<const int4*>(p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

// Token t's activation blocks; `in` a multiple of 32.
struct QAct {
    const int8_t* q;
    const float* d;
    const int32_t* s;
};

// ---- per-type unit dots ---------------------------------------------------------------------------------
// dot<NT>(row, u, act, in, acc): adds unit u of the row dotted with each of the NT tokens to acc[t].

struct DotQ8_0 {
    using Act = QAct;
    static constexpr int kUnit = 32;
    template <int NT>
    __device__ static void dot(const uint8_t* row, int64_t u, const QAct& a, int64_t in, float (&acc)[NT]) {
        const uint8_t* b = row + 34 * u;
        const float d = load_f16(b);
        int w[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) w[i] = ld_u32_a2(b + 2 + 4 * i);
        const int64_t nb = in / 32;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            int x[8];
            ld_16x2(a.q + t * in + 32 * u, x);
            int isum = 0;
#pragma unroll
            for (int i = 0; i < 8; ++i) isum = __dp4a(w[i], x[i], isum);
            acc[t] += d * a.d[t * nb + u] * float(isum);
        }
    }
};

// Q4_0 and Q4_1: qs byte j holds element j (low nibble) and j + 16 (high nibble).
template <bool kQ4_1>
struct DotQ4_x {
    using Act = QAct;
    static constexpr int kUnit = 32;
    template <int NT>
    __device__ static void dot(const uint8_t* row, int64_t u, const QAct& a, int64_t in, float (&acc)[NT]) {
        const uint8_t* b = row + (kQ4_1 ? 20 : 18) * u;
        const float d = load_f16(b), m = kQ4_1 ? load_f16(b + 2) : 0.f;
        int lo[4], hi[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int w = kQ4_1 ? reinterpret_cast<const int*>(b + 4)[i] : ld_u32_a2(b + 2 + 4 * i);
            lo[i] = w & 0x0F0F0F0F;
            hi[i] = (w >> 4) & 0x0F0F0F0F;
        }
        const int64_t nb = in / 32;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            int x[8];
            ld_16x2(a.q + t * in + 32 * u, x);
            int isum = 0;
#pragma unroll
            for (int i = 0; i < 4; ++i) isum = __dp4a(hi[i], x[4 + i], __dp4a(lo[i], x[i], isum));
            const float xd = a.d[t * nb + u];
            const int32_t xs = a.s[t * nb + u];
            if (kQ4_1) acc[t] += d * xd * float(isum) + m * xd * float(xs);
            else acc[t] += d * xd * float(isum - 8 * xs);  // (q - 8) · x = q · x - 8 Σx, in integers
        }
    }
};

// Q4_K / Q5_K: a unit is a pair of 32-element sub-blocks (2p, 2p + 1) of a 256-element super-block,
// sharing 32 quant bytes (low nibbles: sub-block 2p, high: 2p + 1); Q5_K's fifth bit of element l of
// sub-block j is bit j of qh[l].
template <bool kQ5>
struct DotQk {
    using Act = QAct;
    static constexpr int kUnit = 64;
    template <int NT>
    __device__ static void dot(const uint8_t* row, int64_t u, const QAct& a, int64_t in, float (&acc)[NT]) {
        const int64_t sb = u / 4;
        const int p = int(u % 4), j0 = 2 * p, j1 = 2 * p + 1;
        const uint8_t* b = row + (kQ5 ? 176 : 144) * sb;
        const float d = load_f16(b), dmin = load_f16(b + 2);
        int sc0, m0, sc1, m1;
        scale_min_k4(j0, b + 4, &sc0, &m0);
        scale_min_k4(j1, b + 4, &sc1, &m1);
        int w[8], lo[8], hi[8];
        ld_16x2(b + (kQ5 ? 48 : 16) + 32 * p, w);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            lo[i] = w[i] & 0x0F0F0F0F;
            hi[i] = (w[i] >> 4) & 0x0F0F0F0F;
        }
        if (kQ5) {
            int h[8];
            ld_16x2(b + 16, h);
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                lo[i] |= ((h[i] >> j0) & 0x01010101) << 4;
                hi[i] |= ((h[i] >> j1) & 0x01010101) << 4;
            }
        }
        const int64_t nb = in / 32, blk = 8 * sb + j0;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            int x0[8], x1[8];
            const int8_t* xq = a.q + t * in + 64 * u;
            ld_16x2(xq, x0);
            ld_16x2(xq + 32, x1);
            int i0 = 0, i1 = 0;
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                i0 = __dp4a(lo[i], x0[i], i0);
                i1 = __dp4a(hi[i], x1[i], i1);
            }
            const float xd0 = a.d[t * nb + blk], xd1 = a.d[t * nb + blk + 1];
            const float xs0 = float(a.s[t * nb + blk]), xs1 = float(a.s[t * nb + blk + 1]);
            acc[t] += d * float(sc0) * xd0 * float(i0) - dmin * float(m0) * xd0 * xs0;
            acc[t] += d * float(sc1) * xd1 * float(i1) - dmin * float(m1) * xd1 * xs1;
        }
    }
};

// Q6_K: a unit is one 32-element sub-block j of a super-block (half h = j / 4, quarter k = j % 4): 4 low
// bits from ql (low or high nibbles), 2 high bits from qh, minus 32; an int8 scale per 16 elements.
struct DotQ6_K {
    using Act = QAct;
    static constexpr int kUnit = 32;
    template <int NT>
    __device__ static void dot(const uint8_t* row, int64_t u, const QAct& a, int64_t in, float (&acc)[NT]) {
        const int64_t sb = u / 8;
        const int j = int(u % 8), h = j / 4, k = j % 4;
        const uint8_t* b = row + 210 * sb;
        const uint8_t* ql = b + 64 * h + 32 * (k % 2);
        const uint8_t* qh = b + 128 + 32 * h;
        const int sc0 = int8_t(b[192 + 2 * j]), sc1 = int8_t(b[192 + 2 * j + 1]);
        const float d = load_f16(b + 208);
        int v[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int l = ld_u32_a2(ql + 4 * i), hb = ld_u32_a2(qh + 4 * i);
            v[i] = ((k < 2 ? l : l >> 4) & 0x0F0F0F0F) | (((hb >> (2 * k)) & 0x03030303) << 4);  // 0..63
        }
        const int64_t nb = in / 32;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            int x[8];
            ld_16x2(a.q + t * in + 32 * u, x);
            int d0 = 0, d1 = 0, s0 = 0, s1 = 0;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                d0 = __dp4a(v[i], x[i], d0);
                s0 = __dp4a(0x01010101, x[i], s0);
                d1 = __dp4a(v[4 + i], x[4 + i], d1);
                s1 = __dp4a(0x01010101, x[4 + i], s1);
            }
            const int isum = sc0 * (d0 - 32 * s0) + sc1 * (d1 - 32 * s1);
            acc[t] += d * a.d[t * nb + u] * float(isum);
        }
    }
};

// Float weights: a unit is 8 elements (one 16-byte load of f16 / bf16, two of f32).
struct FAct {
    const float* x;
};
template <DType T>
struct DotFloat {
    using Act = FAct;
    static constexpr int kUnit = 8;
    template <int NT>
    __device__ static void dot(const uint8_t* row, int64_t u, const FAct& a, int64_t in, float (&acc)[NT]) {
        float w[8];
        if constexpr (T == DType::F32) {
            const float4 p = reinterpret_cast<const float4*>(row)[2 * u], q = reinterpret_cast<const float4*>(row)[2 * u + 1];
            w[0] = p.x, w[1] = p.y, w[2] = p.z, w[3] = p.w, w[4] = q.x, w[5] = q.y, w[6] = q.z, w[7] = q.w;
        } else {
            const uint4 p = reinterpret_cast<const uint4*>(row)[u];
            const uint32_t h[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                if constexpr (T == DType::F16) {
                    w[2 * i] = __half2float(__ushort_as_half(uint16_t(h[i] & 0xFFFF)));
                    w[2 * i + 1] = __half2float(__ushort_as_half(uint16_t(h[i] >> 16)));
                } else {
                    w[2 * i] = __uint_as_float(h[i] << 16);
                    w[2 * i + 1] = __uint_as_float(h[i] & 0xFFFF0000u);
                }
            }
        }
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            const float4* xv = reinterpret_cast<const float4*>(a.x + t * in + 8 * u);
            const float4 p = xv[0], q = xv[1];
            float s = acc[t];
            s = fmaf(w[0], p.x, s), s = fmaf(w[1], p.y, s), s = fmaf(w[2], p.z, s), s = fmaf(w[3], p.w, s);
            s = fmaf(w[4], q.x, s), s = fmaf(w[5], q.y, s), s = fmaf(w[6], q.z, s), s = fmaf(w[7], q.w, s);
            acc[t] = s;
        }
    }
};

// ---- the kernel -------------------------------------------------------------------------------------------
// Block b multiplies rows of the first matrix m with b < blocks_end[m] (uniform per block): the matrices of
// one launch share a type, a width and the activations (GemvBatch in matmul.cuh).
struct GemvRows {
    const uint8_t* w[kGemvMaxMatrices];
    uint64_t row_bytes[kGemvMaxMatrices];
    int64_t rows[kGemvMaxMatrices];
    float* y[kGemvMaxMatrices];  // token t's outputs at y[m] + t * rows[m]
    int32_t blocks_end[kGemvMaxMatrices];
    int32_t count;
};

template <class K, int NT>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
    gemv_kernel(GemvRows mats, int64_t in, typename K::Act act) {
    // The block's matrix, with constant indices only (a runtime index into the parameter arrays would
    // copy them to local memory).
    const uint8_t* w = mats.w[0];
    uint64_t row_bytes = mats.row_bytes[0];
    int64_t out = mats.rows[0];
    float* y = mats.y[0];
    int32_t first_block = 0;
#pragma unroll
    for (int i = 1; i < kGemvMaxMatrices; ++i)
        if (i < mats.count && int32_t(blockIdx.x) >= mats.blocks_end[i - 1]) {
            w = mats.w[i], row_bytes = mats.row_bytes[i], out = mats.rows[i], y = mats.y[i];
            first_block = mats.blocks_end[i - 1];
        }
    const int32_t block = int32_t(blockIdx.x) - first_block;
    const int lane = threadIdx.x % kWarp;
    const int64_t r0 = (int64_t(block) * kGemvWarps + threadIdx.x / kWarp) * kGemvRows;
    if (r0 >= out) return;  // uniform per warp
    const int rows = out - r0 < kGemvRows ? int(out - r0) : kGemvRows;
    float acc[kGemvRows][NT];
#pragma unroll
    for (int r = 0; r < kGemvRows; ++r)
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[r][t] = 0.f;
    const int64_t units = in / K::kUnit;
    for (int64_t u = lane; u < units; u += kWarp) {
#pragma unroll
        for (int r = 0; r < kGemvRows; ++r)
            if (r < rows) K::template dot<NT>(w + uint64_t(r0 + r) * row_bytes, u, act, in, acc[r]);
    }
    // Unrolled with a guard: acc indexed by a runtime row count would live in local memory.
#pragma unroll
    for (int r = 0; r < kGemvRows; ++r)
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            const float v = warp_sum(acc[r][t]);
            if (lane == 0 && r < rows) y[int64_t(t) * out + r0 + r] = v;
        }
}

// ---- the routed experts of a MoE layer (ops.cuh moe_expert_gemv) --------------------------------------
// Row `row` of the activations (entry e of a routed run reads row e / x_div).
__device__ __forceinline__ QAct act_row(const QAct& a, int64_t row, int64_t in) {
    const int64_t nb = in / 32;
    return QAct{a.q + row * in, a.d + row * nb, a.s + row * nb};
}
__device__ __forceinline__ FAct act_row(const FAct& a, int64_t row, int64_t in) { return FAct{a.x + row * in}; }

// Block (row tile, expert e): the gemv kernel's warps and units over expert e's rows, once per entry of
// e's run (one token per weight read: a decode step routes 1-8 entries to an expert, and the rows stay
// in L1/L2 between them). Blocks of experts nobody chose return at once.
template <class K>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
    grouped_gemv_kernel(const uint8_t* const* w, uint64_t row_bytes, int64_t out, int64_t in, typename K::Act act,
                        int32_t x_div, const int32_t* counts, const int32_t* offsets, const int32_t* list, float* y) {
    const int64_t e = blockIdx.y;
    const int32_t cnt = counts[e];
    const int lane = threadIdx.x % kWarp;
    const int64_t r0 = (int64_t(blockIdx.x) * kGemvWarps + threadIdx.x / kWarp) * kGemvRows;
    if (cnt == 0 || r0 >= out) return;  // uniform per warp
    const int rows = out - r0 < kGemvRows ? int(out - r0) : kGemvRows;
    const uint8_t* base = w[e] + uint64_t(r0) * row_bytes;
    const int32_t* run = list + offsets[e];
    const int64_t units = in / K::kUnit;
    for (int32_t j = 0; j < cnt; ++j) {
        const int32_t entry = run[j];
        const typename K::Act a = act_row(act, entry / x_div, in);
        float acc[kGemvRows][1];
#pragma unroll
        for (int r = 0; r < kGemvRows; ++r) acc[r][0] = 0.f;
        for (int64_t u = lane; u < units; u += kWarp) {
#pragma unroll
            for (int r = 0; r < kGemvRows; ++r)
                if (r < rows) K::template dot<1>(base + uint64_t(r) * row_bytes, u, a, in, acc[r]);
        }
#pragma unroll
        for (int r = 0; r < kGemvRows; ++r) {
            const float v = warp_sum(acc[r][0]);
            if (lane == 0 && r < rows) y[int64_t(entry) * out + r0 + r] = v;
        }
    }
}

template <class K>
void launch_grouped(const ExpertMatrices& W, typename K::Act act, int32_t x_div, const MoeRouting& r, float* y,
                    cudaStream_t s) {
    const dim3 grid(unsigned((W.rows + kRowsPerBlock - 1) / kRowsPerBlock), unsigned(W.n_experts));
    DG_CUDA_CHECK(DG_LAUNCH((grouped_gemv_kernel<K>), grid, kGemvWarps * kWarp, 0, s, W.data, W.row_bytes, W.rows,
                            W.cols, act, x_div, r.counts, r.offsets, r.list, y));
}

// One launch of K over NT tokens for every matrix of `mats` (their y already offset to the tile).
template <class K, int NT>
void launch_tile(const GemvRows& mats, int64_t in, typename K::Act act, cudaStream_t s) {
    const dim3 grid(unsigned(mats.blocks_end[mats.count - 1]));
    DG_CUDA_CHECK(DG_LAUNCH((gemv_kernel<K, NT>), grid, kGemvWarps * kWarp, 0, s, mats, in, act));
}

// The matrices in launches of up to kGemvMaxMatrices, the tokens in tiles of kGemvMaxTokens (each tile
// reading the weights once), then the rest.
template <class K, class MakeAct>
void run_tokens(const GemvBatch& b, int32_t n, MakeAct make_act, cudaStream_t s) {
    static_assert(kGemvMaxTokens == 8, "the switch below instantiates 1..8 tokens");
    const int64_t in = b.Ws[0].cols;
    for (size_t m0 = 0; m0 < b.Ws.size(); m0 += kGemvMaxMatrices) {
        const int count = int(std::min<size_t>(kGemvMaxMatrices, b.Ws.size() - m0));
        for (int32_t t0 = 0; t0 < n; t0 += kGemvMaxTokens) {
            GemvRows mats{};
            mats.count = count;
            int64_t blocks = 0;
            for (int i = 0; i < count; ++i) {
                const Matrix& W = b.Ws[m0 + i];
                mats.w[i] = W.data;
                mats.row_bytes[i] = W.row_bytes;
                mats.rows[i] = W.rows;
                mats.y[i] = b.ys[m0 + i] + int64_t(t0) * W.rows;
                blocks += (W.rows + kRowsPerBlock - 1) / kRowsPerBlock;
                if (blocks > INT32_MAX) throw DeviceError("gemv: too many rows for one launch", cudaErrorInvalidValue);
                mats.blocks_end[i] = int32_t(blocks);
            }
            const typename K::Act act = make_act(t0);
            switch (n - t0 < kGemvMaxTokens ? n - t0 : kGemvMaxTokens) {
                case 1: launch_tile<K, 1>(mats, in, act, s); break;
                case 2: launch_tile<K, 2>(mats, in, act, s); break;
                case 3: launch_tile<K, 3>(mats, in, act, s); break;
                case 4: launch_tile<K, 4>(mats, in, act, s); break;
                case 5: launch_tile<K, 5>(mats, in, act, s); break;
                case 6: launch_tile<K, 6>(mats, in, act, s); break;
                case 7: launch_tile<K, 7>(mats, in, act, s); break;
                default: launch_tile<K, 8>(mats, in, act, s); break;
            }
        }
    }
}

// One type and one width for every matrix of a batch (the kernel's template and its unit count).
void check_batch(const GemvBatch& b, const char* who) {
    if (b.Ws.empty() || b.Ws.size() != b.ys.size())
        throw DeviceError(std::string(who) + ": needs one output per matrix, at least one", cudaErrorInvalidValue);
    for (const Matrix& W : b.Ws)
        if (W.type != b.Ws[0].type || W.cols != b.Ws[0].cols)
            throw DeviceError(std::string(who) + ": the matrices of one launch must share type and width", cudaErrorInvalidValue);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The width and row-size conditions of the kernels' units and 16-byte loads (alignment of the data
// aside): whole 32-blocks for the quantised types, 8-element units in 16-byte rows for the float ones.
bool gemv_shape_ok(DType type, int64_t cols, uint64_t row_bytes) {
    if (gemv_quant_type(type)) return cols % 32 == 0;
    if (type == DType::F32 || type == DType::F16 || type == DType::BF16) return cols % 8 == 0 && row_bytes % 16 == 0;
    return false;
}

}  // namespace

bool gemv_quant_type(DType t) {
    return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q4_K || t == DType::Q5_K ||
           t == DType::Q6_K;
}

bool gemv_supports(const Matrix& W, const float* x) {
    return gemv_shape_ok(W.type, W.cols, W.row_bytes) && aligned16(W.data) && (gemv_quant_type(W.type) || aligned16(x));
}

void quantize_act_q8(const float* x, int32_t n, int64_t in, const ActQ8& a, cudaStream_t s) {
    const int64_t blocks = int64_t(n) * (in / 32);
    if (blocks == 0) return;
    const dim3 grid(unsigned((blocks + kQuantWarps - 1) / kQuantWarps));
    DG_CUDA_CHECK(DG_LAUNCH(quantize_act_kernel, grid, kQuantWarps * kWarp, 0, s, x, blocks, a.q, a.d, a.s));
}

void gemv_quant(const ActQ8& a, int32_t n, const GemvBatch& b, cudaStream_t s) {
    check_batch(b, "gemv_quant");
    const int64_t in = b.Ws[0].cols, nb = in / 32;
    auto act = [&](int32_t t0) { return QAct{a.q + int64_t(t0) * in, a.d + int64_t(t0) * nb, a.s + int64_t(t0) * nb}; };
    switch (b.Ws[0].type) {
        case DType::Q8_0: return run_tokens<DotQ8_0>(b, n, act, s);
        case DType::Q4_0: return run_tokens<DotQ4_x<false>>(b, n, act, s);
        case DType::Q4_1: return run_tokens<DotQ4_x<true>>(b, n, act, s);
        case DType::Q4_K: return run_tokens<DotQk<false>>(b, n, act, s);
        case DType::Q5_K: return run_tokens<DotQk<true>>(b, n, act, s);
        case DType::Q6_K: return run_tokens<DotQ6_K>(b, n, act, s);
        default: break;
    }
    throw DeviceError(std::string("gemv_quant: no quantised GEMV for ") + dtype_info(b.Ws[0].type).name,
                      cudaErrorInvalidValue);
}

bool moe_expert_gemv_supports(const ExpertMatrices& W) { return gemv_shape_ok(W.type, W.cols, W.row_bytes); }

void moe_expert_gemv(const ActQ8& xq, const float* x, bool x_rows_are_tokens, int32_t k, const ExpertMatrices& W,
                     const MoeRouting& r, float* y, cudaStream_t s) {
    const int32_t x_div = x_rows_are_tokens ? k : 1;
    const QAct q{xq.q, xq.d, xq.s};
    switch (W.type) {
        case DType::Q8_0: return launch_grouped<DotQ8_0>(W, q, x_div, r, y, s);
        case DType::Q4_0: return launch_grouped<DotQ4_x<false>>(W, q, x_div, r, y, s);
        case DType::Q4_1: return launch_grouped<DotQ4_x<true>>(W, q, x_div, r, y, s);
        case DType::Q4_K: return launch_grouped<DotQk<false>>(W, q, x_div, r, y, s);
        case DType::Q5_K: return launch_grouped<DotQk<true>>(W, q, x_div, r, y, s);
        case DType::Q6_K: return launch_grouped<DotQ6_K>(W, q, x_div, r, y, s);
        case DType::F32: return launch_grouped<DotFloat<DType::F32>>(W, FAct{x}, x_div, r, y, s);
        case DType::F16: return launch_grouped<DotFloat<DType::F16>>(W, FAct{x}, x_div, r, y, s);
        case DType::BF16: return launch_grouped<DotFloat<DType::BF16>>(W, FAct{x}, x_div, r, y, s);
        default: break;
    }
    throw DeviceError(std::string("moe_expert_gemv: no GEMV for ") + dtype_info(W.type).name, cudaErrorInvalidValue);
}

void gemv_float(const float* x, int32_t n, const GemvBatch& b, cudaStream_t s) {
    check_batch(b, "gemv_float");
    auto act = [&](int32_t t0) { return FAct{x + int64_t(t0) * b.Ws[0].cols}; };
    switch (b.Ws[0].type) {
        case DType::F32: return run_tokens<DotFloat<DType::F32>>(b, n, act, s);
        case DType::F16: return run_tokens<DotFloat<DType::F16>>(b, n, act, s);
        case DType::BF16: return run_tokens<DotFloat<DType::BF16>>(b, n, act, s);
        default: break;
    }
    throw DeviceError(std::string("gemv_float: no float GEMV for ") + dtype_info(b.Ws[0].type).name, cudaErrorInvalidValue);
}

}  // namespace dg::cuda
