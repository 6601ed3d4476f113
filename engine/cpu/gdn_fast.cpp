// The fast backend's delta rule (ops.h gdn_chunked_head_fast, gdn_recurrent_head_fast) and gated norm.
// The chunked form: the same WY/UT math as
// gdn_chunked_head (gdn.cpp, the oracle), written as small matrix products for AVX-512 so that a 64-token
// chunk's ~4 M multiply-adds per head run at vector speed. The oracle's loops are kept for the oracle:
// their dots are serial scalar sums (bit-exact with the CUDA twin's tests), ~3x the cost of a prefill's
// GEMMs on a 0.8B model. Products here: K Kᵀ and Q Kᵀ (chunk x chunk), the forward substitution (rows of
// [U | W]), W S and Q S (chunk x dk times dk x dv), and Kᵀ V' for the state update; all f32 FMA in a
// different order than the oracle's (tested against it and the recurrent form in gdn_ops_test).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/cpu/exp_avx512.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/parallel.h"
#include "engine/cpu/quant_dot.h"

namespace dg::cpu {

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq")
namespace {

// C[M x N] += alpha * A[M x K] . B[K x N], row-major with leading dimensions; N a multiple of 16.
// Blocks of 4 rows x 32 columns (8 accumulators), the B rows loaded once per 4 rows of A.
void small_gemm(int M, int N, int K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                int64_t ldc) {
    int r = 0;
    for (; r < M; r += 4) {
        const int rows = std::min(4, M - r);
        int j = 0;
        for (; j + 32 <= N; j += 32) {
            __m512 acc[4][2];
            for (int i = 0; i < 4; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
            for (int k = 0; k < K; ++k) {
                const __m512 b0 = _mm512_loadu_ps(B + k * ldb + j), b1 = _mm512_loadu_ps(B + k * ldb + j + 16);
                for (int i = 0; i < 4; ++i) {
                    if (i >= rows) break;
                    const __m512 a = _mm512_set1_ps(A[(r + i) * lda + k]);
                    acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
                    acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
                }
            }
            const __m512 al = _mm512_set1_ps(alpha);
            for (int i = 0; i < rows; ++i) {
                float* c = C + (r + i) * ldc + j;
                _mm512_storeu_ps(c, _mm512_fmadd_ps(al, acc[i][0], _mm512_loadu_ps(c)));
                _mm512_storeu_ps(c + 16, _mm512_fmadd_ps(al, acc[i][1], _mm512_loadu_ps(c + 16)));
            }
        }
        for (; j < N; j += 16) {
            __m512 acc[4];
            for (int i = 0; i < 4; ++i) acc[i] = _mm512_setzero_ps();
            for (int k = 0; k < K; ++k) {
                const __m512 b0 = _mm512_loadu_ps(B + k * ldb + j);
                for (int i = 0; i < rows; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(A[(r + i) * lda + k]), b0, acc[i]);
            }
            const __m512 al = _mm512_set1_ps(alpha);
            for (int i = 0; i < rows; ++i) {
                float* c = C + (r + i) * ldc + j;
                _mm512_storeu_ps(c, _mm512_fmadd_ps(al, acc[i], _mm512_loadu_ps(c)));
            }
        }
    }
}

// xr[j0, j0 + 16 NZ) -= sum_{s < r} coef[s] X[s][j0 ...] (rows W apart), the sums kept in registers over
// all s: a row of the forward substitution, which as one axpy per s loaded and stored xr r times.
template <int NZ>
inline void subtract_rows(const float* coef, int r, const float* X, int64_t W, int64_t j0, float* xr) {
    __m512 acc[NZ];
    for (int z = 0; z < NZ; ++z) acc[z] = _mm512_loadu_ps(xr + j0 + 16 * z);
    for (int s = 0; s < r; ++s) {
        const __m512 c = _mm512_set1_ps(coef[s]);
        const float* xs = X + s * W + j0;
        for (int z = 0; z < NZ; ++z) acc[z] = _mm512_fnmadd_ps(c, _mm512_loadu_ps(xs + 16 * z), acc[z]);
    }
    for (int z = 0; z < NZ; ++z) _mm512_storeu_ps(xr + j0 + 16 * z, acc[z]);
}

void chunked_avx512(const float* q, const float* k, const float* v, GdnStrides stride, const float* g,
                    const float* beta, int32_t len, int64_t dk, int64_t dv, float* S, float* o) {
    constexpr int C = kGdnChunk;
    const int64_t W = dv + dk;  // X rows: [U (dv) | W (dk)]
    thread_local std::vector<float> buf;
    buf.resize(C + C * dk * 3 + dk * C * 2 + C * C * 3 + C * W + C * dv + C * dv);
    float* gam = buf.data();
    float* Kc = gam + C;           // [C][dk] the chunk's keys
    float* Qr = Kc + C * dk;       // [C][dk] queries
    float* Qc = Qr + C * dk;       // [C][dk] queries, row r scaled by exp(gam_r) (may underflow to 0: it is ~0)
    float* KT = Qc + C * dk;       // [dk][C] keys transposed (columns past m zero)
    float* KTe = KT + dk * C;      // [dk][C] keys transposed, column r scaled by exp(gam_last - gam_r)
    float* KK = KTe + dk * C;      // [C][C] k_r . k_s, then A
    float* QK = KK + C * C;        // [C][C] q_r . k_s, then the decay-masked P
    float* D = QK + C * C;         // [C][C] exp(gam_r - gam_s), lower triangle with the diagonal
    float* X = D + C * C;          // [C][W]
    float* Vp = X + C * W;         // [C][dv]
    float* O = Vp + C * dv;        // [C][dv]
    for (int32_t c0 = 0; c0 < len; c0 += C) {
        const int m = std::min<int32_t>(C, len - c0);
        const int mp = (m + 15) / 16 * 16;  // columns of the chunk x chunk products
        float acc = 0.f;
        for (int r = 0; r < m; ++r) gam[r] = acc += g[c0 + r];
        const float last = gam[m - 1];
        std::fill(KT, KT + dk * C, 0.f);
        for (int r = 0; r < m; ++r) {
            const float* kr = k + int64_t(c0 + r) * stride.qkv;
            const float* qr = q + int64_t(c0 + r) * stride.qkv;
            const float eg = std::exp(gam[r]);
            std::memcpy(Kc + r * dk, kr, dk * sizeof(float));
            std::memcpy(Qr + r * dk, qr, dk * sizeof(float));
            for (int64_t i = 0; i < dk; ++i) Qc[r * dk + i] = eg * qr[i], KT[i * C + r] = kr[i];
        }
        // K Kᵀ and Q Kᵀ; the decays exp(gam_r - gam_s) are applied per pair below, as a difference (each
        // factor alone can underflow or overflow over a chunk of fast decay).
        std::fill(KK, KK + C * C, 0.f);
        std::fill(QK, QK + C * C, 0.f);
        small_gemm(m, mp, int(dk), 1.f, Kc, dk, KT, C, KK, C);
        small_gemm(m, mp, int(dk), 1.f, Qr, dk, KT, C, QK, C);
        // D[r][s] = exp(gam_r - gam_s) for s <= r (0 above), 16 at a time; used by A and P.
        for (int r = 0; r < m; ++r)
            for (int s0 = 0; s0 < mp; s0 += 16) {
                const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(s0), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
                const __mmask16 keep = _mm512_cmple_epi32_mask(idx, _mm512_set1_epi32(r));
                const __m512 gs = _mm512_maskz_loadu_ps(keep, gam + s0);
                _mm512_storeu_ps(D + r * C + s0, _mm512_maskz_mov_ps(keep, exp512(_mm512_sub_ps(_mm512_set1_ps(gam[r]), gs))));
            }
        // A = strict_lower(beta_r (k_r.k_s) D[r][s]); rhs rows [beta v | beta exp(gam) k];
        // forward substitution (I + A) X = rhs, row by row.
        for (int r = 0; r < m; ++r) {
            const float br = beta[c0 + r], eg = std::exp(gam[r]);
            float* xr = X + r * W;
            const float* vr = v + int64_t(c0 + r) * stride.qkv;
            for (int64_t j = 0; j < dv; ++j) xr[j] = br * vr[j];
            for (int64_t i = 0; i < dk; ++i) xr[dv + i] = br * eg * Kc[r * dk + i];
            float coef[C];
            for (int s = 0; s < r; ++s) coef[s] = br * KK[r * C + s] * D[r * C + s];
            int64_t j0 = 0;  // W is a multiple of 16 (dk and dv are)
            for (; j0 + 128 <= W; j0 += 128) subtract_rows<8>(coef, r, X, W, j0, xr);
            for (; j0 < W; j0 += 16) subtract_rows<1>(coef, r, X, W, j0, xr);
        }
        // V' = U - W S
        for (int r = 0; r < m; ++r) std::memcpy(Vp + r * dv, X + r * W, dv * sizeof(float));
        small_gemm(m, int(dv), int(dk), -1.f, X + dv, W, S, dv, Vp, dv);
        // O_r = exp(gam_r) q_r S + sum_{s<=r} (q_r.k_s) exp(gam_r - gam_s) V'_s: P = QK masked and decayed.
        for (int r = 0; r < m; ++r)
            for (int s = 0; s < mp; ++s) QK[r * C + s] *= D[r * C + s];
        std::fill(O, O + m * dv, 0.f);
        small_gemm(m, int(dv), int(dk), 1.f, Qc, dk, S, dv, O, dv);
        small_gemm(m, int(dv), m, 1.f, QK, C, Vp, dv, O, dv);
        for (int r = 0; r < m; ++r) std::memcpy(o + int64_t(c0 + r) * stride.o, O + r * dv, dv * sizeof(float));
        // S = exp(gam_last) S + sum_r exp(gam_last - gam_r) k_r V'_rᵀ
        const float el = std::exp(last);
        for (int64_t i = 0; i < dk * dv; ++i) S[i] *= el;
        for (int r = 0; r < m; ++r) {
            const float e = std::exp(last - gam[r]);
            for (int64_t i = 0; i < dk; ++i) KTe[i * C + r] = e * KT[i * C + r];
        }
        small_gemm(int(dk), int(dv), m, 1.f, KTe, C, Vp, dv, S, dv);
    }
}

// w: the taps transposed, [j][c], so one load gives 16 channels' tap j.
void conv_avx512(float* u, int32_t len, int64_t C, int64_t K, const float* w, float* conv_state) {
    const int64_t P = K - 1;
    if (len == 1) {
        // Decode: the window is the state's P rows and the token's; the state moves up by one row in the same
        // pass, in registers. (The general path below copies the window's tail out and back, 2 x P rows per
        // layer: those copies were ~1.4% of a q4_k_m decode step.) The same FMAs in the same order: the same bits.
        for (int64_t c = 0; c < C; c += 16) {
            __m512 acc = _mm512_setzero_ps();
            for (int64_t j = 0; j < P; ++j) {
                const __m512 s = _mm512_loadu_ps(conv_state + j * C + c);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + j * C + c), s, acc);
                if (j > 0) _mm512_storeu_ps(conv_state + (j - 1) * C + c, s);
            }
            const __m512 x = _mm512_loadu_ps(u + c);
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + P * C + c), x, acc);
            if (P > 0) _mm512_storeu_ps(conv_state + (P - 1) * C + c, x);
            _mm512_storeu_ps(u + c, silu512(acc));
        }
        return;
    }
    thread_local std::vector<float> tail;
    tail.resize(P * C);
    for (int64_t j = 0; j < P; ++j) {
        const int64_t src = len - P + j;
        std::memcpy(tail.data() + j * C, src >= 0 ? u + src * C : conv_state + (P + src) * C, C * sizeof(float));
    }
    parallel_for(C / 16, [&](int64_t b0, int64_t b1) {
        for (int64_t t = len - 1; t >= 0; --t)  // downwards: row t is overwritten after every later row read it
            for (int64_t c = b0 * 16; c < b1 * 16; c += 16) {
                __m512 acc = _mm512_setzero_ps();
                for (int64_t j = 0; j < K; ++j) {
                    const int64_t src = t - P + j;
                    const float* x = src >= 0 ? u + src * C : conv_state + (P + src) * C;
                    acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + j * C + c), _mm512_loadu_ps(x + c), acc);
                }
                _mm512_storeu_ps(u + t * C + c, silu512(acc));
            }
    }, std::max<int64_t>(16, 2048 / (int64_t(len) * K)));  // about 32k MACs a chunk: inline at decode
    std::memcpy(conv_state, tail.data(), P * C * sizeof(float));
}

