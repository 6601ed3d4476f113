// Row-wise and elementwise CUDA ops: embedding lookup, RMSNorm, residual add, SwiGLU, row gathers and
// the MoE combine. Twins of engine/cpu/elementwise.cpp and parts of cpu_backend.cpp.
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.cuh"

namespace dg::cuda {
namespace {

__global__ void embed_kernel(const int32_t* tokens, DType type, const uint8_t* table, uint64_t row_bytes, int64_t H,
                             float* x) {
    const uint8_t* row = table + uint64_t(tokens[blockIdx.x]) * row_bytes;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) x[blockIdx.x * H + i] = dq_elem(type, row, i);
}

// One block of kNormThreads per row. kAdd: x += r first (the residual add, stored back to x), as add_kernel
// then this kernel would compute it. kQ8: the output row's q8 blocks too (dim % 32 == 0: warp w's lanes
// hold elements 32w.., one block per warp and pass), as quantize_act_q8 of y would make them.
constexpr int kNormThreads = 256;
template <bool kAdd, bool kQ8>
__global__ void __launch_bounds__(kNormThreads)
    rmsnorm_kernel(float* x, const float* r, const float* w, int64_t dim, float eps, float* y, ActQ8 q8) {
    __shared__ float red[32];
    float* xr = x + blockIdx.x * dim;
    float ss = 0.f;
    for (int64_t i = threadIdx.x; i < dim; i += kNormThreads) {
        float v = xr[i];
        if (kAdd) {
            v += r[blockIdx.x * dim + i];
            xr[i] = v;
        }
        ss += v * v;
    }
    ss = block_sum(ss, red);
    const float inv = rsqrtf(ss / float(dim) + eps);
    const int lane = threadIdx.x % kWarp;
    for (int64_t i = threadIdx.x; i < dim; i += kNormThreads) {
        const float v = xr[i] * inv * w[i];
        y[blockIdx.x * dim + i] = v;
        if (kQ8) {
            const int64_t blk = (blockIdx.x * dim + i) / 32;
            quantize_q8_block(v, lane, q8.q + 32 * blk, q8.d + blk, q8.s + blk);
        }
    }
}

__global__ void add_kernel(float* y, const float* x, int64_t n) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i < n) y[i] += x[i];
}

// kQ8: out's q8 blocks too (n % 32 == 0, so a warp's 32 lanes are one block and return together).
template <bool kQ8>
__global__ void swiglu_kernel(const float* g, const float* u, int64_t n, float* out, ActQ8 q8) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i >= n) return;
    const float v = g[i] / (1.f + expf(-g[i])) * u[i];
    out[i] = v;
    if (kQ8) quantize_q8_block(v, threadIdx.x % kWarp, q8.q + i / 32 * 32, q8.d + i / 32, q8.s + i / 32);
}

__global__ void copy_rows_kernel(const float* x, const int32_t* rows, int64_t dim, float* y) {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) y[blockIdx.x * dim + i] = x[int64_t(rows[blockIdx.x]) * dim + i];
}

// One block per destination row t: y[t] += sum_k w[t][k] x[src[t][k]] in k order (src < 0: no
// contribution). A gather, not an atomic scatter, so the sum's order and its bits never depend on
// which block runs first.
__global__ void gather_add_kernel(const float* x, const int32_t* src, const float* w, int k, int64_t dim, float* y) {
    const int32_t* s = src + int64_t(blockIdx.x) * k;
    const float* wt = w + int64_t(blockIdx.x) * k;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
        float acc = y[blockIdx.x * dim + i];
        for (int j = 0; j < k; ++j)
            if (s[j] >= 0) acc += wt[j] * x[int64_t(s[j]) * dim + i];
        y[blockIdx.x * dim + i] = acc;
    }
}

__global__ void scale_rows_sigmoid_kernel(float* y, const float* g, int64_t dim) {
    const float s = 1.f / (1.f + expf(-g[blockIdx.x]));
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) y[blockIdx.x * dim + i] *= s;
}

