// Chunked Gated DeltaNet prefill (sequences with len > 1), chunk 64, WY/UT form (docs/qwen35-model.md
// §2.8; twin of engine/cpu/gdn.cpp gdn_chunked_head), fp32 throughout, no tensor cores yet.
// Geometry and the FLOP count: docs/cuda.md. Written without a GPU: not yet run on one.
//
// gdn_prefill_kernel: grid (tiles, Hv, n_seqs), 256 threads, one block per (sequence, value head h,
// tile of TVP state columns). It keeps the state tile S[:, tile] in shared memory for the whole
// sequence and walks the chunks in order; per chunk it computes the conv + SiLU of q, k (key head
// h % Hk) and v (tile) straight from the pre-conv rows and the conv state, the gates, the L2 norms, and
//     A   = strict_lower(beta_r e^{gam_r - gam_s} k_r.k_s)          (gam = cumulative g in the chunk)
//     rhs = beta (V - e^gam (K S))
//     V'  = (I + A)^-1 rhs          (= U - W S of §2.8, since U = T beta V and W = T beta e^gam K)
//     O   = e^gam (Q S) + [(Q K^T) . D] V',  D_rs = e^{gam_r - gam_s} for s <= r
//     S   = e^{gam_last} S + sum_r (e^{gam_last - gam_r} k_r)^T V'_r
// Rows past the end of a partial chunk are zero (k = v = beta = 0, g = 0), which leaves S unchanged.
// The q/k conv is recomputed by every block of a key head (cheap next to the chunk matmuls); nothing
// writes qkv, so the conv state is shifted afterwards by gdn_prefill_conv_state_kernel.
#include <algorithm>
#include <map>
#include <mutex>

#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/gdn_kernel_args.cuh"
#include "engine/cuda/ops.cuh"
#include "engine/status.h"