// Decode's recurrent form, one head: two passes over S where the oracle makes four (decay, kᵀS, update,
// qᵀS). mem = decay·(kᵀS) only reads S; S' = decay·S + k·deltaᵀ and o = qᵀS' share one read-modify-write
// pass. Every term is per column j, so column blocks of 16·NB lanes run independently, NB accumulator
// chains each (8 for dv = 128: enough to cover the FMA latency in the kᵀS pass).
template <int NB>
void recurrent_avx512(const float* q, const float* k, const float* v, GdnStrides stride, const float* g,
                      const float* beta, int32_t len, int64_t dk, int64_t dv, float* S, float* o) {
    for (int32_t t = 0; t < len; ++t) {
        const float* qt = q + t * stride.qkv;
        const float* kt = k + t * stride.qkv;
        const float* vt = v + t * stride.qkv;
        float* ot = o + t * stride.o;
        const __m512 decay = _mm512_set1_ps(std::exp(g[t])), b = _mm512_set1_ps(beta[t]);
        for (int64_t j0 = 0; j0 < dv; j0 += 16 * NB) {
            __m512 mem[NB], delta[NB], acc[NB];
            for (int c = 0; c < NB; ++c) mem[c] = acc[c] = _mm512_setzero_ps();
            for (int64_t i = 0; i < dk; ++i) {
                const __m512 ki = _mm512_set1_ps(kt[i]);
                const float* Si = S + i * dv + j0;
                for (int c = 0; c < NB; ++c) mem[c] = _mm512_fmadd_ps(_mm512_loadu_ps(Si + 16 * c), ki, mem[c]);
            }
            for (int c = 0; c < NB; ++c)
                delta[c] = _mm512_mul_ps(b, _mm512_fnmadd_ps(decay, mem[c], _mm512_loadu_ps(vt + j0 + 16 * c)));
            for (int64_t i = 0; i < dk; ++i) {
                const __m512 ki = _mm512_set1_ps(kt[i]), qi = _mm512_set1_ps(qt[i]);
                float* Si = S + i * dv + j0;
                for (int c = 0; c < NB; ++c) {
                    const __m512 s = _mm512_fmadd_ps(ki, delta[c], _mm512_mul_ps(decay, _mm512_loadu_ps(Si + 16 * c)));
                    _mm512_storeu_ps(Si + 16 * c, s);
                    acc[c] = _mm512_fmadd_ps(qi, s, acc[c]);
                }
            }
            for (int c = 0; c < NB; ++c) _mm512_storeu_ps(ot + j0 + 16 * c, acc[c]);
        }
    }
}

