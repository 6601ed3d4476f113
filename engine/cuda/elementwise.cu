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

__global__ void rmsnorm_kernel(const float* x, const float* w, int64_t dim, float eps, float* y) {
    __shared__ float red[32];
    const float* xr = x + blockIdx.x * dim;
    float ss = 0.f;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, red);
    const float inv = rsqrtf(ss / float(dim) + eps);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) y[blockIdx.x * dim + i] = xr[i] * inv * w[i];
}

__global__ void add_kernel(float* y, const float* x, int64_t n) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i < n) y[i] += x[i];
}

__global__ void swiglu_kernel(const float* g, const float* u, int64_t n, float* out) {
    const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
    if (i < n) out[i] = g[i] / (1.f + expf(-g[i])) * u[i];
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
    DG_CUDA_CHECK(DG_LAUNCH(rmsnorm_kernel, rows, 256, 0, s, x, w, dim, eps, y));
}
void add(float* y, const float* x, int64_t n, cudaStream_t s) { DG_CUDA_CHECK(DG_LAUNCH(add_kernel, blocks_for(n, 256), 256, 0, s, y, x, n)); }
void swiglu(const float* g, const float* u, int64_t n, float* out, cudaStream_t s) {
    DG_CUDA_CHECK(DG_LAUNCH(swiglu_kernel, blocks_for(n, 256), 256, 0, s, g, u, n, out));
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
