// Fused Gated DeltaNet decode (every sequence of the call has one new token): ONE launch per layer does
// the causal conv update + SiLU, the gates, the q/k L2 norm, the delta rule with the state tile held in
// registers, the output and the gated RMSNorm, for many sequences at once.
// Math: docs/qwen35-model.md §2.2-2.6; twin of engine/cpu/gdn.cpp (gdn_conv + gdn_recurrent_head).
// Geometry and the bytes bound: docs/cuda.md. Written without a GPU: not yet run on one.
//
// Grid (tiles, Hv, n_seqs); block 256 threads = 8 warps. Block (t, h, q) owns columns
// [t*TV, t*TV + TV) of value head h's state S [dk][dv] for decode sequence q, TV = 32 * VEC: lane l of
// warp w holds S[i][t*TV + l*VEC .. + VEC) for the rows i = w + 8 rr (rr < RPT), so each warp reads
// rows of TV contiguous floats (coalesced) and the state is read and written exactly once.
#include <algorithm>

#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/gdn_kernel_args.cuh"
#include "engine/cuda/ops.cuh"
#include "engine/status.h"

namespace dg::cuda {
namespace {

constexpr int kDecThreads = 256;
constexpr int kDecRowGroups = kDecThreads / kWarp;  // 8 warps, one row group each

struct DecodeArgs : GdnKernelCommon {
    uint32_t* conv_arrivals;  // [n_seqs][Hk]: blocks that have read key head kh's conv state
    uint32_t* norm_arrivals;  // [n_seqs][Hv]: tiles of head h that have written their raw output
    float* norm_partial;      // [n_seqs][Hv][tiles]: sum of o^2 over each tile
    ActQ8 o_q8;               // o's q8 blocks when o_q8.q is set (GdnLayerArgs::o_q8)
};

template <int VEC>
__device__ __forceinline__ void load_vec(const float* p, float (&x)[VEC]) {
    if constexpr (VEC == 4) {
        const float4 v = *reinterpret_cast<const float4*>(p);
        x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
    } else if constexpr (VEC == 2) {
        const float2 v = *reinterpret_cast<const float2*>(p);
        x[0] = v.x, x[1] = v.y;
    } else {
        x[0] = *p;
    }
}
template <int VEC>
__device__ __forceinline__ void store_vec(float* p, const float (&x)[VEC]) {
    if constexpr (VEC == 4) {
        *reinterpret_cast<float4*>(p) = make_float4(x[0], x[1], x[2], x[3]);
    } else if constexpr (VEC == 2) {
        *reinterpret_cast<float2*>(p) = make_float2(x[0], x[1]);
    } else {
        *p = x[0];
    }
}

// Channel of the conv for block-local index idx < 2 dk: q then k of key head kh.
__device__ __forceinline__ int64_t qk_channel(int idx, int kh, int Hk, int dk) {
    return int64_t(kh) * dk + idx + (idx >= dk ? int64_t(Hk - 1) * dk : 0);
}

// Conv state of channel c after one more input `cur`: rows [K-1][C], oldest first. Ascending j reads row
// j+1 before anything writes it.
__device__ __forceinline__ void conv_shift(float* conv, int64_t C, int K, int64_t c, float cur) {
    for (int j = 0; j + 1 < K - 1; ++j) conv[j * C + c] = conv[(j + 1) * C + c];
    if (K > 1) conv[int64_t(K - 2) * C + c] = cur;
}

// RPT: state rows per thread (dk <= 8 RPT); VEC: state columns per thread (TV = 32 VEC per block).
template <int RPT, int VEC>
__global__ void __launch_bounds__(kDecThreads) gdn_decode_kernel(const DecodeArgs p) {
    constexpr int TV = kWarp * VEC;
    // Column c_in_tile = lane * VEC + e is stored at [e * 32 + lane] so a warp's VEC-strided accesses
    // are 32 consecutive floats (no bank conflicts).
    __shared__ float qk[2 * kGdnMaxDk];             // conv'd, L2-normed q | k of key head kh
    __shared__ float vt[TV];                        // conv'd v of the tile
    __shared__ float red[2][kDecRowGroups][TV];     // per row group: partial S^T k, partial S^T q
    __shared__ int conv_last, norm_last;

    const int t = blockIdx.x, h = blockIdx.y, q = blockIdx.z;
    const int tid = threadIdx.x, lane = tid % kWarp, rg = tid / kWarp;
    const int Hk = p.Hk, Hv = p.Hv, dk = p.dk, dv = p.dv, K = p.K;
    const int64_t C = p.C;
    const int kh = h % Hk;
    const DevSeq sq = p.seqs[q];
    const int64_t row = sq.begin;
    float* conv = p.st.base + int64_t(sq.state_slot) * p.st.slot_stride;  // [K-1][C]
    float* S = conv + p.st.conv_floats + int64_t(h) * dk * dv;             // [dk][dv]
    const int col0 = t * TV + lane * VEC;  // this thread's first state column
    const bool col_ok = col0 < dv;         // dv % VEC == 0 (launcher): all VEC columns or none

    // (1) Issue the state loads first: they depend on nothing below and dominate the bytes.
    float s[RPT][VEC];
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) {
        const int i = rg + kDecRowGroups * rr;
        if (col_ok && i < dk) {
            load_vec<VEC>(S + int64_t(i) * dv + col0, s[rr]);
        } else {
#pragma unroll
            for (int e = 0; e < VEC; ++e) s[rr][e] = 0.f;
        }
    }

