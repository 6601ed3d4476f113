// The CUDA matmul y[n, out] = x[n, in] · Wᵀ (docs/cuda.md, "Matmul"): one entry, three kernel families.
//   exact  (matmul.cu): fp32 activations, each weight element dequantised exactly, fp32 sums — the
//          numerics of the CPU oracle (`cuda-exact` runs only this, as `cpu-exact` runs matmul.cpp).
//   GEMV   (gemv.cu):   decode, n ≤ kGemvMaxTokens per weight read: quantised weights against activations
//          quantised once per call to 8-bit blocks of 32 (the CPU fast path's quantize_act_rows, bit for
//          bit) with __dp4a integer dots; float weights (f32, f16, bf16) with fp32 FMA.
//   GEMM   (gemm.cu):   prefill, n ≥ kGemmMinTokens: weights dequantised tile by tile into a bounded bf16
//          workspace, activations rounded to bf16, cublasGemmEx with fp32 accumulation (tensor cores);
//          f32 weights multiply in f32 without a workspace.
// A Matmul owns the workspaces and the cuBLAS handle of one backend (one stream).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <span>

#include "engine/weights.h"

namespace dg::cuda {

// Tokens per weight read of the GEMV kernels (their register tiles are 1..8 tokens; more tokens run in
// tiles of 8, reading the weights once per tile).
constexpr int32_t kGemvMaxTokens = 8;
// From this many tokens on, the serving path multiplies through the tensor-core GEMM. UNMEASURED (no
// GPU yet): tests/bench/bench_matmul_cuda prints GEMV and GEMM times per token count on the GPU machine;
// set this to the measured crossover.
constexpr int32_t kGemmMinTokens = 32;
// Bounds of the GEMM workspace: the bf16 copy of a weight tile and of a chunk of activation rows.
constexpr int64_t kGemmWeightTileBytes = int64_t(64) << 20;
constexpr int64_t kGemmActChunkBytes = int64_t(32) << 20;

// q8 activation blocks of n rows of `in` floats (q: n*in, d and s: n*in/32): per 32 floats the int8
// values, the scale and the sum of the int8 values (gemv.cu quantize_act_q8).
struct ActQ8 {
    int8_t* q;
    float* d;
    int32_t* s;
};

enum class MatmulPath {
    kAuto,   // serving: GEMV below kGemmMinTokens, GEMM from there (where the shape allows, else exact)
    kExact,  // the fp32 oracle kernel only
    kGemv,   // force the GEMV kernels (tests, benchmark); the shape must allow them
    kGemm,   // force the GEMM (tests, benchmark)
};
const char* matmul_path_name(MatmulPath p);

// Whether the fast kernels take W (else kAuto runs the exact kernel, as the CPU's fast path does for
// shapes its kernels lack): the quantised GEMV needs in % 32 == 0 (every block type has it), the float
// GEMV in % 8 == 0 and 16-byte aligned rows and x; the GEMM any shape.
bool gemv_supports(const Matrix& W, const float* x);

class Matmul {
public:
    explicit Matmul(MatmulPath path = MatmulPath::kAuto);
    ~Matmul();
    Matmul(const Matmul&) = delete;
    Matmul& operator=(const Matmul&) = delete;

    // W.data is device memory; x, y device buffers. Enqueued on `s`; throws DeviceError on a CUDA or
    // cuBLAS failure (cuda_common.cuh).
    void operator()(const float* x, int32_t n, const Matrix& W, float* y, cudaStream_t s);
    // Several matmuls of one input x (every W the same width, at most kOfOneInputMax of them), each on the
    // path operator() takes; those on the quantised GEMV share one quantisation of x (one launch instead of
    // one per matrix), and the GEMV matrices of one type run in one launch (gemv_quant / gemv_float over a
    // GemvBatch). Results equal operator()'s bit for bit.
    static constexpr size_t kOfOneInputMax = 32;
    // xq: x's q8 blocks made by the caller (quantize_act_q8 of x's n rows, or the RMSNorm that made x);
    // nullptr: made here if a quantised GEMV needs them.
    void of_one_input(const float* x, int32_t n, std::span<const Matrix> Ws, std::span<float* const> ys,
                      cudaStream_t s, const ActQ8* xq = nullptr);
    // Runs `path` for this call only (the benchmark and the tests compare the paths on one object).
    void run(MatmulPath path, const float* x, int32_t n, const Matrix& W, float* y, cudaStream_t s);
    // Allocates now what a call of n tokens of W would allocate (workspaces, the cuBLAS handle), so that
    // such calls inside a CUDA graph capture allocate nothing. The backend calls it before each capture.
    void reserve(int32_t n, const Matrix& W);
    // The path operator() takes for this call.
    MatmulPath choose(int32_t n, const Matrix& W, const float* x) const;
    MatmulPath path() const { return path_; }
    // Device bytes the workspaces hold now (bounded: activation blocks of the largest GEMV call, plus
    // at most kGemmWeightTileBytes + kGemmActChunkBytes for the GEMM and cuBLAS's 32 MiB workspace).
    int64_t workspace_bytes() const;
    // Smaller GEMM tiles / chunks than the byte bounds give (0: no limit), so tests cover the tiling.
    void set_gemm_limits(int64_t max_tile_rows, int32_t max_chunk_tokens);

    struct State;

private:

    MatmulPath path_;
    std::unique_ptr<State> st_;
};

// The kernels behind Matmul, one exported launcher per file.
void matmul_exact(const float* x, int32_t n, const Matrix& W, float* y, cudaStream_t s);  // matmul.cu
void quantize_act_q8(const float* x, int32_t n, int64_t in, const ActQ8& a, cudaStream_t s);
// Matrices of one input, one type and one width (checked: DeviceError otherwise), multiplied in one launch
// per kGemvMaxMatrices matrices and tile of kGemvMaxTokens tokens: the gate and up projections (or
// the mixer's qkv, z, b and a) read in one kernel pass. ys[i] holds n rows of Ws[i].rows.
constexpr int kGemvMaxMatrices = 4;
struct GemvBatch {
    std::span<const Matrix> Ws;
    std::span<float* const> ys;
};
void gemv_quant(const ActQ8& a, int32_t n, const GemvBatch& b, cudaStream_t s);
void gemv_float(const float* x, int32_t n, const GemvBatch& b, cudaStream_t s);
inline void gemv_quant(const ActQ8& a, int32_t n, const Matrix& W, float* y, cudaStream_t s) {
    gemv_quant(a, n, GemvBatch{{&W, 1}, {&y, 1}}, s);
}
inline void gemv_float(const float* x, int32_t n, const Matrix& W, float* y, cudaStream_t s) {
    gemv_float(x, n, GemvBatch{{&W, 1}, {&y, 1}}, s);
}
bool gemv_quant_type(DType t);  // Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K

}  // namespace dg::cuda
