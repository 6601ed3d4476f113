// Gated DeltaNet on the CPU: causal conv with state, gates, L2 norm, the delta rule in its recurrent
// (decode) and chunked WY/UT (prefill) forms, and the gated RMSNorm. Math: docs/qwen35-model.md §2.
// Value head h reads key head h % Hk (tiled order, engine/weights.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/cpu/ops.h"
#include "engine/cpu/parallel.h"

namespace dg::cpu {
namespace {

inline float silu(float x) { return x / (1.f + std::exp(-x)); }
inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }
inline float softplus(float x) { return x > 20.f ? x : std::log1p(std::exp(x)); }  // torch's threshold 20
constexpr float kL2Eps = 1e-6f;  // HF l2norm: x / sqrt(sum(x^2) + 1e-6)

}  // namespace

void gdn_conv(float* u, int32_t len, const GdnDims& d, const float* conv_w, float* conv_state) {
    const int64_t C = d.conv_dim, K = d.K, P = K - 1;
    // The window of row t is [t-P, t] over (state ++ rows). Walking t downwards lets the output overwrite
    // row t in place: later (smaller) t only read rows below t.
    std::vector<float> tail(P * C);  // new conv state: the last P pre-conv inputs
    for (int64_t j = 0; j < P; ++j) {
        const int64_t src = len - P + j;  // index into (rows), negative = old state
        const float* from = src >= 0 ? u + src * C : conv_state + (P + src) * C;
        std::memcpy(tail.data() + j * C, from, C * sizeof(float));
    }
    parallel_for(C, [&](int64_t c0, int64_t c1) {
        for (int64_t t = len - 1; t >= 0; --t) {
            for (int64_t c = c0; c < c1; ++c) {
                const float* w = conv_w + c * K;
                float acc = 0.f;
                for (int64_t j = 0; j < K; ++j) {
                    const int64_t src = t - P + j;
                    acc += w[j] * (src >= 0 ? u[src * C + c] : conv_state[(P + src) * C + c]);
                }
                u[t * C + c] = silu(acc);
            }
        }
    }, std::max<int64_t>(256, 32768 / (int64_t(len) * K)));  // about 32k MACs a chunk: inline at decode
    std::memcpy(conv_state, tail.data(), P * C * sizeof(float));
}

void gdn_recurrent_head(const float* q, const float* k, const float* v, GdnStrides stride, const float* g,
                        const float* beta, int32_t len, int64_t dk, int64_t dv, float* S, float* o) {
    std::vector<float> mem(dv);
    for (int32_t t = 0; t < len; ++t) {
        const float* qt = q + t * stride.qkv;
        const float* kt = k + t * stride.qkv;
        const float* vt = v + t * stride.qkv;
        const float decay = std::exp(g[t]);
        std::fill(mem.begin(), mem.end(), 0.f);
        for (int64_t i = 0; i < dk; ++i) {
            float* Si = S + i * dv;
            for (int64_t j = 0; j < dv; ++j) {
                Si[j] *= decay;
                mem[j] += Si[j] * kt[i];
            }
        }
        for (int64_t j = 0; j < dv; ++j) mem[j] = beta[t] * (vt[j] - mem[j]);  // delta
        float* ot = o + t * stride.o;
        std::fill(ot, ot + dv, 0.f);
        for (int64_t i = 0; i < dk; ++i) {
            float* Si = S + i * dv;
            for (int64_t j = 0; j < dv; ++j) {
                Si[j] += kt[i] * mem[j];
                ot[j] += Si[j] * qt[i];
            }
        }
    }
}