    // (2) Conv + SiLU for the channels this block reads: q and k of key head kh (2 dk channels, shared
    //     with the other R*tiles - 1 blocks of kh) and v of this tile (TV channels, this block's alone).
    //     y_c = silu(sum_{j<K-1} w[c][j] state[j][c] + w[c][K-1] x_c)  (tap K-1 = the new token).
    const float* x = p.qkv + row * C;
    for (int idx = tid; idx < 2 * dk + TV; idx += kDecThreads) {
        int64_t c;
        if (idx < 2 * dk) {
            c = qk_channel(idx, kh, Hk, dk);
        } else {
            const int jj = idx - 2 * dk, col = t * TV + jj;  // jj = lane' * VEC + e'
            if (col >= dv) {
                vt[(jj % VEC) * kWarp + jj / VEC] = 0.f;
                continue;
            }
            c = 2 * int64_t(Hk) * dk + int64_t(h) * dv + col;
        }
        const float* w = p.conv_w + c * K;
        const float cur = x[c];
        float acc = w[K - 1] * cur;
        for (int j = 0; j < K - 1; ++j) acc += w[j] * conv[j * C + c];
        const float y = silu(acc);
        if (idx < 2 * dk) {
            qk[idx] = y;
        } else {
            const int jj = idx - 2 * dk;
            vt[(jj % VEC) * kWarp + jj / VEC] = y;
            conv_shift(conv, C, K, c, cur);  // only this block reads v channel c: shift now
        }
    }

    // (3) Gates (docs §2.3), the same value in every thread: beta = sigmoid(b), decay = exp(g),
    //     g = ssm_a * softplus(a + dt_bias).
    const int64_t gi = row * Hv + h;
    const float beta = sigmoid(p.b[gi]);
    const float decay = expf(p.ssm_a[h] * softplus(p.a[gi] + p.dt_bias[h]));
    __syncthreads();  // qk, vt written; every thread's reads of the old conv state are done

    // (4) L2 norm (docs §2.4): warp 0 normalises q (and scales it by dk^-1/2), warp 1 k:
    //     x / sqrt(sum x^2 + 1e-6).
    if (rg < 2) {
        float* xv = qk + rg * dk;
        float ss = 0.f;
        for (int i = lane; i < dk; i += kWarp) ss += xv[i] * xv[i];
        ss = warp_sum(ss);
        const float inv = rsqrtf(ss + 1e-6f) * (rg == 0 ? rsqrtf(float(dk)) : 1.f);
        for (int i = lane; i < dk; i += kWarp) xv[i] *= inv;
    }
    // The q/k conv state of (q, kh) is read by R * tiles blocks; the last to arrive shifts it, after
    // all of them have read it (arrival counter: fence, then atomic; CUDA's threadFenceReduction).
    if (tid == 0) {
        __threadfence();
        const uint32_t readers = uint32_t(Hv / Hk) * uint32_t(p.tiles);
        conv_last = atomicAdd(p.conv_arrivals + int64_t(q) * Hk + kh, 1u) == readers - 1;
    }
    __syncthreads();  // q, k normalised; conv_last set
    if (conv_last) {
        __threadfence();
        for (int idx = tid; idx < 2 * dk; idx += kDecThreads) {
            const int64_t c = qk_channel(idx, kh, Hk, dk);
            conv_shift(conv, C, K, c, x[c]);
        }
        if (tid == 0) atomicExch(p.conv_arrivals + int64_t(q) * Hk + kh, 0u);
    }

