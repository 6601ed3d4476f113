// Gated attention on CUDA over the paged KV cache. Twin of engine/cpu/attention.cpp (same math: q/k
// zero-centred RMSNorm, partial half-split RoPE, K/V stored in the cache's type and read back from it,
// causal GQA softmax, sigmoid output gate); design and geometry in docs/cuda.md "Attention".
//
//  - decode (len 1): flash-decoding. decode_split_kernel: a block per (sequence, KV head [, head chunk],
//    split) streams its split's positions straight from the paged cache, dequantising K and V in place
//    once for all the query heads of its GQA group, with an online softmax per head; it also stores the
//    new token's K/V (only the split holding that position reads it). decode_combine_kernel merges the
//    splits and applies the gate. Two launches for all decode sequences of a step.
//  - prefill (len > 1): kv_write_kernel stores the chunk's K/V, then prefill_kernel, a tiled flash
//    attention: a block per (16 query rows of one KV head's group, KV head), KV in shared-memory tiles of
//    32 positions read once for the 16 rows, online softmax per row and tile. No score buffer: the only
//    workspace is the decode partials (attention_geometry.h), independent of the context length.
//
// Lanes own head-dim columns e*32 + lane (e < hd/32): a warp reads a K/V row coalesced, one 32-value
// quant block per step of e, and shared-memory rows without bank conflicts.
#include "engine/cuda/attention_geometry.h"
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.cuh"

namespace dg::cuda {
namespace {

constexpr int kThreads = 128, kWarps = kThreads / kWarp;
constexpr int kMaxG = int(kAttnMaxGroup);
constexpr int kRowsPerWarp = 4;                      // prefill query rows per warp
constexpr int kPrefillRows = kWarps * kRowsPerWarp;  // query rows (token, head) per prefill block
constexpr int kTile = kWarp;                         // prefill KV positions per tile: one per lane

AttnTiling g_tiling;  // tests and the benchmark force the split count (set_attention_tiling)

__device__ __forceinline__ uint8_t* kv_row(uint8_t* base, const DevSeq& s, int64_t pos, int64_t head, int64_t Hkv,
                                           const KvLayerDev& kv) {
    const int64_t block = s.blocks[pos / kv.block_tokens], off = pos % kv.block_tokens;
    return base + ((block * kv.block_tokens + off) * Hkv + head) * kv.row_bytes;
}

// RoPE on dims [0, rd) in half-split pairs, frequencies in f32 as the CPU (engine/cpu/attention.cpp).
__device__ __forceinline__ void rope_pair(float* x, int64_t j, int64_t rd, float theta, int64_t pos) {
    const int64_t half = rd / 2;
    const float inv_freq = 1.f / powf(theta, float(2 * j) / float(rd));
    const float ang = float(pos) * inv_freq;
    const float c = float(cos(double(ang))), sn = float(sin(double(ang)));
    const float x1 = x[j], x2 = x[j + half];
    x[j] = x1 * c - x2 * sn;
    x[j + half] = x2 * c + x1 * sn;
}

// RMSNorm (zero-centred weight already 1+w) then RoPE of one row in shared memory, by the whole block.
__device__ void block_norm_rope(float* x, const float* w, int64_t hd, int64_t rd, float theta, int64_t pos, float eps,
                                float* red) {
    float ss = 0.f;
    for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) ss += x[i] * x[i];
    ss = block_sum(ss, red);
    const float inv = rsqrtf(ss / float(hd) + eps);
    for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) x[i] *= inv * w[i];
    __syncthreads();
    for (int64_t j = threadIdx.x; j < rd / 2; j += blockDim.x) rope_pair(x, j, rd, theta, pos);
    __syncthreads();
}

// The same by one warp (each warp of a block prepares its own rows).
__device__ void warp_norm_rope(float* x, const float* w, int64_t hd, int64_t rd, float theta, int64_t pos, float eps) {
    const int lane = int(threadIdx.x) % kWarp;
    float ss = 0.f;
    for (int64_t i = lane; i < hd; i += kWarp) ss += x[i] * x[i];
    ss = warp_sum(ss);
    const float inv = rsqrtf(ss / float(hd) + eps);
    for (int64_t i = lane; i < hd; i += kWarp) x[i] *= inv * w[i];
    __syncwarp();
    for (int64_t j = lane; j < rd / 2; j += kWarp) rope_pair(x, j, rd, theta, pos);
    __syncwarp();
}