void gdn_chunked_head(const float* q, const float* k, const float* v, GdnStrides stride, const float* g,
                      const float* beta, int32_t len, int64_t dk, int64_t dv, float* S, float* o) {
    const int64_t W = dv + dk;  // X rows: [U (dv) | W (dk)]
    std::vector<float> gam(kGdnChunk), A(kGdnChunk * kGdnChunk), X(kGdnChunk * W), Vp(kGdnChunk * dv), qs(dv);
    for (int32_t c0 = 0; c0 < len; c0 += kGdnChunk) {
        const int32_t m = std::min<int32_t>(kGdnChunk, len - c0);
        auto Q = [&](int r) { return q + int64_t(c0 + r) * stride.qkv; };
        auto Kr = [&](int r) { return k + int64_t(c0 + r) * stride.qkv; };
        float acc = 0.f;
        for (int r = 0; r < m; ++r) gam[r] = acc += g[c0 + r];
        // A = strict_lower(beta_r k_r.k_s exp(gam_r - gam_s)); rhs = [beta v | beta exp(gam) k]
        for (int r = 0; r < m; ++r) {
            const float br = beta[c0 + r];
            for (int s = 0; s < r; ++s) {
                float dot = 0.f;
                for (int64_t i = 0; i < dk; ++i) dot += Kr(r)[i] * Kr(s)[i];
                A[r * kGdnChunk + s] = br * dot * std::exp(gam[r] - gam[s]);
            }
            float* xr = X.data() + r * W;
            const float* vr = v + int64_t(c0 + r) * stride.qkv;
            const float eg = std::exp(gam[r]);
            for (int64_t j = 0; j < dv; ++j) xr[j] = br * vr[j];
            for (int64_t i = 0; i < dk; ++i) xr[dv + i] = br * eg * Kr(r)[i];
            // forward substitution: (I + A) X = rhs
            for (int s = 0; s < r; ++s) {
                const float a = A[r * kGdnChunk + s];
                const float* xs = X.data() + s * W;
                for (int64_t j = 0; j < W; ++j) xr[j] -= a * xs[j];
            }
        }
        // V' = U - W S
        for (int r = 0; r < m; ++r) {
            float* vp = Vp.data() + r * dv;
            const float* xr = X.data() + r * W;
            for (int64_t j = 0; j < dv; ++j) vp[j] = xr[j];
            for (int64_t i = 0; i < dk; ++i) {
                const float wi = xr[dv + i];
                const float* Si = S + i * dv;
                for (int64_t j = 0; j < dv; ++j) vp[j] -= wi * Si[j];
            }
        }
        // O_r = exp(gam_r) q_r S + sum_{s<=r} (q_r.k_s) exp(gam_r - gam_s) V'_s
        for (int r = 0; r < m; ++r) {
            float* orow = o + int64_t(c0 + r) * stride.o;
            std::fill(qs.begin(), qs.end(), 0.f);
            for (int64_t i = 0; i < dk; ++i) {
                const float qi = Q(r)[i];
                const float* Si = S + i * dv;
                for (int64_t j = 0; j < dv; ++j) qs[j] += qi * Si[j];
            }
            const float eg = std::exp(gam[r]);
            for (int64_t j = 0; j < dv; ++j) orow[j] = eg * qs[j];
            for (int s = 0; s <= r; ++s) {
                float dot = 0.f;
                for (int64_t i = 0; i < dk; ++i) dot += Q(r)[i] * Kr(s)[i];
                const float coef = dot * std::exp(gam[r] - gam[s]);
                const float* vp = Vp.data() + s * dv;
                for (int64_t j = 0; j < dv; ++j) orow[j] += coef * vp[j];
            }
        }
        // S = exp(gam_last) S + sum_r exp(gam_last - gam_r) k_r V'_rᵀ
        const float last = gam[m - 1], el = std::exp(last);
        for (int64_t i = 0; i < dk * dv; ++i) S[i] *= el;
        for (int r = 0; r < m; ++r) {
            const float e = std::exp(last - gam[r]);
            const float* vp = Vp.data() + r * dv;
            for (int64_t i = 0; i < dk; ++i) {
                const float ki = e * Kr(r)[i];
                float* Si = S + i * dv;
                for (int64_t j = 0; j < dv; ++j) Si[j] += ki * vp[j];
            }
        }
    }
}