void gated_rmsnorm_avx512(float* o, const float* z, int64_t rows, int64_t dv, const float* norm_w, float eps) {
    for (int64_t r = 0; r < rows; ++r) {
        float* x = o + r * dv;
        const float* zr = z + r * dv;
        __m512 ss = _mm512_setzero_ps();
        for (int64_t j = 0; j < dv; j += 16) ss = _mm512_fmadd_ps(_mm512_loadu_ps(x + j), _mm512_loadu_ps(x + j), ss);
        const __m512 inv = _mm512_set1_ps(1.f / std::sqrt(_mm512_reduce_add_ps(ss) / float(dv) + eps));
        for (int64_t j = 0; j < dv; j += 16) {
            const __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + j), inv), _mm512_loadu_ps(norm_w + j));
            _mm512_storeu_ps(x + j, _mm512_mul_ps(y, silu512(_mm512_loadu_ps(zr + j))));
        }
    }
}

}  // namespace
#pragma GCC pop_options

std::vector<float> conv_taps_major(const float* conv_w_c_k, int64_t C, int64_t K) {
    std::vector<float> w_k_c(size_t(K * C));
    for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < K; ++j) w_k_c[size_t(j * C + c)] = conv_w_c_k[c * K + j];
    return w_k_c;
}

void gdn_conv_fast(float* u, int32_t len, const GdnDims& d, const float* conv_w_c_k, const float* conv_w_k_c,
                   float* conv_state) {
    if (best_quant_isa() != QuantIsa::kAvx512Vnni || d.conv_dim % 16 != 0)
        return gdn_conv(u, len, d, conv_w_c_k, conv_state);
    conv_avx512(u, len, d.conv_dim, d.K, conv_w_k_c, conv_state);
}