    // (5) Delta rule (docs §2.5) on the tile, columns independent:
    //     S <- decay S;  m = S^T k;  delta = beta (v - m);  S <- S + k delta^T;  o = S^T q.
    //     Each thread sums its RPT rows, the 8 row groups meet in shared memory.
    const float* qn = qk;
    const float* kn = qk + dk;
    float part[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) part[e] = 0.f;
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) {
        const int i = rg + kDecRowGroups * rr;
        if (i < dk) {
            const float ki = kn[i];
#pragma unroll
            for (int e = 0; e < VEC; ++e) {
                s[rr][e] *= decay;
                part[e] += s[rr][e] * ki;
            }
        }
    }
#pragma unroll
    for (int e = 0; e < VEC; ++e) red[0][rg][e * kWarp + lane] = part[e];
    __syncthreads();
    float delta[VEC];
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
        float m = 0.f;
#pragma unroll
        for (int g = 0; g < kDecRowGroups; ++g) m += red[0][g][e * kWarp + lane];
        delta[e] = beta * (vt[e * kWarp + lane] - m);
        part[e] = 0.f;
    }
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) {
        const int i = rg + kDecRowGroups * rr;
        if (i < dk) {
            const float ki = kn[i], qi = qn[i];
#pragma unroll
            for (int e = 0; e < VEC; ++e) {
                s[rr][e] += ki * delta[e];
                part[e] += s[rr][e] * qi;
            }
            if (col_ok) store_vec<VEC>(S + int64_t(i) * dv + col0, s[rr]);
        }
    }
#pragma unroll
    for (int e = 0; e < VEC; ++e) red[1][rg][e * kWarp + lane] = part[e];
    __syncthreads();

    // (6) Output and gated RMSNorm (docs §2.6): o / sqrt(mean_dv(o^2) + eps) * norm_w * silu(z).
    float* orow = p.o + (row * Hv + h) * int64_t(dv);
    const float* zrow = p.z + (row * Hv + h) * int64_t(dv);
    if (rg == 0) {
        float ov[VEC], ss = 0.f;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
            float acc = 0.f;
#pragma unroll
            for (int g = 0; g < kDecRowGroups; ++g) acc += red[1][g][e * kWarp + lane];
            ov[e] = acc;
            if (col_ok) ss += acc * acc;
        }
        ss = warp_sum(ss);  // over this tile's columns
        if (p.tiles == 1) {
            const float inv = rsqrtf(ss / float(dv) + p.eps);
            float v[VEC];
#pragma unroll
            for (int e = 0; e < VEC; ++e) {
                const int col = col0 + e;
                v[e] = col_ok ? ov[e] * inv * p.norm_w[col] * silu(zrow[col]) : 0.f;
                if (col_ok) orow[col] = v[e];
            }
            if (p.o_q8.q) {  // dv % 32 == 0: a block's lanes are all col_ok or none
                const int64_t first = (row * Hv + h) * int64_t(dv) + t * TV;  // the warp's first value
                quantize_q8_blocks_vec<VEC>(v, lane, col_ok, p.o_q8.q + first, p.o_q8.d + first / 32,
                                            p.o_q8.s + first / 32);
            }
        } else {
            if (col_ok) {
#pragma unroll
                for (int e = 0; e < VEC; ++e) orow[col0 + e] = ov[e];
            }
            if (lane == 0) p.norm_partial[(int64_t(q) * Hv + h) * p.tiles + t] = ss;
            __threadfence();
        }
    }
    if (p.tiles == 1) return;  // uniform over the grid

    // dv is split over `tiles` blocks: the last tile block of (q, h) to arrive normalises the whole row,
    // reading the other tiles' raw outputs through L2 (__ldcg: L1 is not coherent across blocks).
    __syncthreads();
    if (tid == 0) {
        __threadfence();
        norm_last = atomicAdd(p.norm_arrivals + int64_t(q) * Hv + h, 1u) == uint32_t(p.tiles) - 1;
    }
    __syncthreads();
    if (!norm_last) return;
    __threadfence();
    float ss = 0.f;
    for (int u = 0; u < p.tiles; ++u) ss += __ldcg(p.norm_partial + (int64_t(q) * Hv + h) * p.tiles + u);
    const float inv = rsqrtf(ss / float(dv) + p.eps);
    for (int col = tid; col < dv; col += kDecThreads) {  // with q8 blocks (dv % 32 == 0) whole warps iterate
        const float v = __ldcg(orow + col) * inv * p.norm_w[col] * silu(zrow[col]);
        orow[col] = v;
        if (p.o_q8.q) {
            const int64_t at = (row * Hv + h) * int64_t(dv) + col;
            quantize_q8_block(v, lane, p.o_q8.q + at - lane, p.o_q8.d + at / 32, p.o_q8.s + at / 32);
        }
    }
    if (tid == 0) atomicExch(p.norm_arrivals + int64_t(q) * Hv + h, 0u);
}

