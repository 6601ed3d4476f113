// y[n, out] = x[n, in] · Wᵀ reading W's stored blocks directly (any DType). v0: one warp per output row
// and tile of up to 8 tokens, fp32 accumulation: correct for every type, bandwidth-naive. Issue 6 puts
// tuned per-type GEMV and tensor-core GEMM here.
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.cuh"

namespace dg::cuda {
namespace {

constexpr int kTokenTile = 8, kWarpsPerBlock = 4;

__global__ void matmul_kernel(const float* x, int32_t n, DType type, const uint8_t* w, uint64_t row_bytes, int64_t in,
                              int64_t out, float* y) {
    const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
    const int lane = threadIdx.x % kWarp;
    const int32_t t0 = blockIdx.y * kTokenTile;
    if (r >= out) return;
    const uint8_t* row = w + uint64_t(r) * row_bytes;
    const int tile = min(kTokenTile, n - t0);
    float acc[kTokenTile] = {};
    for (int64_t i = lane; i < in; i += kWarp) {
        const float wi = dq_elem(type, row, i);
        for (int t = 0; t < tile; ++t) acc[t] += wi * x[int64_t(t0 + t) * in + i];
    }
    for (int t = 0; t < tile; ++t) {
        const float v = warp_sum(acc[t]);
        if (lane == 0) y[int64_t(t0 + t) * out + r] = v;
    }
}

}  // namespace

void matmul(const float* x, int32_t n, const Matrix& W, float* y, cudaStream_t s) {
    dim3 grid(unsigned((W.rows + kWarpsPerBlock - 1) / kWarpsPerBlock), unsigned((n + kTokenTile - 1) / kTokenTile));
    DG_CUDA_CHECK(DG_LAUNCH(matmul_kernel, grid, kWarpsPerBlock * kWarp, 0, s, x, n, W.type, W.data, W.row_bytes, W.cols, W.rows, y));
}

}  // namespace dg::cuda