void gdn_recurrent_head_fast(const float* q, const float* k, const float* v, GdnStrides stride, const float* g,
                             const float* beta, int32_t len, int64_t dk, int64_t dv, float* S, float* o) {
    if (best_quant_isa() != QuantIsa::kAvx512Vnni || dv % 16 != 0)
        return gdn_recurrent_head(q, k, v, stride, g, beta, len, dk, dv, S, o);
    if (dv % 128 == 0) return recurrent_avx512<8>(q, k, v, stride, g, beta, len, dk, dv, S, o);
    if (dv % 64 == 0) return recurrent_avx512<4>(q, k, v, stride, g, beta, len, dk, dv, S, o);
    if (dv % 32 == 0) return recurrent_avx512<2>(q, k, v, stride, g, beta, len, dk, dv, S, o);
    recurrent_avx512<1>(q, k, v, stride, g, beta, len, dk, dv, S, o);
}

void gdn_gated_rmsnorm_fast(float* o_rows_dv, const float* z_rows_dv, int64_t rows, int64_t dv, const float* norm_w,
                            float eps) {
    if (best_quant_isa() != QuantIsa::kAvx512Vnni || dv % 16 != 0)
        return gdn_gated_rmsnorm(o_rows_dv, z_rows_dv, rows, dv, norm_w, eps);
    parallel_for(rows, [&](int64_t r0, int64_t r1) {
        gated_rmsnorm_avx512(o_rows_dv + r0 * dv, z_rows_dv + r0 * dv, r1 - r0, dv, norm_w, eps);
    }, 64);
}

void gdn_chunked_head_fast(const float* q, const float* k, const float* v, GdnStrides stride, const float* g,
                           const float* beta, int32_t len, int64_t dk, int64_t dv, float* S, float* o) {
    // AVX-512 here comes with the VNNI level of quant_dot's cpuid check; other shapes or CPUs: the oracle.
    if (best_quant_isa() != QuantIsa::kAvx512Vnni || dk % 16 != 0 || dv % 16 != 0)
        return gdn_chunked_head(q, k, v, stride, g, beta, len, dk, dv, S, o);
    chunked_avx512(q, k, v, stride, g, beta, len, dk, dv, S, o);
}

}  // namespace dg::cpu
