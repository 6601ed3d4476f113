// Gated DeltaNet on CUDA: the dispatcher of the fast path (decode rows to engine/cuda/gdn_decode.cu,
// longer slices to engine/cuda/gdn_prefill.cu) and the v0 token-by-token reference kernels the GPU tests
// compare it with. Twin of engine/cpu/gdn.cpp; value head h reads key head h % Hk (tiled). Geometry and
// bounds: docs/cuda.md.
#include <algorithm>
#include <cstdio>

#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.cuh"
#include "engine/status.h"

namespace dg::cuda {
namespace {

// ---- reference (v0): conv in place, then a scan with S in global memory, one token at a time ----------

constexpr int kMaxConvK = 8;

// One thread per (sequence, channel): walks the sequence's tokens, keeping the last K-1 raw inputs.
__global__ void conv_kernel(const DevSeq* seqs, float* u, int64_t C, int K, const float* w, GdnLayerState st) {
    const DevSeq sq = seqs[blockIdx.x];
    const int64_t c = blockIdx.y * int64_t(blockDim.x) + threadIdx.x;
    if (c >= C) return;
    float* state = st.base + sq.state_slot * st.slot_stride;  // [K-1][C]
    float win[kMaxConvK];
    for (int j = 0; j < K - 1; ++j) win[j] = state[j * C + c];
    for (int32_t t = 0; t < sq.len; ++t) {
        float* x = u + int64_t(sq.begin + t) * C + c;
        const float cur = *x;
        float acc = w[c * K + K - 1] * cur;
        for (int j = 0; j < K - 1; ++j) acc += w[c * K + j] * win[j];
        for (int j = 0; j + 1 < K - 1; ++j) win[j] = win[j + 1];
        if (K > 1) win[K - 2] = cur;
        *x = acc / (1.f + expf(-acc));
    }
    for (int j = 0; j < K - 1; ++j) state[j * C + c] = win[j];
}

// One block per (token, q-or-k head): x / sqrt(sum x^2 + 1e-6), q also * dk^-1/2.
__global__ void qk_norm_kernel(float* u, int64_t C, int64_t Hk, int64_t dk) {
    __shared__ float red[32];
    const int64_t t = blockIdx.x / (2 * Hk), hh = blockIdx.x % (2 * Hk);
    float* x = u + t * C + hh * dk;
    float ss = 0.f;
    for (int64_t i = threadIdx.x; i < dk; i += blockDim.x) ss += x[i] * x[i];
    ss = block_sum(ss, red);
    float inv = rsqrtf(ss + 1e-6f);
    if (hh < Hk) inv *= rsqrtf(float(dk));
    for (int64_t i = threadIdx.x; i < dk; i += blockDim.x) x[i] *= inv;
}

__global__ void gates_kernel(const float* b, const float* a, const float* dt_bias, const float* ssm_a, int64_t n,
                             int64_t Hv, float* beta, float* g) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i >= n * Hv) return;
    const int64_t h = i % Hv;
    beta[i] = 1.f / (1.f + expf(-b[i]));
    const float x = a[i] + dt_bias[h];
    g[i] = ssm_a[h] * (x > 20.f ? x : log1pf(expf(x)));
}

// One block per (sequence, value head); thread j owns column j of S [dk][dv] across tokens.
__global__ void scan_kernel(const DevSeq* seqs, const float* u, int64_t C, int64_t Hk, int64_t Hv, int64_t dk,
                            int64_t dv, const float* beta, const float* g, float* o, GdnLayerState st) {
    DG_DYNAMIC_SHARED(float, qk);  // [q dk | k dk]
    const DevSeq sq = seqs[blockIdx.x];
    const int64_t h = blockIdx.y, kh = h % Hk;
    float* S = st.base + sq.state_slot * st.slot_stride + st.conv_floats + h * dk * dv;
    for (int32_t t = 0; t < sq.len; ++t) {
        const int64_t r = sq.begin + t;
        __syncthreads();
        for (int64_t i = threadIdx.x; i < dk; i += blockDim.x) {
            qk[i] = u[r * C + kh * dk + i];
            qk[dk + i] = u[r * C + Hk * dk + kh * dk + i];
        }
        __syncthreads();
        const float decay = expf(g[r * Hv + h]), bt = beta[r * Hv + h];
        for (int64_t j = threadIdx.x; j < dv; j += blockDim.x) {
            float mem = 0.f;
            for (int64_t i = 0; i < dk; ++i) {
                const float s = S[i * dv + j] * decay;
                S[i * dv + j] = s;
                mem += s * qk[dk + i];
            }
            const float delta = bt * (u[r * C + 2 * Hk * dk + h * dv + j] - mem);
            float out = 0.f;
            for (int64_t i = 0; i < dk; ++i) {
                const float s = S[i * dv + j] + qk[dk + i] * delta;
                S[i * dv + j] = s;
                out += s * qk[i];
            }
            o[r * Hv * dv + h * dv + j] = out;
        }
    }
}