int blocks_for(int64_t n, int threads) { return int((n + threads - 1) / threads); }

}  // namespace

void embed(const int32_t* tokens, int32_t n, const Matrix& t, float* x, cudaStream_t s) {
    DG_CUDA_CHECK(DG_LAUNCH(embed_kernel, n, 256, 0, s, tokens, t.type, t.data, t.row_bytes, t.cols, x));
}
void rmsnorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y, cudaStream_t s) {
    if (rows > 0)  // x is only read (the kernel's x is not const for its kAdd form)
        DG_CUDA_CHECK(DG_LAUNCH((rmsnorm_kernel<false, false>), rows, kNormThreads, 0, s, const_cast<float*>(x), nullptr,
                                w, dim, eps, y, ActQ8{}));
}
void add_rmsnorm(float* x, const float* r, const float* w, int64_t rows, int64_t dim, float eps, float* y,
                 const ActQ8* q8, cudaStream_t s) {
    if (rows <= 0) return;
    if (q8 && dim % 32 != 0) throw DeviceError("rmsnorm: q8 blocks need a width that is a multiple of 32", cudaErrorInvalidValue);
    const ActQ8 q = q8 ? *q8 : ActQ8{};
    if (r && q8) DG_CUDA_CHECK(DG_LAUNCH((rmsnorm_kernel<true, true>), rows, kNormThreads, 0, s, x, r, w, dim, eps, y, q));
    else if (r) DG_CUDA_CHECK(DG_LAUNCH((rmsnorm_kernel<true, false>), rows, kNormThreads, 0, s, x, r, w, dim, eps, y, q));
    else if (q8) DG_CUDA_CHECK(DG_LAUNCH((rmsnorm_kernel<false, true>), rows, kNormThreads, 0, s, x, r, w, dim, eps, y, q));
    else rmsnorm(x, w, rows, dim, eps, y, s);
}
void add(float* y, const float* x, int64_t n, cudaStream_t s) { DG_CUDA_CHECK(DG_LAUNCH(add_kernel, blocks_for(n, 256), 256, 0, s, y, x, n)); }
void swiglu(const float* g, const float* u, int64_t n, float* out, cudaStream_t s, const ActQ8* q8) {
    if (n <= 0) return;
    if (!q8) {
        DG_CUDA_CHECK(DG_LAUNCH(swiglu_kernel<false>, blocks_for(n, 256), 256, 0, s, g, u, n, out, ActQ8{}));
        return;
    }
    if (n % 32 != 0) throw DeviceError("swiglu: q8 blocks need a count that is a multiple of 32", cudaErrorInvalidValue);
    DG_CUDA_CHECK(DG_LAUNCH(swiglu_kernel<true>, blocks_for(n, 256), 256, 0, s, g, u, n, out, *q8));
}
void copy_rows(const float* x, const int32_t* rows, int32_t n_rows, int64_t dim, float* y, cudaStream_t s) {
    if (n_rows > 0) DG_CUDA_CHECK(DG_LAUNCH(copy_rows_kernel, n_rows, 256, 0, s, x, rows, dim, y));
}
void gather_add_rows(const float* x, const int32_t* src_dev, const float* weights_dev, int32_t n_rows, int32_t k,
                     int64_t dim, float* y, cudaStream_t s) {
    if (n_rows > 0) DG_CUDA_CHECK(DG_LAUNCH(gather_add_kernel, n_rows, 256, 0, s, x, src_dev, weights_dev, k, dim, y));
}
void scale_rows_sigmoid(float* y, const float* g, int32_t n, int64_t dim, cudaStream_t s) {
    if (n > 0) DG_CUDA_CHECK(DG_LAUNCH(scale_rows_sigmoid_kernel, n, 256, 0, s, y, g, dim));
}

}  // namespace dg::cuda
