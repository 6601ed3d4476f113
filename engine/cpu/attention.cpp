// Gated full attention on the CPU over the paged KV cache: q/gate split, zero-centred q/k RMSNorm,
// partial NeoX RoPE, K/V written into the sequence's blocks (in the cache's storage type), causal GQA
// softmax over every cached position, sigmoid output gate. Math: docs/qwen35-model.md §3.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "engine/cpu/attention_row.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/parallel.h"

namespace dg::cpu {
namespace {

void rms_norm_row(float* x, const float* w, int64_t n, float eps) {
    float ss = 0.f;
    for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
    const float inv = 1.f / std::sqrt(ss / float(n) + eps);
    for (int64_t i = 0; i < n; ++i) x[i] = x[i] * inv * w[i];
}

// Rotates dims [0, rd) of a head in half-split pairs (x_j, x_{j+rd/2}); frequencies in f32 as HF does.
void rope_row(float* x, int64_t rd, float theta, int64_t pos) {
    const int64_t half = rd / 2;
    for (int64_t j = 0; j < half; ++j) {
        const float inv_freq = 1.f / std::pow(theta, float(2 * j) / float(rd));
        const float ang = float(pos) * inv_freq;
        const float c = float(std::cos(double(ang))), s = float(std::sin(double(ang)));
        const float x1 = x[j], x2 = x[j + half];
        x[j] = x1 * c - x2 * s;
        x[j + half] = x2 * c + x1 * s;
    }
}

// Per-thread scratch for a sequence's dequantised K and V, kept between calls: allocating and
// zero-filling it on every call (a fresh mmap once it passes malloc's threshold, so page faults too)
// cost more than the attention itself at decode. Grows by half again when too small; given back when a
// call needs less than a sixth of it.
struct Scratch {
    std::unique_ptr<float[]> p;
    size_t cap = 0;
    float* take(size_t n) {
        if (n > cap || n < cap / 6) {
            p.reset();
            cap = n + n / 2;
            p.reset(new float[cap]);
        }
        return p.get();
    }
};
thread_local Scratch t_kf, t_vf;

// The oracle's softmax row (one query row of attention_row.h's AttendGroupFn): scalar loops, probabilities
// normalised per key.
void attend_row_exact(const float* q, const float* K, const float* V, int64_t n_keys, int64_t hd, float scale,
                      float* scores, float* acc) {
    float mx = -INFINITY;
    for (int64_t p = 0; p < n_keys; ++p) {
        float dot = 0.f;
        for (int64_t j = 0; j < hd; ++j) dot += q[j] * K[p * hd + j];
        scores[p] = dot * scale;
        mx = std::max(mx, scores[p]);
    }
    float sum = 0.f;
    for (int64_t p = 0; p < n_keys; ++p) sum += scores[p] = std::exp(scores[p] - mx);
    std::fill(acc, acc + hd, 0.f);
    for (int64_t p = 0; p < n_keys; ++p) {
        const float pr = scores[p] / sum;
        for (int64_t j = 0; j < hd; ++j) acc[j] += pr * V[p * hd + j];
    }
}

}  // namespace

void attention(const StepBatch& b, const AttnDims& d, const AttnWeights& w, float eps, const float* qg,
               const float* k_in, const float* v_in, float* out, const KvLayer& kv, bool fast) {
    const int64_t Hq = d.Hq, Hkv = d.Hkv, hd = d.hd, group = Hq / Hkv;
    const AttendGroupFn attend_group = fast ? attend_group_fast(hd) : nullptr;
    const AttendCachedRowFn attend_cached = fast ? attend_cached_row_fast(kv.type, hd) : nullptr;
    const float scale = 1.f / std::sqrt(float(hd));
    auto kv_row = [&](uint8_t* base, const SeqSlice& s, int64_t pos, int64_t head) {
        const int64_t block = s.blocks[pos / kv.block_tokens], off = pos % kv.block_tokens;
        return base + ((block * kv.block_tokens + off) * Hkv + head) * kv.row_bytes;
    };

    // 1. K: norm + RoPE, then K and V stored at their positions.
    for (const SeqSlice& s : b.seqs) {
        parallel_for(int64_t(s.len) * Hkv, [&](int64_t i0, int64_t i1) {
            std::vector<float> row(hd);
            for (int64_t i = i0; i < i1; ++i) {
                const int64_t t = i / Hkv, h = i % Hkv, pos = s.pos0 + t, r = s.begin + t;
                const float* kr = k_in + (r * Hkv + h) * hd;
                for (int64_t j = 0; j < hd; ++j) row[j] = kr[j];
                rms_norm_row(row.data(), w.k_norm.data(), hd, eps);
                rope_row(row.data(), d.rotary_dim, d.rope_theta, pos);
                quantize_row(kv.type, row.data(), kv_row(kv.k, s, pos, h), hd);
                quantize_row(kv.type, v_in + (r * Hkv + h) * hd, kv_row(kv.v, s, pos, h), hd);
            }
        }, 8);  // a decode token's few heads are a microsecond of work: not worth a dispatch
    }

    // 2. Each query row attends to positions [0, pos] of its own sequence. The oracle, and a prefill on
    //    the fast path, first dequantise the sequence's K/V once into f32 ([kv head][position][hd]), shared
    //    by every query row and head; a decode row on the fast path reads the cache rows in place.
    for (const SeqSlice& s : b.seqs) {
        const int64_t P = int64_t(s.pos0) + s.len;
        const bool in_place = attend_cached && s.len == 1;
        const float *kf = nullptr, *vf = nullptr;
        thread_local std::vector<const uint8_t*> k_rows, v_rows;  // [kv head][position]
        if (in_place) {
            k_rows.resize(size_t(Hkv * P));
            v_rows.resize(size_t(Hkv * P));
            for (int64_t h = 0; h < Hkv; ++h)
                for (int64_t p = 0; p < P; ++p) k_rows[h * P + p] = kv_row(kv.k, s, p, h), v_rows[h * P + p] = kv_row(kv.v, s, p, h);
        } else {
            float* kd = t_kf.take(size_t(Hkv * P * hd));
            float* vd = t_vf.take(size_t(Hkv * P * hd));
            parallel_for(P * Hkv, [&](int64_t i0, int64_t i1) {
                for (int64_t i = i0; i < i1; ++i) {
                    const int64_t h = i / P, p = i % P;
                    dequantize_row(kv.type, kv_row(kv.k, s, p, h), &kd[(h * P + p) * hd], hd);
                    dequantize_row(kv.type, kv_row(kv.v, s, p, h), &vd[(h * P + p) * hd], hd);
                }
            }, 64);
            kf = kd, vf = vd;
        }
        const uint8_t* const* kr = k_rows.data();  // the caller's thread_local, read by every pool thread
        const uint8_t* const* vr = v_rows.data();
        // Head h of token t: its query, normed and rotated, into q; its gated output from acc.
        auto query = [&](int64_t t, int64_t h, float* q) {
            const float* qsrc = qg + ((s.begin + t) * Hq + h) * 2 * hd;  // per head [query hd | gate hd]
            for (int64_t j = 0; j < hd; ++j) q[j] = qsrc[j];
            rms_norm_row(q, w.q_norm.data(), hd, eps);
            rope_row(q, d.rotary_dim, d.rope_theta, s.pos0 + t);
        };
        auto gated_out = [&](int64_t t, int64_t h, const float* acc) {
            const float* gate = qg + ((s.begin + t) * Hq + h) * 2 * hd + hd;
            float* o = out + ((s.begin + t) * Hq + h) * hd;
            for (int64_t j = 0; j < hd; ++j) o[j] = acc[j] / (1.f + std::exp(-gate[j]));
        };
        // Causal rows: a late token attends to many more positions than an early one, so the items go out
        // in small chunks to whichever thread is free (one half per thread left the early half's thread
        // idle for most of a prefill's attention).
        constexpr int kChunksPerThread = 16;
        if (!in_place && attend_group) {  // a prefill on the fast path: a KV head's query heads together
            parallel_for_balanced(int64_t(s.len) * Hkv, [&](int64_t i0, int64_t i1) {
                std::vector<float> q(size_t(group * hd)), acc(q.size()), scores(size_t(4 * P));
                for (int64_t i = i0; i < i1; ++i) {
                    const int64_t t = i / Hkv, kvh = i % Hkv;
                    for (int64_t g = 0; g < group; ++g) query(t, kvh * group + g, &q[size_t(g * hd)]);
                    attend_group(q.data(), int(group), &kf[kvh * P * hd], &vf[kvh * P * hd], s.pos0 + t + 1, hd, scale,
                                 scores.data(), acc.data());
                    for (int64_t g = 0; g < group; ++g) gated_out(t, kvh * group + g, &acc[size_t(g * hd)]);
                }
            }, kChunksPerThread);
            continue;
        }
        parallel_for_balanced(int64_t(s.len) * Hq, [&](int64_t i0, int64_t i1) {
            std::vector<float> q(hd), acc(hd), scores(P);
            for (int64_t i = i0; i < i1; ++i) {
                const int64_t t = i / Hq, h = i % Hq, pos = s.pos0 + t, kvh = h / group;
                query(t, h, q.data());
                if (in_place) attend_cached(q.data(), kr + kvh * P, vr + kvh * P, pos + 1, hd, scale, scores.data(), acc.data());
                else attend_row_exact(q.data(), &kf[kvh * P * hd], &vf[kvh * P * hd], pos + 1, hd, scale, scores.data(), acc.data());
                gated_out(t, h, acc.data());
            }
        }, kChunksPerThread);
    }
}

}  // namespace dg::cpu
