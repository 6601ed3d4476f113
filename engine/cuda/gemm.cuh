// The prefill GEMM's launcher (gemm.cu), for matmul.cu: bf16 weight tiles and activation chunks in
// caller-owned device workspaces, multiplied by cuBLAS on tensor cores with fp32 accumulation.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "engine/cuda/matmul.cuh"

namespace dg::cuda {

// Weight rows per bf16 tile and tokens per bf16 activation chunk for W: bounded by kGemmWeightTileBytes
// and kGemmActChunkBytes, by the call's own size, and by max_rows / max_tokens when > 0 (tests force
// partial tiles and chunks at small sizes with them).
int64_t gemm_tile_rows(const Matrix& W, int64_t max_rows = 0);
int32_t gemm_chunk_tokens(const Matrix& W, int32_t n, int32_t max_tokens = 0);

// cuBLAS's own workspace, set on the handle by every gemm() call (cublasSetStream resets it to cuBLAS's
// pool): with a user workspace, a GEMM inside a CUDA graph capture allocates nothing (without one,
// cuBLAS 12.2+ allocates it asynchronously inside each capture). 32 MiB is NVIDIA's figure for Hopper.
constexpr int64_t kCublasWorkspaceBytes = int64_t(32) << 20;
struct CublasWorkspace {
    void* p;
    int64_t bytes;
};

// y[n, out] = x[n, in] · Wᵀ in tiles of `tile_rows` weight rows and chunks of `chunk_tokens` tokens.
// w_ws: tile_rows * in bf16, x_ws: chunk_tokens * in bf16 (both unused for f32 weights).
void gemm(cublasHandle_t h, const CublasWorkspace& cw, const float* x, int32_t n, const Matrix& W, float* y,
          int64_t tile_rows, int32_t chunk_tokens, void* w_ws, void* x_ws, cudaStream_t s);

}  // namespace dg::cuda