void gdn_mixer(const StepBatch& b, const GdnDims& d, const GdnWeights& w, float eps, float* qkv, const float* z,
               const float* bproj, const float* aproj, float* o, GdnState (*state_of)(void*, int32_t), void* ctx,
               bool fast, const float* conv_w_k_c) {
    const int32_t n = b.n_tokens();
    const int64_t C = d.conv_dim, Hk = d.Hk, Hv = d.Hv, dk = d.dk, dv = d.dv, qk = Hk * dk;
    std::vector<float> taps;
    if (fast && !conv_w_k_c) conv_w_k_c = (taps = conv_taps_major(w.conv_w.data(), C, d.K)).data();
    for (const SeqSlice& s : b.seqs) {
        float* u = qkv + int64_t(s.begin) * C;
        float* conv_state = state_of(ctx, s.state_slot).conv;
        if (fast) gdn_conv_fast(u, s.len, d, w.conv_w.data(), conv_w_k_c, conv_state);
        else gdn_conv(u, s.len, d, w.conv_w.data(), conv_state);
    }

    // L2-normalise q and k per key head; q also scaled by dk^-1/2.
    const float qscale = 1.f / std::sqrt(float(dk));
    parallel_for(int64_t(n) * 2 * Hk, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            float* x = qkv + (i / (2 * Hk)) * C + (i % (2 * Hk)) * dk;  // q heads then k heads
            float ss = 0.f;
            for (int64_t j = 0; j < dk; ++j) ss += x[j] * x[j];
            float inv = 1.f / std::sqrt(ss + kL2Eps);
            if (i % (2 * Hk) < Hk) inv *= qscale;
            for (int64_t j = 0; j < dk; ++j) x[j] *= inv;
        }
    }, 64);

    // Gates, stored head-major [Hv][n] so each head's tokens are contiguous.
    std::vector<float> g_hn(Hv * n), beta_hn(Hv * n);
    for (int32_t t = 0; t < n; ++t)
        for (int64_t h = 0; h < Hv; ++h) {
            beta_hn[h * n + t] = sigmoid(bproj[int64_t(t) * Hv + h]);
            g_hn[h * n + t] = w.ssm_a[h] * softplus(aproj[int64_t(t) * Hv + h] + w.dt_bias[h]);
        }

    const int64_t jobs = int64_t(b.seqs.size()) * Hv;
    // Heads cost alike, but a thread that finishes its half early takes the other's last heads instead of
    // waiting (parallel.h).
    parallel_for_stealing(jobs, [&](int64_t j0, int64_t j1) {
        for (int64_t j = j0; j < j1; ++j) {
            const SeqSlice& s = b.seqs[j / Hv];
            const int64_t h = j % Hv, kh = h % Hk;
            float* S = state_of(ctx, s.state_slot).S + h * dk * dv;
            const float* base = qkv + int64_t(s.begin) * C;
            const float* qh = base + kh * dk;
            const float* kk = base + qk + kh * dk;
            const float* vh = base + 2 * qk + h * dv;
            float* oh = o + int64_t(s.begin) * Hv * dv + h * dv;
            const float* gh = g_hn.data() + h * n + s.begin;
            const float* bh = beta_hn.data() + h * n + s.begin;
            const GdnStrides st{C, Hv * dv};
            if (s.len == 1)
                (fast ? gdn_recurrent_head_fast : gdn_recurrent_head)(qh, kk, vh, st, gh, bh, s.len, dk, dv, S, oh);
            else
                (fast ? gdn_chunked_head_fast : gdn_chunked_head)(qh, kk, vh, st, gh, bh, s.len, dk, dv, S, oh);
        }
    });

    (fast ? gdn_gated_rmsnorm_fast : gdn_gated_rmsnorm)(o, z, int64_t(n) * Hv, dv, w.norm_w.data(), eps);
}

void gdn_gated_rmsnorm(float* o_rows_dv, const float* z_rows_dv, int64_t rows, int64_t dv, const float* norm_w,
                       float eps) {
    parallel_for(rows, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
            float* x = o_rows_dv + r * dv;
            const float* zr = z_rows_dv + r * dv;
            float ss = 0.f;
            for (int64_t j = 0; j < dv; ++j) ss += x[j] * x[j];
            const float inv = 1.f / std::sqrt(ss / float(dv) + eps);
            for (int64_t j = 0; j < dv; ++j) x[j] = x[j] * inv * norm_w[j] * silu(zr[j]);
        }
    }, 64);
}

}  // namespace dg::cpu
