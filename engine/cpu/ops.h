// The CPU backend's ops as plain functions on host memory: the reference every other backend is
// tested against. One file per op family (matmul.cpp, gdn.cpp, attention.cpp, moe.cpp, elementwise.cpp).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend.h"

namespace dg::cpu {

// The exact oracle: f32 activations, weights dequantised exactly (matmul.cpp).
void matmul(const float* x, int32_t n, const Matrix& W, float* y);
// The serving path: activations quantised to 8-bit blocks for quantised weights (matmul_fast.cpp).
void matmul_fast(const float* x, int32_t n, const Matrix& W, float* y);
// matmul_fast's per-row path (decode kernels over token tiles of 4) for any n; matmul_fast takes it below
// gemm_min_tokens() (gemm.h). For the crossover measurement (tests/bench/bench_gemm_crossover.cpp).
// kBlock32: activation scales per 32 elements for every weight type, as the CUDA GEMV quantises (its
// tests' reference); kServing: per 256 for Q4_K / Q5_K where the CPU has the kernels (quant_dot.h).
enum class FastActs { kServing, kBlock32 };
void matmul_fast_rows(const float* x, int32_t n, const Matrix& W, float* y, FastActs acts = FastActs::kServing);
// Several matmul_fast calls of one input, ys[i] = x · Ws[i]ᵀ (every Ws[i]->cols the same), each row's result
// bit for bit matmul_fast's: the input is converted once per activation format and the rows of all the
// matrices go through the pool in one pass (Backend::matmuls_of_one_input).
void matmuls_fast(const float* x, int32_t n, std::span<const Matrix* const> Ws, std::span<float* const> ys);
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
// The same for the fast backend (gdn_fast.cpp): 16 channels per AVX-512 vector, exp512's SiLU. It reads
// the taps transposed (conv_w_k_c = conv_taps_major(conv_w_c_k)), made once per layer by the backend, not
// per call (transposing them took a tenth of the mixer's decode time); the oracle's where the CPU lacks AVX-512.
void gdn_conv_fast(float* qkv_len_c, int32_t len, const GdnDims& d, const float* conv_w_c_k, const float* conv_w_k_c,
                   float* conv_state);
std::vector<float> conv_taps_major(const float* conv_w_c_k, int64_t C, int64_t K);
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

// The fast backend's recurrent form (gdn_fast.cpp): two AVX-512 passes over S instead of four, another
// summation order; gdn_recurrent_head itself where the CPU lacks AVX-512 or dv is not a multiple of 16.
void gdn_recurrent_head_fast(const float* q, const float* k, const float* v, GdnStrides stride, const float* g,
                             const float* beta, int32_t len, int64_t dk, int64_t dv, float* S, float* o);
// Gated RMSNorm of the mixer's output rows, in place: o / rms(o) * norm_w * SiLU(z) (plain weight, not 1+w).
void gdn_gated_rmsnorm(float* o_rows_dv, const float* z_rows_dv, int64_t rows, int64_t dv, const float* norm_w,
                       float eps);
// The same with exp512's SiLU (gdn_fast.cpp).
void gdn_gated_rmsnorm_fast(float* o_rows_dv, const float* z_rows_dv, int64_t rows, int64_t dv, const float* norm_w,
                            float eps);

// fast: the fast backend's conv, recurrent and chunked forms and gated norm (the _fast functions above)
// instead of the oracle's.
// conv_w_k_c: the fast conv's transposed taps (conv_taps_major); with fast and none given, made here.
void gdn_mixer(const StepBatch& b, const GdnDims& d, const GdnWeights& w, float eps, float* qkv_n_c,
               const float* z_n_v, const float* b_n_hv, const float* a_n_hv, float* o_n_v,
               GdnState (*state_of)(void* ctx, int32_t slot), void* ctx, bool fast = false,
               const float* conv_w_k_c = nullptr);

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