// Stores row x (hd values) in `type` with the block's threads; Q8_0 / Q4_0 as ggml's reference quantisers
// (and engine/formats quantize_row) do.
__device__ void store_row(DType type, const float* x, int64_t hd, uint8_t* dst) {
    if (type == DType::F32 || type == DType::F16 || type == DType::BF16) {
        for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) {
            if (type == DType::F32) reinterpret_cast<float*>(dst)[i] = x[i];
            else if (type == DType::F16) reinterpret_cast<__half*>(dst)[i] = __float2half_rn(x[i]);
            else {
                const uint32_t bits = __float_as_uint(x[i]);
                const uint16_t h = isnan(x[i]) ? uint16_t(0x7fc0) : uint16_t((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
                dst[2 * i] = uint8_t(h & 0xff);
                dst[2 * i + 1] = uint8_t(h >> 8);
            }
        }
        return;
    }
    for (int64_t blk = threadIdx.x; blk < hd / 32; blk += blockDim.x) {
        const float* v = x + blk * 32;
        if (type == DType::Q8_0) {
            uint8_t* b = dst + blk * 34;
            float amax = 0.f;
            for (int j = 0; j < 32; ++j) amax = fmaxf(amax, fabsf(v[j]));
            const float d = amax / 127.f, id = d ? 1.f / d : 0.f;
            const uint16_t dh = __half_as_ushort(__float2half_rn(d));
            b[0] = uint8_t(dh & 0xff), b[1] = uint8_t(dh >> 8);
            for (int j = 0; j < 32; ++j) b[2 + j] = uint8_t(int8_t(roundf(v[j] * id)));
        } else {  // Q4_0
            uint8_t* b = dst + blk * 18;
            float amax = 0.f, mx = 0.f;
            for (int j = 0; j < 32; ++j)
                if (fabsf(v[j]) > amax) amax = fabsf(v[j]), mx = v[j];
            const float d = mx / -8.f, id = d ? 1.f / d : 0.f;
            const uint16_t dh = __half_as_ushort(__float2half_rn(d));
            b[0] = uint8_t(dh & 0xff), b[1] = uint8_t(dh >> 8);
            for (int j = 0; j < 16; ++j) {
                const int q0 = min(15, int(int8_t(v[j] * id + 8.5f))), q1 = min(15, int(int8_t(v[j + 16] * id + 8.5f)));
                b[2 + j] = uint8_t(q0 | (q1 << 4));
            }
        }
    }
}

// One step of the online softmax for one query row: score `s` of a new position whose V columns (this
// lane's) are `v`. m: running max, l: running sum of exp(score - m), acc: running sum of exp(.) * V.
template <int EPL>
__device__ __forceinline__ void online_step(float s, const float* v, float& m, float& l, float* acc) {
    if (s > m) {  // first position: m = -inf, the factor is 0 and acc, l are 0 anyway
        const float c = expf(m - s);
        l *= c;
#pragma unroll
        for (int e = 0; e < EPL; ++e) acc[e] *= c;
        m = s;
    }
    const float p = expf(s - m);
    l += p;
#pragma unroll
    for (int e = 0; e < EPL; ++e) acc[e] += p * v[e];
}

// This lane's columns e * 32 + lane (e < EPL) of a K/V row in the cache's type, with dq_elem's formulas
// (cuda_common.cuh); the type switch sits outside the column loop. For q8_0 / q4_0 step e is quant
// block e: one scale and this lane's byte (nibble).
template <int EPL>
__device__ __forceinline__ void load_cols(DType t, const uint8_t* row, int lane, float* x) {
    switch (t) {
        case DType::F16:
#pragma unroll
            for (int e = 0; e < EPL; ++e) x[e] = load_f16(row + 2 * (e * kWarp + lane));
            break;
        case DType::BF16:
#pragma unroll
            for (int e = 0; e < EPL; ++e) x[e] = load_bf16(row + 2 * (e * kWarp + lane));
            break;
        case DType::Q8_0:
#pragma unroll
            for (int e = 0; e < EPL; ++e) x[e] = load_f16(row + e * 34) * float(int8_t(row[e * 34 + 2 + lane]));
            break;
        case DType::Q4_0: {
            const int byte = 2 + (lane & 15), shift = lane < 16 ? 0 : 4;
#pragma unroll
            for (int e = 0; e < EPL; ++e) x[e] = load_f16(row + e * 18) * float(((row[e * 18 + byte] >> shift) & 0xF) - 8);
            break;
        }
        default:  // F32 (init_caches admits no other KV type)
#pragma unroll
            for (int e = 0; e < EPL; ++e) x[e] = reinterpret_cast<const float*>(row)[e * kWarp + lane];
    }
}

// The query heads a block serves: `chunks` blocks per KV head, each a run of ceil(G / chunks) heads.
struct HeadRun {
    int64_t h, g0, ng;  // KV head, first head of the group it serves, how many
};
__device__ __forceinline__ HeadRun head_run(unsigned by, int64_t G, int64_t chunks) {
    const int64_t h = by / chunks, c = by % chunks, per = (G + chunks - 1) / chunks;
    return {h, c * per, min(per, G - c * per)};
}

// ---------------------------------------------------------------------------------------------------
// Decode. Grid (splits, Hkv * chunks, n_decode), kThreads threads. Split x of a sequence with context
// ctx = pos + 1 covers whole KV blocks: bps = ceil(ceil(ctx / bt) / splits) blocks from block x * bps
// (empty when past the end). Warps take positions round robin; each lane keeps EPL columns of every
// head's accumulator in registers; the warps' states merge in shared memory at the end.
// part[((z * Hq + q head) * splits + x) * (hd + 2)]: hd accumulators, max, sum.
template <int EPL>
__global__ void decode_split_kernel(const DevSeq* seqs, const float* qg, const float* k_in, const float* v_in,
                                    const float* q_norm, const float* k_norm, AttnDims d, float eps, KvLayerDev kv,
                                    int splits, int chunks, float* part) {
    DG_DYNAMIC_SHARED(float, sm);
    const int lane = int(threadIdx.x) % kWarp, warp = int(threadIdx.x) / kWarp;
    const int64_t hd = d.hd, G = d.Hq / d.Hkv;
    const DevSeq s = seqs[blockIdx.z];
    const HeadRun hr = head_run(blockIdx.y, G, chunks);
    const int64_t h = hr.h, ng = hr.ng, q0 = h * G + hr.g0;
    const int64_t pos = s.pos0, r = s.begin, ctx = pos + 1, bt = kv.block_tokens;
    const int64_t bps = ((ctx + bt - 1) / bt + splits - 1) / splits;
    const int64_t p0 = int64_t(blockIdx.x) * bps * bt, p1 = min(ctx, (int64_t(blockIdx.x) + 1) * bps * bt);
    float* out_part = part + ((int64_t(blockIdx.z) * d.Hq + q0) * splits + blockIdx.x) * (hd + 2);
    const int64_t head_stride = int64_t(splits) * (hd + 2);
    if (p0 >= p1) {  // nothing of this sequence here: an empty partial (the combine gives it weight 0)
        for (int64_t i = threadIdx.x; i < ng * (hd + 2); i += blockDim.x) {
            const int64_t g = i / (hd + 2), c = i % (hd + 2);
            out_part[g * head_stride + c] = c == hd ? -INFINITY : 0.f;
        }
        return;
    }
    float* qs = sm;                          // [kMaxG][hd] the normed, rotated queries
    float* wacc = qs + kMaxG * hd;           // [kWarps][kMaxG][hd] per-warp accumulators
    float* wm = wacc + kWarps * kMaxG * hd;  // [kWarps][kMaxG] per-warp max
    float* wl = wm + kWarps * kMaxG;         // [kWarps][kMaxG] per-warp sum
    float* krow = wl + kWarps * kMaxG;       // [hd] the new token's K row

    // The new token's K/V: stored by the one split that reads its position (every chunk of a group
    // larger than 8 heads stores the same bytes), then read back quantised like every other position.
    if (pos >= p0 && pos < p1) {
        if (warp == 0) {
            for (int64_t i = lane; i < hd; i += kWarp) krow[i] = k_in[(r * d.Hkv + h) * hd + i];
            __syncwarp();
            warp_norm_rope(krow, k_norm, hd, d.rotary_dim, d.rope_theta, pos, eps);
        }
        __syncthreads();
        store_row(kv.type, krow, hd, kv_row(kv.k, s, pos, h, d.Hkv, kv));
        store_row(kv.type, v_in + (r * d.Hkv + h) * hd, hd, kv_row(kv.v, s, pos, h, d.Hkv, kv));
    }
    for (int64_t g = warp; g < ng; g += kWarps) {
        float* x = qs + g * hd;
        const float* src = qg + (r * d.Hq + q0 + g) * 2 * hd;  // per head [query hd | gate hd]
        for (int64_t i = lane; i < hd; i += kWarp) x[i] = src[i];
        __syncwarp();
        warp_norm_rope(x, q_norm, hd, d.rotary_dim, d.rope_theta, pos, eps);
    }
    __syncthreads();  // the queries, and the new K/V row in global memory, are visible to every warp

    // Accumulators in registers (G x EPL per lane); the queries stay in shared memory (conflict-free
    // reads, lane-strided), which keeps the hd 256, G 8 instance within 255 registers.
    float acc[kMaxG][EPL], m[kMaxG], l[kMaxG];
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) {
        m[g] = -INFINITY, l[g] = 0.f;
#pragma unroll
        for (int e = 0; e < EPL; ++e) acc[g][e] = 0.f;
    }
    const float scale = rsqrtf(float(hd));
    for (int64_t p = p0 + warp; p < p1; p += kWarps) {
        const uint8_t* kr = kv_row(kv.k, s, p, h, d.Hkv, kv);
        const uint8_t* vr = kv_row(kv.v, s, p, h, d.Hkv, kv);
        float kx[EPL], vx[EPL];
        load_cols<EPL>(kv.type, kr, lane, kx);
        load_cols<EPL>(kv.type, vr, lane, vx);
#pragma unroll
        for (int g = 0; g < kMaxG; ++g) {
            if (g >= ng) break;
            float dot = 0.f;
#pragma unroll
            for (int e = 0; e < EPL; ++e) dot += qs[g * hd + e * kWarp + lane] * kx[e];
            online_step<EPL>(warp_sum(dot) * scale, vx, m[g], l[g], acc[g]);
        }
    }
#pragma unroll
    for (int g = 0; g < kMaxG; ++g) {
        if (g >= ng) break;
#pragma unroll
        for (int e = 0; e < EPL; ++e) wacc[(warp * kMaxG + g) * hd + e * kWarp + lane] = acc[g][e];
        if (lane == 0) wm[warp * kMaxG + g] = m[g], wl[warp * kMaxG + g] = l[g];
    }
    __syncthreads();
    // Merge the warps (a warp that saw no position has max -inf and weight 0).
    for (int64_t i = threadIdx.x; i < ng * (hd + 2); i += blockDim.x) {
        const int64_t g = i / (hd + 2), c = i % (hd + 2);
        float M = -INFINITY;
        for (int w = 0; w < kWarps; ++w) M = fmaxf(M, wm[w * kMaxG + g]);
        float v = 0.f;
        if (c == hd) {
            v = M;
        } else {
            for (int w = 0; w < kWarps; ++w) {
                const float mw = wm[w * kMaxG + g];
                if (mw == -INFINITY) continue;
                v += expf(mw - M) * (c < hd ? wacc[(w * kMaxG + g) * hd + c] : wl[w * kMaxG + g]);
            }
        }
        out_part[g * head_stride + c] = v;
    }
}

