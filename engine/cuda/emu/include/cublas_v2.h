// Emulated <cublas_v2.h>: exactly the cuBLAS calls deltagate makes (engine/cuda/gemm.cu), run on the CPU
// emulation: a handle bound to a stream, and cublasGemmEx over column-major A, B, C with op N or T,
// A/B in bf16, f16 or f32, C in f32, fp32 accumulation (CUBLAS_COMPUTE_32F). The product is issued on
// the handle's stream as one emulated kernel (so it is ordered with the kernels around it, counted as a
// launch, and recorded into a graph while the stream captures), each block computing a tile of C with
// a plain loop. Anything else returns CUBLAS_STATUS_NOT_SUPPORTED rather than a wrong answer.
#pragma once

#include <cuda_runtime.h>

enum cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
using cudaDataType = cudaDataType_t;
enum cublasComputeType_t { CUBLAS_COMPUTE_16F = 64, CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1, CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99 };

struct cublasContext;
using cublasHandle_t = cublasContext*;

cublasStatus_t cublasCreate(cublasHandle_t* handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
// Also resets the workspace to cuBLAS's own pool, as cuBLAS does.
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
// A user-owned device workspace (256-byte aligned) for the calls that follow. The stand-in refuses a GEMM
// under stream capture without one (CUBLAS_STATUS_NOT_SUPPORTED): deltagate's captures must allocate
// nothing, where cuBLAS would take its workspace from an allocation inside the capture.
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t workspace_bytes);
const char* cublasGetStatusName(cublasStatus_t s);
// C = alpha * op(A) * op(B) + beta * C; op(A) is m x k, op(B) k x n, C m x n, all column-major.
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void* alpha, const void* A, cudaDataType_t Atype, int lda, const void* B,
                            cudaDataType_t Btype, int ldb, const void* beta, void* C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo);
