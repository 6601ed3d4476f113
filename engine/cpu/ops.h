// The CPU backend's ops as plain functions on host memory: the reference every other backend is
// tested against. One file per op family (matmul.cpp, gdn.cpp, attention.cpp, moe.cpp, elementwise.cpp).
#pragma once

#include <cstdint>

#include "engine/backend.h"

namespace dg::cpu {

// The exact oracle: f32 activations, weights dequantised exactly (matmul.cpp).
void matmul(const float* x, int32_t n, const Matrix& W, float* y);
// The serving path: activations quantised to 8-bit blocks for quantised weights (matmul_fast.cpp).
void matmul_fast(const float* x, int32_t n, const Matrix& W, float* y);
// matmul_fast's per-row path (decode kernels over token tiles of 4) for any n; matmul_fast takes it below
// gemm_min_tokens() (gemm.h). For the crossover measurement (tests/bench/bench_gemm_crossover.cpp).
void matmul_fast_rows(const float* x, int32_t n, const Matrix& W, float* y);
// dot_row (engine/formats/dtype.h) with the same result bit for bit, faster for F16 and BF16 rows.
float dot_row_cpu(DType t, const void* row, const float* x, int64_t n);
void rmsnorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y);
void swiglu(const float* gate, const float* up, int64_t count, float* out);
// The fast backend's: AVX-512 exp (exp_avx512.h), over the pool; swiglu() on CPUs without AVX-512.
void swiglu_fast(const float* gate, const float* up, int64_t count, float* out);

// One GDN layer's recurrent state for one sequence: conv [K-1][conv_dim], then S [Hv][dk][dv].
struct GdnState {
    float* conv;
    float* S;
};

// Causal depthwise conv + SiLU over a sequence's `len` rows of qkv (in place), updating conv state.
void gdn_conv(float* qkv_len_c, int32_t len, const GdnDims& d, const float* conv_w, float* conv_state);
// The same for the fast backend (gdn_fast.cpp): 16 channels per AVX-512 vector, exp512's SiLU.
void gdn_conv_fast(float* qkv_len_c, int32_t len, const GdnDims& d, const float* conv_w, float* conv_state);
// Delta rule for one value head over `len` tokens. Token t's q, k, v are at q + t*stride.qkv (q, k
// already L2-normed, q scaled) and its output at o + t*stride.o; g (log decay) and beta per token,
// contiguous. S: [dk][dv], updated in place.
struct GdnStrides {
    int64_t qkv;  // row stride of q, k, v (the conv output row)
    int64_t o;    // row stride of the output
};
void gdn_recurrent_head(const float* q, const float* k, const float* v, GdnStrides stride, const float* g,
                        const float* beta, int32_t len, int64_t dk, int64_t dv, float* S, float* o);
// Same result, chunked WY/UT form with chunk size 64 (docs/qwen35-model.md §2.8).
void gdn_chunked_head(const float* q, const float* k, const float* v, GdnStrides stride, const float* g,
                      const float* beta, int32_t len, int64_t dk, int64_t dv, float* S, float* o);
constexpr int32_t kGdnChunk = 64;
// The fast backend's chunked form (gdn_fast.cpp): the same math as small AVX-512 matrix products, in another
// summation order; gdn_chunked_head itself where the CPU lacks AVX-512 or dk, dv are not multiples of 16.
void gdn_chunked_head_fast(const float* q, const float* k, const float* v, GdnStrides stride, const float* g,
                           const float* beta, int32_t len, int64_t dk, int64_t dv, float* S, float* o);

// fast: the fast backend's conv and chunked form (gdn_conv_fast, gdn_chunked_head_fast) instead of the oracle's.
void gdn_mixer(const StepBatch& b, const GdnDims& d, const GdnWeights& w, float eps, float* qkv_n_c,
               const float* z_n_v, const float* b_n_hv, const float* a_n_hv, float* o_n_v,
               GdnState (*state_of)(void* ctx, int32_t slot), void* ctx, bool fast = false);

// KV storage of one attention layer: rows of hd elements in `type`, [block][token in block][kv head].
struct KvLayer {
    DType type;
    int32_t block_tokens;
    int64_t row_bytes;
    uint8_t* k;
    uint8_t* v;
};
// fast: the fast backend's AVX-512 softmax rows (attention_row.h) where the CPU has them; false is the oracle.
void attention(const StepBatch& b, const AttnDims& d, const AttnWeights& w, float eps, const float* qg_n_2q,
               const float* k_n_kv, const float* v_n_kv, float* out_n_q, const KvLayer& kv, bool fast = false);

// mm: the backend's matmul (matmul or matmul_fast) for the experts and the shared expert.
using MatmulFn = void (*)(const float* x, int32_t n, const Matrix& W, float* y);
void moe_ffn(const float* x_n_h, int32_t n, const MoeWeights& w, int64_t top_k, float* y_n_h, MatmulFn mm = matmul);

}  // namespace dg::cpu