// Grid (Hq, n_decode): out = (sum over splits of acc e^(m - M)) / (sum of l e^(m - M)) * sigmoid(gate).
__global__ void decode_combine_kernel(const DevSeq* seqs, const float* qg, AttnDims d, int splits, const float* part,
                                      float* out) {
    __shared__ float wgt[kAttnMaxSplits];
    __shared__ float total;
    const int64_t hd = d.hd, hq = blockIdx.x, r = seqs[blockIdx.y].begin;
    const float* P = part + (int64_t(blockIdx.y) * d.Hq + hq) * splits * (hd + 2);
    float M = -INFINITY;
    for (int x = 0; x < splits; ++x) M = fmaxf(M, P[x * (hd + 2) + hd]);
    for (int x = int(threadIdx.x); x < splits; x += int(blockDim.x)) {
        const float mx = P[x * (hd + 2) + hd];
        wgt[x] = mx == -INFINITY ? 0.f : expf(mx - M);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float L = 0.f;
        for (int x = 0; x < splits; ++x) L += wgt[x] * P[x * (hd + 2) + hd + 1];
        total = L;
    }
    __syncthreads();
    const float* gate = qg + (r * d.Hq + hq) * 2 * hd + hd;
    for (int64_t c = threadIdx.x; c < hd; c += blockDim.x) {
        float a = 0.f;
        for (int x = 0; x < splits; ++x) a += wgt[x] * P[x * (hd + 2) + c];
        out[(r * d.Hq + hq) * hd + c] = a / total / (1.f + expf(-gate[c]));
    }
}