template <int VEC>
void launch_vec(const DecodeArgs& p, dim3 grid, cudaStream_t s) {
    const int rpt = (p.dk + kDecRowGroups - 1) / kDecRowGroups;
    if (rpt <= 1) DG_CUDA_CHECK(DG_LAUNCH((gdn_decode_kernel<1, VEC>), grid, kDecThreads, 0, s, p));
    else if (rpt <= 2) DG_CUDA_CHECK(DG_LAUNCH((gdn_decode_kernel<2, VEC>), grid, kDecThreads, 0, s, p));
    else if (rpt <= 4) DG_CUDA_CHECK(DG_LAUNCH((gdn_decode_kernel<4, VEC>), grid, kDecThreads, 0, s, p));
    else if (rpt <= 8) DG_CUDA_CHECK(DG_LAUNCH((gdn_decode_kernel<8, VEC>), grid, kDecThreads, 0, s, p));
    else DG_CUDA_CHECK(DG_LAUNCH((gdn_decode_kernel<16, VEC>), grid, kDecThreads, 0, s, p));  // dk <= 128 (gdn_fast_supported)
}

// float2/float4 state access needs every (slot, head, row) start aligned to VEC floats.
bool vec_aligned(const GdnLayerArgs& a, int vec) {
    return a.d.dv % vec == 0 && a.st.slot_stride % vec == 0 && a.st.conv_floats % vec == 0 &&
           reinterpret_cast<uintptr_t>(a.st.base) % (sizeof(float) * vec) == 0;
}

}  // namespace

int gdn_decode_cols(const GdnLayerArgs& a, int32_t n_seqs, int forced) {
    if (forced) {
        DG_CHECK(forced == 32 || forced == 64 || forced == 128, "decode cols %d: use 32, 64 or 128", forced);
        DG_CHECK(vec_aligned(a, forced / 32), "decode cols %d: state rows are not %d-float aligned", forced, forced / 32);
        return forced;
    }
    // Whole heads (128 columns, fused norm, no arrival pass) when that already gives two blocks per SM;
    // otherwise narrower tiles so small batches still spread over the GPU.
    const int64_t want = 2 * int64_t(device_attribute(cudaDevAttrMultiProcessorCount));
    for (int cols : {128, 64}) {
        const int64_t blocks = int64_t(n_seqs) * a.d.Hv * ((a.d.dv + cols - 1) / cols);
        if (vec_aligned(a, cols / 32) && blocks >= want) return cols;
    }
    return 32;
}

void gdn_decode(const GdnLayerArgs& a, const DevSeq* seqs_dev, int32_t n_seqs, const GdnWorkspace& ws, int cols,
                cudaStream_t s) {
    if (n_seqs <= 0) return;
    const GdnDims& d = a.d;
    DG_CHECK(gdn_fast_supported(d), "GDN decode kernel needs dk <= %d (dk %d)", int(kGdnMaxDk), int(d.dk));
    DG_CHECK(n_seqs <= 65535 && d.Hv <= 65535, "GDN decode grid: %d sequences x %d heads", n_seqs, int(d.Hv));
    cols = gdn_decode_cols(a, n_seqs, cols);
    DecodeArgs p;
    fill_gdn_kernel_common(a, seqs_dev, cols, &p);
    p.conv_arrivals = ws.arrivals;
    p.norm_arrivals = ws.arrivals + int64_t(n_seqs) * d.Hk;
    p.norm_partial = ws.partial;
    DG_CHECK(!a.o_q8.q || d.dv % 32 == 0, "GDN decode: o's q8 blocks need dv %% 32 == 0 (dv %d)", int(d.dv));
    p.o_q8 = a.o_q8;
    const dim3 grid(unsigned(p.tiles), unsigned(d.Hv), unsigned(n_seqs));
    if (cols == 128) launch_vec<4>(p, grid, s);
    else if (cols == 64) launch_vec<2>(p, grid, s);
    else launch_vec<1>(p, grid, s);
    DG_CUDA_CHECK(cudaGetLastError());  // a lazy module load can fail here (out of memory)
}

}  // namespace dg::cuda
