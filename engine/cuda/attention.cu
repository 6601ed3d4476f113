// Gated attention on CUDA over the paged KV cache, v0: K norm + RoPE + quantised store per (token, kv
// head), then one block per (token, q head) computing exact causal softmax attention with the scores
// in a scratch buffer. Twin of engine/cpu/attention.cpp. Issue 6 replaces it with flash-style prefill
// and split-K decode.
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.cuh"

namespace dg::cuda {
namespace {

__device__ uint8_t* kv_row(uint8_t* base, const DevSeq& s, int64_t pos, int64_t head, int64_t Hkv, const KvLayerDev& kv) {
    const int64_t block = s.blocks[pos / kv.block_tokens], off = pos % kv.block_tokens;
    return base + ((block * kv.block_tokens + off) * Hkv + head) * kv.row_bytes;
}

// RMSNorm (zero-centred weight already 1+w) then half-split RoPE on dims [0, rd), in shared memory.
__device__ void norm_rope(float* x, const float* w, int64_t hd, int64_t rd, float theta, int64_t pos, float eps,
                          float* red) {
    float ss = 0.f;
    for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) ss += x[i] * x[i];
    ss = block_sum(ss, red);
    const float inv = rsqrtf(ss / float(hd) + eps);
    for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) x[i] *= inv * w[i];
    __syncthreads();
    const int64_t half = rd / 2;
    for (int64_t j = threadIdx.x; j < half; j += blockDim.x) {
        const float inv_freq = 1.f / powf(theta, float(2 * j) / float(rd));
        const float ang = float(pos) * inv_freq;
        const float c = float(cos(double(ang))), sn = float(sin(double(ang)));
        const float x1 = x[j], x2 = x[j + half];
        x[j] = x1 * c - x2 * sn;
        x[j + half] = x2 * c + x1 * sn;
    }
    __syncthreads();
}

// Stores row x (hd values) in `type`; Q8_0 / Q4_0 as ggml's reference quantisers do.
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

__global__ void kv_write_kernel(DevSeq s, const float* k_in, const float* v_in, const float* k_norm, AttnDims d,
                                float eps, KvLayerDev kv) {
    DG_DYNAMIC_SHARED(float, row);
    __shared__ float red[32];
    const int64_t t = blockIdx.x / d.Hkv, h = blockIdx.x % d.Hkv, r = s.begin + t, pos = s.pos0 + t;
    for (int64_t i = threadIdx.x; i < d.hd; i += blockDim.x) row[i] = k_in[(r * d.Hkv + h) * d.hd + i];
    __syncthreads();
    norm_rope(row, k_norm, d.hd, d.rotary_dim, d.rope_theta, pos, eps, red);
    store_row(kv.type, row, d.hd, kv_row(kv.k, s, pos, h, d.Hkv, kv));
    __syncthreads();
    for (int64_t i = threadIdx.x; i < d.hd; i += blockDim.x) row[i] = v_in[(r * d.Hkv + h) * d.hd + i];
    __syncthreads();
    store_row(kv.type, row, d.hd, kv_row(kv.v, s, pos, h, d.Hkv, kv));
}

// One block per (token, q head); scores[block][P].
__global__ void attn_kernel(DevSeq s, const float* qg, const float* q_norm, AttnDims d, float eps, KvLayerDev kv,
                            float* scores, int64_t P, float* out) {
    DG_DYNAMIC_SHARED(float, q);
    __shared__ float red[32];
    const int64_t t = blockIdx.x / d.Hq, h = blockIdx.x % d.Hq, r = s.begin + t, pos = s.pos0 + t;
    const int64_t kvh = h / (d.Hq / d.Hkv), hd = d.hd;
    const float* src = qg + (r * d.Hq + h) * 2 * hd;  // per head [query hd | gate hd]
    for (int64_t i = threadIdx.x; i < hd; i += blockDim.x) q[i] = src[i];
    __syncthreads();
    norm_rope(q, q_norm, hd, d.rotary_dim, d.rope_theta, pos, eps, red);
    float* sc = scores + blockIdx.x * P;
    const float scale = rsqrtf(float(hd));
    float mx = -INFINITY;
    for (int64_t p = threadIdx.x; p <= pos; p += blockDim.x) {
        const uint8_t* krow = kv_row(kv.k, s, p, kvh, d.Hkv, kv);
        float dot = 0.f;
        for (int64_t i = 0; i < hd; ++i) dot += q[i] * dq_elem(kv.type, krow, i);
        sc[p] = dot * scale;
        mx = fmaxf(mx, sc[p]);
    }
    mx = block_max(mx, red);
    float sum = 0.f;
    for (int64_t p = threadIdx.x; p <= pos; p += blockDim.x) sum += sc[p] = expf(sc[p] - mx);
    sum = block_sum(sum, red);
    __syncthreads();
    for (int64_t j = threadIdx.x; j < hd; j += blockDim.x) {
        float acc = 0.f;
        for (int64_t p = 0; p <= pos; ++p) acc += sc[p] * dq_elem(kv.type, kv_row(kv.v, s, p, kvh, d.Hkv, kv), j);
        out[(r * d.Hq + h) * hd + j] = acc / sum / (1.f + expf(-src[hd + j]));
    }
}

}  // namespace

void attention(const SeqSlice* seqs, int32_t n_seqs, const AttnDims& d, const float* q_norm, const float* k_norm,
               float eps, const float* qg, const float* k_in, const float* v_in, float* out, const KvLayerDev& kv,
               float* scores, cudaStream_t st) {
    for (int32_t i = 0; i < n_seqs; ++i) {
        const SeqSlice& q = seqs[i];
        DevSeq ds{q.begin, q.len, q.pos0, q.state_slot, q.blocks};  // q.blocks: device copy (see CudaBackend)
        const size_t row_bytes = size_t(d.hd) * sizeof(float);
        DG_CUDA_CHECK(DG_LAUNCH(kv_write_kernel, unsigned(q.len * d.Hkv), 128, row_bytes, st, ds, k_in, v_in, k_norm, d, eps, kv));
        DG_CUDA_CHECK(DG_LAUNCH(attn_kernel, unsigned(q.len * d.Hq), 128, row_bytes, st, ds, qg, q_norm, d, eps, kv, scores,
                                                                     int64_t(q.pos0) + q.len, out));
    }
}

}  // namespace dg::cuda