// ---------------------------------------------------------------------------------------------------
// Prefill. kv_write_kernel: grid (max len * Hkv, n_prefill); K norm + RoPE + store, V store, per
// (token, KV head). Runs before prefill_kernel, which reads the whole chunk's positions.
__global__ void kv_write_kernel(const DevSeq* seqs, const float* k_in, const float* v_in, const float* k_norm,
                                AttnDims d, float eps, KvLayerDev kv) {
    DG_DYNAMIC_SHARED(float, row);
    __shared__ float red[32];
    const DevSeq s = seqs[blockIdx.y];
    const int64_t t = blockIdx.x / d.Hkv, h = blockIdx.x % d.Hkv, r = s.begin + t, pos = s.pos0 + t;
    if (t >= s.len) return;
    for (int64_t i = threadIdx.x; i < d.hd; i += blockDim.x) row[i] = k_in[(r * d.Hkv + h) * d.hd + i];
    __syncthreads();
    block_norm_rope(row, k_norm, d.hd, d.rotary_dim, d.rope_theta, pos, eps, red);
    store_row(kv.type, row, d.hd, kv_row(kv.k, s, pos, h, d.Hkv, kv));
    store_row(kv.type, v_in + (r * d.Hkv + h) * d.hd, d.hd, kv_row(kv.v, s, pos, h, d.Hkv, kv));
}