namespace dg::cuda {
namespace {

constexpr int kChunk = 64;
constexpr int kPreThreads = 256;
constexpr int kAStride = kChunk + 1;  // row stride of A / P in shared memory

struct PrefillArgs : GdnKernelCommon {  // tiles == 1: whole head per block, gated norm fused
    int dkp;  // row stride of the q / k chunk tiles: odd, so column reads of 32 rows hit 32 banks
};

__host__ __device__ inline int q_k_stride(int dk) { return dk % 2 ? dk : dk + 1; }

// Shared memory of one block, in floats (the layout is spelled out at the top of the kernel).
__host__ __device__ inline int64_t prefill_smem_floats(int dk, int tvp) {
    return 2 * int64_t(kChunk) * q_k_stride(dk) + int64_t(dk) * tvp + 2 * int64_t(kChunk) * tvp +
           int64_t(kChunk) * kAStride + 4 * kChunk;
}

// silu(conv) of channel c at token tau of the sequence: sum_j w[c][j] x_{tau-(K-1)+j}, where x_p is the
// pre-conv row begin+p for p >= 0 and conv state row K-1+p before the sequence's first new token.
__device__ __forceinline__ float conv_silu(const PrefillArgs& p, const float* conv, int64_t begin, int64_t c,
                                           int tau) {
    const float* w = p.conv_w + c * p.K;
    float acc = 0.f;
    for (int j = 0; j < p.K; ++j) {
        const int pos = tau - (p.K - 1) + j;
        const float x = pos >= 0 ? p.qkv[(begin + pos) * p.C + c] : conv[int64_t(p.K - 1 + pos) * p.C + c];
        acc += w[j] * x;
    }
    return silu(acc);
}

template <int TVP>
__global__ void __launch_bounds__(kPreThreads, 1) gdn_prefill_kernel(const PrefillArgs p) {
    // Thread (ty, tx) of the register-tiled products owns tile columns j = tx + TX b (b < RN) and rows
    // r = ty + TY a of the chunk (a < RM; phases 3b, 6) or i = ty + TY a of the state (a < RI; phase 7).
    constexpr int TX = TVP < kWarp ? TVP : kWarp;
    constexpr int RN = TVP / TX;
    constexpr int TY = kPreThreads / TX;
    constexpr int RM = kChunk / TY;
    constexpr int RI = int(kGdnMaxDk) / TY;
    static_assert(TVP % TX == 0 && kChunk % TY == 0 && int(kGdnMaxDk) % TY == 0 && kWarp % TX == 0, "tiling");

    DG_DYNAMIC_SHARED(float, sm);
    const int dk = p.dk, dv = p.dv, dkp = p.dkp, Hv = p.Hv;
    float* Qs = sm;                             // [64][dkp]  q rows: conv, L2-normed, * dk^-1/2
    float* Ks = Qs + kChunk * dkp;              // [64][dkp]  k rows: conv, L2-normed
    float* Ss = Ks + kChunk * dkp;              // [dk][TVP]  state tile S[:, tile]
    float* Vs = Ss + dk * TVP;                  // [64][TVP]  v -> rhs -> V'
    float* Os = Vs + kChunk * TVP;              // [64][TVP]  e^gam (Q S)
    float* As = Os + kChunk * TVP;              // [64][65]   A, then P
    float* beta_s = As + kChunk * kAStride;     // [64] beta_r
    float* gam_s = beta_s + kChunk;             // [64] gam_r = sum_{i<=r} g_i
    float* eg_s = gam_s + kChunk;               // [64] e^{gam_r}
    float* ef_s = eg_s + kChunk;                // [64] e^{gam_last - gam_r}

    const int tid = threadIdx.x, lane = tid % kWarp, warp = tid / kWarp;
    const int tx = tid % TX, ty = tid / TX;
    const int t = blockIdx.x, h = blockIdx.y;
    const int kh = h % p.Hk;
    const DevSeq sq = p.seqs[blockIdx.z];
    const int64_t begin = sq.begin;
    const float* conv = p.st.base + int64_t(sq.state_slot) * p.st.slot_stride;  // [K-1][C], read only here
    float* S = p.st.base + int64_t(sq.state_slot) * p.st.slot_stride + p.st.conv_floats + int64_t(h) * dk * dv;
    const int jt0 = t * TVP;  // first state column of the tile
    const float qscale = rsqrtf(float(dk));

    // The state tile; columns past dv are zero and never written back.
    for (int idx = tid; idx < dk * TVP; idx += kPreThreads) {
        const int i = idx / TVP, col = jt0 + idx % TVP;
        Ss[idx] = col < dv ? S[int64_t(i) * dv + col] : 0.f;
    }

    for (int c0 = 0; c0 < sq.len; c0 += kChunk) {
        const int m = min(kChunk, sq.len - c0);  // real rows of this chunk
        __syncthreads();  // the previous chunk is done with Qs, Ks, Vs, As and the gates; Ss is current

        // (1) Conv + SiLU rows r < m (zero rows past m): q, k of key head kh, v of the tile.
        for (int idx = tid; idx < kChunk * 2 * dk; idx += kPreThreads) {
            const int r = idx / (2 * dk), cc = idx % (2 * dk);
            float y = 0.f;
            if (r < m) {
                const int64_t c = int64_t(kh) * dk + cc + (cc >= dk ? int64_t(p.Hk - 1) * dk : 0);
                y = conv_silu(p, conv, begin, c, c0 + r);
            }
            if (cc < dk) Qs[r * dkp + cc] = y;
            else Ks[r * dkp + cc - dk] = y;
        }
        for (int idx = tid; idx < kChunk * TVP; idx += kPreThreads) {
            const int r = idx / TVP, col = jt0 + idx % TVP;
            float y = 0.f;
            if (r < m && col < dv) y = conv_silu(p, conv, begin, 2 * int64_t(p.Hk) * dk + int64_t(h) * dv + col, c0 + r);
            Vs[idx] = y;
        }
        // Gates (warp 0, rows lane and 32 + lane): beta = sigmoid(b), g = ssm_a softplus(a + dt_bias);
        // gam = inclusive prefix sum of g over the chunk (shuffle scan), gam_last = gam_63 = gam_{m-1}.
        if (warp == 0) {
            float g[2];
#pragma unroll
            for (int u = 0; u < 2; ++u) {
                const int r = lane + kWarp * u;
                if (r < m) {
                    const int64_t gi = (begin + c0 + r) * Hv + h;
                    beta_s[r] = sigmoid(p.b[gi]);
                    g[u] = p.ssm_a[h] * softplus(p.a[gi] + p.dt_bias[h]);
                } else {
                    beta_s[r] = 0.f;
                    g[u] = 0.f;
                }
            }
            for (int off = 1; off < kWarp; off *= 2) {
                const float y0 = __shfl_up_sync(0xffffffffu, g[0], off);
                const float y1 = __shfl_up_sync(0xffffffffu, g[1], off);
                if (lane >= off) g[0] += y0, g[1] += y1;
            }
            g[1] += __shfl_sync(0xffffffffu, g[0], kWarp - 1);
            const float last = __shfl_sync(0xffffffffu, g[1], kWarp - 1);
#pragma unroll
            for (int u = 0; u < 2; ++u) {
                const int r = lane + kWarp * u;
                gam_s[r] = g[u];
                eg_s[r] = expf(g[u]);
                ef_s[r] = expf(last - g[u]);
            }
        }
        __syncthreads();

        // (2) L2 norm of each q and k row (docs §2.4): x / sqrt(sum x^2 + 1e-6), q also * dk^-1/2.
        //     Warp w takes rows w, w + 8, ... of the 128 (64 q rows, then 64 k rows).
        for (int v = warp; v < 2 * kChunk; v += kPreThreads / kWarp) {
            float* xr = v < kChunk ? Qs + v * dkp : Ks + (v - kChunk) * dkp;
            float ss = 0.f;
            for (int i = lane; i < dk; i += kWarp) ss += xr[i] * xr[i];
            ss = warp_sum(ss);
            const float inv = rsqrtf(ss + 1e-6f) * (v < kChunk ? qscale : 1.f);
            for (int i = lane; i < dk; i += kWarp) xr[i] *= inv;
        }
        __syncthreads();

        // (3a) k_r.k_s and q_r.k_s for all 64 x 64 (r, s), thread tile r = ar + 16 a, s = as + 16 b.
        //      A goes to As now; P = lower_incl(e^{gam_r - gam_s} q_r.k_s) waits in registers until the
        //      solve no longer needs A. The exponent is taken only for s <= r, where it is <= 0.
        const int ar = tid / 16, as = tid % 16;
        float pq[4][4];
        {
            float pk[4][4];
#pragma unroll
            for (int a = 0; a < 4; ++a)
#pragma unroll
                for (int b = 0; b < 4; ++b) pk[a][b] = pq[a][b] = 0.f;
            for (int i = 0; i < dk; ++i) {
                float kr[4], qr[4], ks[4];
#pragma unroll
                for (int a = 0; a < 4; ++a) {
                    kr[a] = Ks[(ar + 16 * a) * dkp + i];
                    qr[a] = Qs[(ar + 16 * a) * dkp + i];
                    ks[a] = Ks[(as + 16 * a) * dkp + i];
                }
#pragma unroll
                for (int a = 0; a < 4; ++a)
#pragma unroll
                    for (int b = 0; b < 4; ++b) {
                        pk[a][b] += kr[a] * ks[b];
                        pq[a][b] += qr[a] * ks[b];
                    }
            }
#pragma unroll
            for (int a = 0; a < 4; ++a)
#pragma unroll
                for (int b = 0; b < 4; ++b) {
                    const int r = ar + 16 * a, s = as + 16 * b;
                    const float e = s <= r ? expf(gam_s[r] - gam_s[s]) : 0.f;
                    As[r * kAStride + s] = s < r ? beta_s[r] * e * pk[a][b] : 0.f;
                    pq[a][b] *= e;
                }
        }

        // (3b) KS = K S and QS = Q S over dk for the tile; then rhs = beta (V - e^gam KS) in place of V and
        //      Os = e^gam QS. Each (r, j) is read and written by one thread.
        {
            float ks[RM][RN], qs[RM][RN];
#pragma unroll
            for (int a = 0; a < RM; ++a)
#pragma unroll
                for (int b = 0; b < RN; ++b) ks[a][b] = qs[a][b] = 0.f;
            for (int i = 0; i < dk; ++i) {
                float sv[RN];
#pragma unroll
                for (int b = 0; b < RN; ++b) sv[b] = Ss[i * TVP + tx + TX * b];
#pragma unroll
                for (int a = 0; a < RM; ++a) {
                    const float kv = Ks[(ty + TY * a) * dkp + i], qv = Qs[(ty + TY * a) * dkp + i];
#pragma unroll
                    for (int b = 0; b < RN; ++b) {
                        ks[a][b] += kv * sv[b];
                        qs[a][b] += qv * sv[b];
                    }
                }
            }
#pragma unroll
            for (int a = 0; a < RM; ++a) {
                const int r = ty + TY * a;
#pragma unroll
                for (int b = 0; b < RN; ++b) {
                    const int j = tx + TX * b;
                    Vs[r * TVP + j] = beta_s[r] * (Vs[r * TVP + j] - eg_s[r] * ks[a][b]);
                    Os[r * TVP + j] = eg_s[r] * qs[a][b];
                }
            }
        }
        __syncthreads();

        // (4) Forward substitution (I + A) V' = rhs: V'_r = rhs_r - sum_{s<r} A_rs V'_s. Thread j owns
        //     column j for every row, so no barrier is needed inside; A rows are broadcast reads. Rows
        //     r >= m stay 0 (rhs and A rows are 0 there).
        if (tid < TVP) {
            float* vc = Vs + tid;
            for (int r = 1; r < m; ++r) {
                const float* Ar = As + r * kAStride;
                float acc0 = 0.f, acc1 = 0.f, acc2 = 0.f, acc3 = 0.f;
                int s = 0;
                for (; s + 4 <= r; s += 4) {
                    acc0 += Ar[s] * vc[s * TVP];
                    acc1 += Ar[s + 1] * vc[(s + 1) * TVP];
                    acc2 += Ar[s + 2] * vc[(s + 2) * TVP];
                    acc3 += Ar[s + 3] * vc[(s + 3) * TVP];
                }
                for (; s < r; ++s) acc0 += Ar[s] * vc[s * TVP];
                vc[r * TVP] -= (acc0 + acc1) + (acc2 + acc3);
            }
        }
        __syncthreads();  // V' complete; A is dead

        // (5) P replaces A.
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
            for (int b = 0; b < 4; ++b) As[(ar + 16 * a) * kAStride + as + 16 * b] = pq[a][b];
        __syncthreads();

        // (6) O = Os + P V' (P is zero above the diagonal), then the output rows r < m. With the whole head
        //     in the tile the gated RMSNorm (docs §2.6) is applied here: row r's columns sit in the TX
        //     lanes sharing ty (an aligned group of a warp), reduced with xor shuffles.
        {
            float ov[RM][RN];
#pragma unroll
            for (int a = 0; a < RM; ++a)
#pragma unroll
                for (int b = 0; b < RN; ++b) ov[a][b] = Os[(ty + TY * a) * TVP + tx + TX * b];
            for (int s = 0; s < kChunk; ++s) {
                float vv[RN];
#pragma unroll
                for (int b = 0; b < RN; ++b) vv[b] = Vs[s * TVP + tx + TX * b];
#pragma unroll
                for (int a = 0; a < RM; ++a) {
                    const float pv = As[(ty + TY * a) * kAStride + s];
#pragma unroll
                    for (int b = 0; b < RN; ++b) ov[a][b] += pv * vv[b];
                }
            }
#pragma unroll
            for (int a = 0; a < RM; ++a) {
                const int r = ty + TY * a;
                float inv = 1.f;
                if (p.tiles == 1) {
                    float ss = 0.f;
#pragma unroll
                    for (int b = 0; b < RN; ++b)
                        if (jt0 + tx + TX * b < dv) ss += ov[a][b] * ov[a][b];
                    for (int off = TX / 2; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
                    inv = rsqrtf(ss / float(dv) + p.eps);
                }
                if (r < m) {
                    const int64_t base = ((begin + c0 + r) * Hv + h) * int64_t(dv);
#pragma unroll
                    for (int b = 0; b < RN; ++b) {
                        const int col = jt0 + tx + TX * b;
                        if (col >= dv) continue;
                        p.o[base + col] = p.tiles == 1 ? ov[a][b] * inv * p.norm_w[col] * silu(p.z[base + col])
                                                       : ov[a][b];
                    }
                }
            }
        }

        // (7) S = e^{gam_last} S + sum_r K_r^T (e^{gam_last - gam_r} V'_r) on the tile. Thread owns S rows
        //     i = ty + TY a and columns j = tx + TX b; nothing else touches them until the next chunk.
        {
            const float e_last = eg_s[kChunk - 1];
            float acc[RI][RN];
#pragma unroll
            for (int a = 0; a < RI; ++a)
#pragma unroll
                for (int b = 0; b < RN; ++b) acc[a][b] = 0.f;
            for (int r = 0; r < kChunk; ++r) {
                const float f = ef_s[r];
                float vv[RN];
#pragma unroll
                for (int b = 0; b < RN; ++b) vv[b] = f * Vs[r * TVP + tx + TX * b];
#pragma unroll
                for (int a = 0; a < RI; ++a) {
                    const int i = ty + TY * a;
                    if (i < dk) {
                        const float kv = Ks[r * dkp + i];
#pragma unroll
                        for (int b = 0; b < RN; ++b) acc[a][b] += kv * vv[b];
                    }
                }
            }
#pragma unroll
            for (int a = 0; a < RI; ++a) {
                const int i = ty + TY * a;
                if (i < dk) {
#pragma unroll
                    for (int b = 0; b < RN; ++b) {
                        float* sp = Ss + i * TVP + tx + TX * b;
                        *sp = e_last * *sp + acc[a][b];
                    }
                }
            }
        }
    }
    __syncthreads();
    for (int idx = tid; idx < dk * TVP; idx += kPreThreads) {
        const int i = idx / TVP, col = jt0 + idx % TVP;
        if (col < dv) S[int64_t(i) * dv + col] = Ss[idx];
    }
}

// After the prefill kernel (which read it): conv state row j = input at position len-(K-1)+j, i.e. the
// old state row len+j while that is negative. Ascending j reads rows above the one it writes.
__global__ void gdn_prefill_conv_state_kernel(const DevSeq* seqs, const float* qkv, int64_t C, int K,
                                              GdnLayerState st) {
    const DevSeq sq = seqs[blockIdx.y];
    const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (c >= C) return;
    float* conv = st.base + int64_t(sq.state_slot) * st.slot_stride;
    for (int j = 0; j < K - 1; ++j) {
        const int pos = sq.len - (K - 1) + j;
        conv[j * C + c] = pos >= 0 ? qkv[(int64_t(sq.begin) + pos) * C + c] : conv[int64_t(K - 1 + pos) * C + c];
    }
}

// Gated RMSNorm of the prefill rows when a head's dv was split over blocks: one block per (head, row),
// rows strided over gridDim.y.
__global__ void gdn_prefill_norm_kernel(const DevSeq* seqs, float* o, const float* z, const float* w, int Hv, int dv,
                                        float eps) {
    __shared__ float red[32];
    const DevSeq sq = seqs[blockIdx.z];
    for (int r = blockIdx.y; r < sq.len; r += gridDim.y) {
        const int64_t base = ((int64_t(sq.begin) + r) * Hv + blockIdx.x) * int64_t(dv);
        float ss = 0.f;
        for (int i = threadIdx.x; i < dv; i += blockDim.x) ss += o[base + i] * o[base + i];
        ss = block_sum(ss, red);
        const float inv = rsqrtf(ss / float(dv) + eps);
        for (int i = threadIdx.x; i < dv; i += blockDim.x) o[base + i] = o[base + i] * inv * w[i] * silu(z[base + i]);
        __syncthreads();  // red is reused by the next row's block_sum
    }
}

template <int TVP>
void launch_tile(const PrefillArgs& p, dim3 grid, cudaStream_t s) {
    const size_t bytes = size_t(prefill_smem_floats(p.dk, TVP)) * sizeof(float);
    // Above 48 KiB the kernel must opt in. The attribute belongs to the kernel on the current device, so
    // remember what was set per device (a process may drive several GPUs).
    static std::mutex mu;
    static std::map<int, size_t> opted;  // device -> bytes set for this TVP
    int dev = 0;
    DG_CUDA_CHECK(cudaGetDevice(&dev));
    {
        std::lock_guard<std::mutex> l(mu);
        if (bytes > opted[dev]) {
            DG_CUDA_CHECK(cudaFuncSetAttribute(gdn_prefill_kernel<TVP>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               int(bytes)));
            opted[dev] = bytes;
        }
    }
    DG_CUDA_CHECK(DG_LAUNCH((gdn_prefill_kernel<TVP>), grid, kPreThreads, bytes, s, p));
}

}  // namespace

int64_t gdn_prefill_smem_bytes(int cols, int64_t dk) { return prefill_smem_floats(int(dk), cols) * int64_t(sizeof(float)); }

int gdn_prefill_cols(const GdnDims& d, int32_t n_seqs, int forced) {
    const int64_t limit = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
    if (forced) {
        DG_CHECK(forced == 16 || forced == 32 || forced == 64 || forced == 128, "prefill cols %d: use 16, 32, 64 or 128",
                 forced);
        DG_CHECK(gdn_prefill_smem_bytes(forced, d.dk) <= limit, "prefill cols %d needs %lld B of shared memory, device has %lld",
                 forced, (long long)gdn_prefill_smem_bytes(forced, d.dk), (long long)limit);
        return forced;
    }
    // The narrowest tile that holds the whole head (gated norm fused), else the widest that fits.
    int cols = 16;
    while (cols < 128 && cols < d.dv) cols *= 2;
    while (cols > 16 && gdn_prefill_smem_bytes(cols, d.dk) > limit) cols /= 2;
    DG_CHECK(gdn_prefill_smem_bytes(cols, d.dk) <= limit,
             "GDN prefill kernel needs %lld B of shared memory for dk %d, device allows %lld",
             (long long)gdn_prefill_smem_bytes(cols, d.dk), int(d.dk), (long long)limit);
    // Few (sequence, head) pairs leave SMs idle (one block per SM at these sizes): halve the tile while
    // the halved grid still fits in one wave. Each extra tile recomputes the chunk's conv, A and P.
    const int64_t sms = device_attribute(cudaDevAttrMultiProcessorCount);
    while (cols > 32 && int64_t(n_seqs) * d.Hv * ((d.dv + cols / 2 - 1) / (cols / 2)) <= sms) cols /= 2;
    return cols;
}

void gdn_prefill(const GdnLayerArgs& a, const DevSeq* seqs_dev, const DevSeq* seqs_host, int32_t n_seqs, int cols,
                 cudaStream_t s) {
    if (n_seqs <= 0) return;
    const GdnDims& d = a.d;
    DG_CHECK(gdn_fast_supported(d), "GDN prefill kernel needs dk <= %d (dk %d)", int(kGdnMaxDk), int(d.dk));
    DG_CHECK(n_seqs <= 65535 && d.Hv <= 65535, "GDN prefill grid: %d sequences x %d heads", n_seqs, int(d.Hv));
    cols = gdn_prefill_cols(d, n_seqs, cols);
    PrefillArgs p;
    fill_gdn_kernel_common(a, seqs_dev, cols, &p);
    p.dkp = q_k_stride(p.dk);
    const dim3 grid(unsigned(p.tiles), unsigned(d.Hv), unsigned(n_seqs));
    switch (cols) {
        case 16: launch_tile<16>(p, grid, s); break;
        case 32: launch_tile<32>(p, grid, s); break;
        case 64: launch_tile<64>(p, grid, s); break;
        default: launch_tile<128>(p, grid, s); break;
    }
    DG_CUDA_CHECK(cudaGetLastError());
    // Stream order puts this after every block of the prefill kernel has read the old conv state.
    DG_CUDA_CHECK(DG_LAUNCH(gdn_prefill_conv_state_kernel, dim3(unsigned((d.conv_dim + 255) / 256), unsigned(n_seqs)), 256, 0, s, seqs_dev, a.qkv, d.conv_dim, int(d.K), a.st));
    if (p.tiles > 1) {
        int32_t max_len = 1;
        for (int32_t i = 0; i < n_seqs; ++i) max_len = std::max(max_len, seqs_host[i].len);
        DG_CUDA_CHECK(DG_LAUNCH(gdn_prefill_norm_kernel, dim3(unsigned(d.Hv), unsigned(std::min(max_len, 4096)), unsigned(n_seqs)), 128, 0, s, seqs_dev, a.o, a.z, a.norm_w, int(d.Hv), int(d.dv), a.eps));
    }
    DG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dg::cuda
