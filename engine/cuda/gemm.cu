// Prefill GEMM (docs/cuda.md, "Matmul"): for n ≥ kGemmMinTokens tokens, y[n, out] = x[n, in] · Wᵀ on the
// tensor cores through cuBLAS (bf16 × bf16, fp32 accumulation). The weights are dequantised tile by
// tile (≤ kGemmWeightTileBytes of bf16) and the activations rounded to bf16 chunk by chunk
// (≤ kGemmActChunkBytes), so the workspace is bounded whatever the matrix and the prompt; each weight
// tile is dequantised once per activation chunk (once per call up to ~3K tokens at 27B widths).
// F32 weights (tests, small models) multiply in f32 directly, without a workspace.
//
// cuBLAS is column-major: the row-major weight tile [rows][in] is, column-major, in × rows (A, op T);
// the row-major activations [tokens][in] are in × tokens (B, op N); C = Aᵀ·B is rows × tokens, which
// column-major with ldc = out is exactly row-major y[token][r0 + row].
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <string>

#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/gemm.cuh"
#include "engine/cuda/launch.cuh"

namespace dg::cuda {
namespace {

void cublas_check(cublasStatus_t st, const char* what) {
    if (st != CUBLAS_STATUS_SUCCESS)
        throw DeviceError(std::string("cuBLAS ") + what + ": " + cublasGetStatusName(st), cudaErrorUnknown);
}

constexpr int kConvThreads = 256;

// Rows [0, rows) of W (already offset to the tile) as bf16, row-major [rows][in]. One thread per element
// (dq_elem decodes the element's block scale each time: simple, and amortised over the prefill's tokens).
__global__ void dequant_bf16_kernel(DType type, const uint8_t* w, uint64_t row_bytes, int64_t in, int64_t count,
                                    __nv_bfloat16* out) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
        const int64_t r = i / in, c = i % in;
        out[i] = __float2bfloat16(dq_elem(type, w + uint64_t(r) * row_bytes, c));
    }
}

__global__ void to_bf16_kernel(const float* x, int64_t count, __nv_bfloat16* out) {
    const int64_t stride = int64_t(gridDim.x) * blockDim.x;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride)
        out[i] = __float2bfloat16(x[i]);
}

unsigned conv_blocks(int64_t count) {
    const int64_t b = (count + kConvThreads - 1) / kConvThreads;
    return unsigned(b < 65536 ? b : 65536);  // grid-stride beyond
}

}  // namespace

int64_t gemm_tile_rows(const Matrix& W, int64_t max_rows) {
    int64_t rows = kGemmWeightTileBytes / (W.cols * 2);
    if (rows >= 128) rows -= rows % 128;
    if (max_rows > 0 && max_rows < rows) rows = max_rows;
    return rows < 1 ? 1 : (rows < W.rows ? rows : W.rows);
}
int32_t gemm_chunk_tokens(const Matrix& W, int32_t n, int32_t max_tokens) {
    int64_t t = kGemmActChunkBytes / (W.cols * 2);
    if (t >= 64) t -= t % 64;
    if (max_tokens > 0 && max_tokens < t) t = max_tokens;
    return int32_t(t < 1 ? 1 : (t < n ? t : n));
}

void gemm(cublasHandle_t h, const CublasWorkspace& cw, const float* x, int32_t n, const Matrix& W, float* y,
          int64_t tile_rows, int32_t chunk_tokens, void* w_ws, void* x_ws, cudaStream_t s) {
    if (n <= 0 || W.rows == 0) return;
    const int64_t in = W.cols, out = W.rows;
    const float one = 1.f, zero = 0.f;
    cublas_check(cublasSetStream(h, s), "SetStream");
    cublas_check(cublasSetWorkspace(h, cw.p, size_t(cw.bytes)), "SetWorkspace");  // after SetStream, which resets it
    if (W.type == DType::F32) {
        cublas_check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(out), n, int(in), &one, W.data, CUDA_R_32F,
                                  int(W.row_bytes / 4), x, CUDA_R_32F, int(in), &zero, y, CUDA_R_32F, int(out),
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                     "GemmEx f32");
        return;
    }
    auto* wb = static_cast<__nv_bfloat16*>(w_ws);
    auto* xb = static_cast<__nv_bfloat16*>(x_ws);
    const int64_t tile = tile_rows;
    const int32_t chunk = chunk_tokens;
    for (int32_t t0 = 0; t0 < n; t0 += chunk) {
        const int32_t nt = n - t0 < chunk ? n - t0 : chunk;
        const int64_t xc = int64_t(nt) * in;
        DG_CUDA_CHECK(DG_LAUNCH(to_bf16_kernel, conv_blocks(xc), kConvThreads, 0, s, x + int64_t(t0) * in, xc, xb));
        for (int64_t r0 = 0; r0 < out; r0 += tile) {
            const int64_t rows = out - r0 < tile ? out - r0 : tile;
            const int64_t wc = rows * in;
            DG_CUDA_CHECK(DG_LAUNCH(dequant_bf16_kernel, conv_blocks(wc), kConvThreads, 0, s, W.type,
                                    W.data + uint64_t(r0) * W.row_bytes, W.row_bytes, in, wc, wb));
            cublas_check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(rows), nt, int(in), &one, wb, CUDA_R_16BF,
                                      int(in), xb, CUDA_R_16BF, int(in), &zero, y + int64_t(t0) * out + r0, CUDA_R_32F,
                                      int(out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         "GemmEx bf16");
        }
    }
}

}  // namespace dg::cuda