// Grid (ceil(max len * heads per chunk / 16), Hkv * chunks, n_prefill), kThreads threads. The block's
// 16 query rows are (token, head) pairs of one KV head, token-major; warp w owns rows 4w..4w+3. KV
// positions [0, last row's position] pass through shared memory 32 at a time (K and V dequantised to
// f32 once for the 16 rows). Per tile and row, lane j scores position j (a whole dot product: the K tile's
// rows are padded to hd + 1 floats, so the 32 lanes read 32 banks), one max and one sum over the warp
// update the row's online softmax, and the tile's probabilities go through shared memory to the P·V
// products, where lanes own columns again. Each row masks the positions after its own (causal).
template <int EPL>
__global__ void prefill_kernel(const DevSeq* seqs, const float* qg, const float* q_norm, AttnDims d, float eps,
                               KvLayerDev kv, int chunks, float* out) {
    DG_DYNAMIC_SHARED(float, sm);
    const int lane = int(threadIdx.x) % kWarp, warp = int(threadIdx.x) / kWarp;
    const int64_t hd = d.hd, G = d.Hq / d.Hkv, ks_stride = hd + 1;
    const DevSeq s = seqs[blockIdx.z];
    const HeadRun hr = head_run(blockIdx.y, G, chunks);
    const int64_t h = hr.h, ng = hr.ng, q0 = h * G + hr.g0;
    const int64_t rows = int64_t(s.len) * ng, row0 = int64_t(blockIdx.x) * kPrefillRows;
    if (row0 >= rows) return;
    float* qs = sm;                          // [kPrefillRows][hd] the normed, rotated queries
    float* ks = qs + kPrefillRows * hd;      // [kTile][hd + 1]
    float* vs = ks + kTile * ks_stride;      // [kTile][hd]
    float* ps = vs + kTile * hd;             // [kPrefillRows][kTile] a tile's probabilities per row

    int64_t pos[kRowsPerWarp], orow[kRowsPerWarp];  // position (-1: no row), output row (token * Hq + head)
    float acc[kRowsPerWarp][EPL], m[kRowsPerWarp], l[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
        const int64_t rr = row0 + warp * kRowsPerWarp + i, t = rr / ng;
        pos[i] = rr < rows ? s.pos0 + t : -1;
        orow[i] = (s.begin + t) * d.Hq + q0 + rr % ng;
        m[i] = -INFINITY, l[i] = 0.f;
#pragma unroll
        for (int e = 0; e < EPL; ++e) acc[i][e] = 0.f;
        if (pos[i] >= 0) {
            float* x = qs + (warp * kRowsPerWarp + i) * hd;
            const float* src = qg + orow[i] * 2 * hd;
            for (int64_t c = lane; c < hd; c += kWarp) x[c] = src[c];
            __syncwarp();
            warp_norm_rope(x, q_norm, hd, d.rotary_dim, d.rope_theta, pos[i], eps);
        }
    }
    const int64_t last = min(rows, row0 + kPrefillRows) - 1, end = s.pos0 + last / ng + 1;
    const float scale = rsqrtf(float(hd));
    for (int64_t t0 = 0; t0 < end; t0 += kTile) {
        const int64_t nt = min(int64_t(kTile), end - t0);
        __syncthreads();  // the previous tile's reads are done
        for (int64_t i = threadIdx.x; i < nt * hd; i += blockDim.x) {
            const int64_t j = i / hd, c = i % hd;
            ks[j * ks_stride + c] = dq_elem(kv.type, kv_row(kv.k, s, t0 + j, h, d.Hkv, kv), c);
            vs[i] = dq_elem(kv.type, kv_row(kv.v, s, t0 + j, h, d.Hkv, kv), c);
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < kRowsPerWarp; ++i) {
            const int64_t jn = min(nt, pos[i] - t0 + 1);  // positions this row sees; <= 0: none
            if (jn <= 0) continue;                          // uniform over the warp
            const float* q = qs + (warp * kRowsPerWarp + i) * hd;
            float sc = -INFINITY;
            if (lane < jn) {
                const float* k = ks + lane * ks_stride;
                float dot = 0.f;
                for (int64_t c = 0; c < hd; ++c) dot += q[c] * k[c];
                sc = dot * scale;
            }
            const float mn = fmaxf(m[i], warp_max(sc));
            const float corr = expf(m[i] - mn);  // 0 on the row's first tile (m = -inf)
            const float p = lane < jn ? expf(sc - mn) : 0.f;
            l[i] = l[i] * corr + warp_sum(p);
            m[i] = mn;
            float* pr = ps + (warp * kRowsPerWarp + i) * kTile;
            pr[lane] = p;
            __syncwarp();
#pragma unroll
            for (int e = 0; e < EPL; ++e) {
                float a = acc[i][e] * corr;
                for (int64_t j = 0; j < jn; ++j) a += pr[j] * vs[j * hd + e * kWarp + lane];
                acc[i][e] = a;
            }
            __syncwarp();
        }
    }
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
        if (pos[i] < 0) continue;
        const float* gate = qg + orow[i] * 2 * hd + hd;
#pragma unroll
        for (int e = 0; e < EPL; ++e) {
            const int64_t c = e * kWarp + lane;
            out[orow[i] * hd + c] = acc[i][e] / l[i] / (1.f + expf(-gate[c]));
        }
    }
}