// One block per (token, value head): o / rms(o) * norm_w * SiLU(z).
__global__ void gated_norm_kernel(float* o, const float* z, const float* w, int64_t dv, float eps) {
    __shared__ float red[32];
    float* x = o + blockIdx.x * dv;
    const float* zr = z + blockIdx.x * dv;
    float ss = 0.f;
    for (int64_t i = threadIdx.x; i < dv; i += blockDim.x) ss += x[i] * x[i];
    ss = block_sum(ss, red);
    const float inv = rsqrtf(ss / float(dv) + eps);
    for (int64_t i = threadIdx.x; i < dv; i += blockDim.x) x[i] = x[i] * inv * w[i] * (zr[i] / (1.f + expf(-zr[i])));
}

}  // namespace

void gdn_mixer_reference(const GdnLayerArgs& a, const DevSeq* seqs_dev, int32_t n_seqs, int32_t n, float* scratch,
                         cudaStream_t s) {
    const GdnDims& d = a.d;
    DG_CHECK(d.K <= kMaxConvK, "conv kernel %d > %d", d.K, kMaxConvK);
    if (n_seqs == 0 || n == 0) return;
    DG_CUDA_CHECK(DG_LAUNCH(conv_kernel, dim3(n_seqs, unsigned((d.conv_dim + 127) / 128)), 128, 0, s, seqs_dev, a.qkv, d.conv_dim,
                                                                                 int(d.K), a.conv_w, a.st));
    DG_CUDA_CHECK(DG_LAUNCH(qk_norm_kernel, unsigned(n * 2 * d.Hk), 128, 0, s, a.qkv, d.conv_dim, d.Hk, d.dk));
    float* beta = scratch;
    float* g = scratch + int64_t(n) * d.Hv;
    DG_CUDA_CHECK(DG_LAUNCH(gates_kernel, unsigned((n * d.Hv + 255) / 256), 256, 0, s, a.b, a.a, a.dt_bias, a.ssm_a, n, d.Hv, beta, g));
    const int threads = int(std::min<int64_t>(((d.dv + 31) / 32) * 32, 1024));
    DG_CUDA_CHECK(DG_LAUNCH(scan_kernel, dim3(n_seqs, unsigned(d.Hv)), threads, 2 * d.dk * sizeof(float), s, seqs_dev, a.qkv, d.conv_dim, d.Hk, d.Hv, d.dk, d.dv, beta, g, a.o, a.st));
    DG_CUDA_CHECK(DG_LAUNCH(gated_norm_kernel, unsigned(n * d.Hv), 128, 0, s, a.o, a.z, a.norm_w, d.dv, a.eps));
    DG_CUDA_CHECK(cudaGetLastError());
}

// ---- the fast path -----------------------------------------------------------------------------------

int64_t gdn_workspace_floats(int32_t n_decode, const GdnDims& d) {
    return std::max<int64_t>(1, int64_t(n_decode) * d.Hv * ((d.dv + 31) / 32));  // partial sums per dv tile
}
int64_t gdn_arrival_words(int32_t n_decode, const GdnDims& d) {
    return std::max<int64_t>(1, int64_t(n_decode) * (d.Hk + d.Hv));  // [seq][Hk] conv, then [seq][Hv] norm
}

void gdn_mixer(const GdnLayerArgs& a, const DevSeq* seqs_dev, const DevSeq* seqs_host, int32_t n_decode,
               int32_t n_prefill, const GdnWorkspace& ws, const GdnTiling& tiling, cudaStream_t s) {
    DG_CHECK(gdn_fast_supported(a.d), "GDN fast kernels need 1 <= dk <= %d and Hv %% Hk == 0 (dk %d, Hk %d, Hv %d)",
             int(kGdnMaxDk), int(a.d.dk), int(a.d.Hk), int(a.d.Hv));
    DG_CHECK(!a.o_q8.q || n_prefill == 0, "GDN: o's q8 blocks are made by the decode kernel only (%d prefill sequences)",
             int(n_prefill));
    // Decode and prefill sequences own different state slots, so the two launches are independent.
    if (n_decode > 0) gdn_decode(a, seqs_dev, n_decode, ws, tiling.decode_cols, s);
    if (n_prefill > 0) gdn_prefill(a, seqs_dev + n_decode, seqs_host + n_decode, n_prefill, tiling.prefill_cols, s);
}

}  // namespace dg::cuda
