// The cuBLAS stand-in of the CUDA emulation (include/cublas_v2.h): the GEMM deltagate's prefill path
// issues, with cuBLAS's column-major conventions, as one emulated kernel on the handle's stream.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdio>

#include "engine/cuda/emu/launch.h"

struct cublasContext {
    cudaStream_t stream = nullptr;
    void* workspace = nullptr;  // user workspace (cublasSetWorkspace); null: cuBLAS's pool
    size_t workspace_bytes = 0;
};

namespace {

constexpr int kTile = 32;  // C tile per emulated block

float load_elem(const void* p, cudaDataType_t t, int64_t i) {
    switch (t) {
        case CUDA_R_32F: return static_cast<const float*>(p)[i];
        case CUDA_R_16F: return __half2float(static_cast<const __half*>(p)[i]);
        case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    }
    return 0.f;
}
bool known(cudaDataType_t t) { return t == CUDA_R_32F || t == CUDA_R_16F || t == CUDA_R_16BF; }

void gemm_marker() {}  // the "kernel" address the launch is registered under

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = new cublasContext;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    handle->workspace = nullptr, handle->workspace_bytes = 0;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t workspace_bytes) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((workspace_bytes > 0 && !workspace) || reinterpret_cast<uintptr_t>(workspace) % 256 != 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    handle->workspace = workspace, handle->workspace_bytes = workspace_bytes;
    return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusName(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType_t Atype, int lda, const void* B,
                            cudaDataType_t Btype, int ldb, const void* beta, void* C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    (void)algo;
    if (m < 0 || n < 0 || k < 0 || !alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    if ((transa != CUBLAS_OP_N && transa != CUBLAS_OP_T) || (transb != CUBLAS_OP_N && transb != CUBLAS_OP_T) ||
        !known(Atype) || !known(Btype) || Ctype != CUDA_R_32F || computeType != CUBLAS_COMPUTE_32F)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    // Leading dimensions as cuBLAS checks them: at least the stored rows of each column-major matrix.
    if (lda < (transa == CUBLAS_OP_N ? m : k) || ldb < (transb == CUBLAS_OP_N ? k : n) || ldc < m || lda < 1 ||
        ldb < 1 || ldc < 1)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(handle->stream, &capturing) != cudaSuccess) return CUBLAS_STATUS_INTERNAL_ERROR;
    if (capturing == cudaStreamCaptureStatusActive && handle->workspace_bytes == 0) {
        std::fprintf(stderr, "cuBLAS stand-in: cublasGemmEx under stream capture without cublasSetWorkspace\n");
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    // alpha and beta are host pointers (CUBLAS_POINTER_MODE_HOST): read at the call, as cuBLAS does.
    const float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
    const dim3 grid(unsigned((m + kTile - 1) / kTile), unsigned((n + kTile - 1) / kTile));
    auto body = [=]() {
        if (threadIdx.x != 0) return;
        const int i0 = int(blockIdx.x) * kTile, j0 = int(blockIdx.y) * kTile;
        float* c = static_cast<float*>(C);
        for (int j = j0; j < n && j < j0 + kTile; ++j)
            for (int i = i0; i < m && i < i0 + kTile; ++i) {
                float acc = 0.f;  // fp32 accumulation in k order
                for (int p = 0; p < k; ++p) {
                    const int64_t ai = transa == CUBLAS_OP_N ? int64_t(p) * lda + i : int64_t(i) * lda + p;
                    const int64_t bi = transb == CUBLAS_OP_N ? int64_t(j) * ldb + p : int64_t(p) * ldb + j;
                    acc += load_elem(A, Atype, ai) * load_elem(B, Btype, bi);
                }
                float& out = c[int64_t(j) * ldc + i];
                out = b == 0.f ? a * acc : a * acc + b * out;  // beta 0: C is not read (may hold NaN)
            }
    };
    const cudaError_t e = dg::emu::submit_launch(
        dg::emu::LaunchSpec{"cublasGemmEx", reinterpret_cast<const void*>(&gemm_marker), grid, dim3(1), 0, handle->stream},
        body);
    return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}