template <int EPL>
void launch_decode(const DevSeq* seqs, int32_t n, const AttnDims& d, const float* q_norm, const float* k_norm,
                   float eps, const float* qg, const float* k_in, const float* v_in, float* out, const KvLayerDev& kv,
                   float* part, int splits, int chunks, cudaStream_t st) {
    const size_t smem = size_t((kMaxG + kWarps * kMaxG) * d.hd + 2 * kWarps * kMaxG + d.hd) * sizeof(float);
    DG_CUDA_CHECK(DG_LAUNCH((decode_split_kernel<EPL>), dim3(unsigned(splits), unsigned(d.Hkv * chunks), unsigned(n)),
                            kThreads, smem, st, seqs, qg, k_in, v_in, q_norm, k_norm, d, eps, kv, splits, chunks, part));
    DG_CUDA_CHECK(DG_LAUNCH(decode_combine_kernel, dim3(unsigned(d.Hq), unsigned(n)), kThreads, 0, st, seqs, qg, d,
                            splits, part, out));
}

// Queries, K tile (padded rows), V tile, probabilities.
size_t prefill_smem_bytes(int64_t hd) {
    return size_t(kPrefillRows * hd + kTile * (hd + 1) + kTile * hd + kPrefillRows * kTile) * sizeof(float);
}

template <int EPL>
void launch_prefill(const DevSeq* seqs, int32_t n, int64_t max_len, const AttnDims& d, const float* q_norm, float eps,
                    const float* qg, float* out, const KvLayerDev& kv, int chunks, cudaStream_t st) {
    const int64_t per = (d.Hq / d.Hkv + chunks - 1) / chunks;
    const unsigned tiles = unsigned((max_len * per + kPrefillRows - 1) / kPrefillRows);
    const size_t smem = prefill_smem_bytes(d.hd);
    if (smem > 48 * 1024)  // over 48 KiB needs the opt-in (84 KiB at hd 256); a host call, no stream work
        DG_CUDA_CHECK(cudaFuncSetAttribute(prefill_kernel<EPL>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    DG_CUDA_CHECK(DG_LAUNCH((prefill_kernel<EPL>), dim3(tiles, unsigned(d.Hkv * chunks), unsigned(n)), kThreads, smem,
                            st, seqs, qg, q_norm, d, eps, kv, chunks, out));
}

}  // namespace

void set_attention_tiling(const AttnTiling& t) { g_tiling = t; }
int attention_decode_splits(int32_t n_decode, const AttnDims& d) {
    return attn_decode_splits(n_decode, d.Hkv, d.Hq, g_tiling.decode_splits);
}

void attention(const DevSeq* seqs_dev, const DevSeq* seqs_host, int32_t n_decode, int32_t n_prefill, const AttnDims& d,
               const float* q_norm, const float* k_norm, float eps, const float* qg, const float* k_in,
               const float* v_in, float* out, const KvLayerDev& kv, float* workspace, cudaStream_t st) {
    if (!attn_head_dim_supported(d.hd) || d.Hkv <= 0 || d.Hq % d.Hkv != 0)
        fail("attention: head_dim must be 32..256 in steps of 32 and Hq a multiple of Hkv", __FILE__, __LINE__,
             cudaErrorInvalidValue);
    const int chunks = int(attn_head_chunks(d.Hq / d.Hkv)), epl = int(d.hd / kWarp);
    if (n_decode > 0) {
        const int splits = attention_decode_splits(n_decode, d);
        switch (epl) {
#define DG_ATTN_DECODE(E)                                                                                          \
    case E:                                                                                                        \
        launch_decode<E>(seqs_dev, n_decode, d, q_norm, k_norm, eps, qg, k_in, v_in, out, kv, workspace, splits, \
                         chunks, st);                                                                              \
        break;
            DG_ATTN_DECODE(1) DG_ATTN_DECODE(2) DG_ATTN_DECODE(3) DG_ATTN_DECODE(4)
            DG_ATTN_DECODE(5) DG_ATTN_DECODE(6) DG_ATTN_DECODE(7) DG_ATTN_DECODE(8)
#undef DG_ATTN_DECODE
        }
    }
    if (n_prefill > 0) {
        const DevSeq* pre = seqs_dev + n_decode;
        int64_t max_len = 0;
        for (int32_t i = 0; i < n_prefill; ++i) max_len = std::max<int64_t>(max_len, seqs_host[n_decode + i].len);
        DG_CUDA_CHECK(DG_LAUNCH(kv_write_kernel, dim3(unsigned(max_len * d.Hkv), unsigned(n_prefill)), kThreads,
                                size_t(d.hd) * sizeof(float), st, pre, k_in, v_in, k_norm, d, eps, kv));
        switch (epl) {
#define DG_ATTN_PREFILL(E)                                                                        \
    case E:                                                                                       \
        launch_prefill<E>(pre, n_prefill, max_len, d, q_norm, eps, qg, out, kv, chunks, st); \
        break;
            DG_ATTN_PREFILL(1) DG_ATTN_PREFILL(2) DG_ATTN_PREFILL(3) DG_ATTN_PREFILL(4)
            DG_ATTN_PREFILL(5) DG_ATTN_PREFILL(6) DG_ATTN_PREFILL(7) DG_ATTN_PREFILL(8)
#undef DG_ATTN_PREFILL
        }
    }
}

}  // namespace dg::cuda
