// Reference quantisers. Q8_0, Q4_0 and Q4_1 follow ggml's *_ref rounding rules exactly; the K-quants use
// a small least-squares scale search (close to ggml's in error, not byte-identical to it). Every output
// is in the exact ggml block layout, so any ggml-compatible reader decodes it.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "engine/formats/dtype.h"
#include "engine/formats/quant_blocks.h"
#include "engine/status.h"

namespace dg {

namespace {

using qb::store_u16;

// Round half to even, as ggml's nearest_int does for the magnitudes used here.
inline int nearest_int(float f) { return static_cast<int>(std::nearbyint(f)); }

void quant_q8_0(const float* x, uint8_t* b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(b, f32_to_f16(d));
    auto* qs = reinterpret_cast<int8_t*>(b + qb::kQ8_0_Qs);
    for (int j = 0; j < 32; ++j) qs[j] = static_cast<int8_t>(std::round(x[j] * id));
}

void quant_q4_0(const float* x, uint8_t* b) {
    // The signed value of largest magnitude maps to -8, so the full 16-level range is used.
    float amax = 0.0f, vmax = 0.0f;
    for (int j = 0; j < 32; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            vmax = x[j];
        }
    }
    const float d = vmax / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(b, f32_to_f16(d));
    uint8_t* qs = b + qb::kQ4_0_Qs;
    for (int j = 0; j < 16; ++j) {
        const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
        const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
        qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
}

void quant_q4_1(const float* x, uint8_t* b) {
    float vmin = FLT_MAX, vmax = -FLT_MAX;
    for (int j = 0; j < 32; ++j) {
        vmin = std::min(vmin, x[j]);
        vmax = std::max(vmax, x[j]);
    }
    const float d = (vmax - vmin) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(b, f32_to_f16(d));
    store_u16(b + 2, f32_to_f16(vmin));
    uint8_t* qs = b + qb::kQ4_1_Qs;
    for (int j = 0; j < 16; ++j) {
        const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - vmin) * id + 0.5f)));
        const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>((x[j + 16] - vmin) * id + 0.5f)));
        qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
}

// Fits x[i] ~ scale * L[i] - min with L in [0, nmax] and min >= 0 (as K-quants store it), trying a few
// initial step sizes and refitting (scale, min) by weighted least squares for each; returns the best.
void fit_scale_min(const float* x, int n, int nmax, float* scale, float* min) {
    float xmin = x[0], xmax = x[0], sum_x2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        xmin = std::min(xmin, x[i]);
        xmax = std::max(xmax, x[i]);
        sum_x2 += x[i] * x[i];
    }
    if (xmin > 0.0f) xmin = 0.0f;
    if (xmax <= xmin) {
        *scale = 0.0f;
        *min = -xmin;
        return;
    }
    // Larger weights on larger values: they dominate matmul error.
    float w[32];
    const float av_x = std::sqrt(sum_x2 / static_cast<float>(n));
    for (int i = 0; i < n; ++i) w[i] = av_x + std::fabs(x[i]);

    float best_s = (xmax - xmin) / static_cast<float>(nmax), best_m = xmin;
    float best_err = FLT_MAX;
    for (int step = -10; step <= 10; ++step) {
        const float iscale = (static_cast<float>(nmax) + 0.1f * static_cast<float>(step)) / (xmax - xmin);
        float sw = 0, sl = 0, sl2 = 0, sx = 0, sxl = 0;
        int L[32];
        for (int i = 0; i < n; ++i) {
            L[i] = std::clamp(nearest_int(iscale * (x[i] - xmin)), 0, nmax);
            sw += w[i];
            sl += w[i] * L[i];
            sl2 += w[i] * L[i] * L[i];
            sx += w[i] * x[i];
            sxl += w[i] * x[i] * L[i];
        }
        const float det = sw * sl2 - sl * sl;
        if (det <= 0.0f) continue;
        float s = (sw * sxl - sx * sl) / det;
        float m = (sl2 * sx - sl * sxl) / det;
        if (m > 0.0f) {  // the format cannot add a positive offset: refit through zero
            m = 0.0f;
            s = sxl / sl2;
        }
        if (!(s > 0.0f)) continue;
        float err = 0.0f;
        for (int i = 0; i < n; ++i) {
            const float diff = s * L[i] + m - x[i];
            err += w[i] * diff * diff;
        }
        if (err < best_err) {
            best_err = err;
            best_s = s;
            best_m = m;
        }
    }
    *scale = best_s;
    *min = -best_m;
}

// Packs 8 six-bit (scale, min) pairs into 12 bytes: the inverse of qb::scale_min_k4.
void pack_scales_k4(const uint8_t* ls, const uint8_t* lm, uint8_t* s) {
    std::memset(s, 0, 12);
    for (int j = 0; j < 8; ++j) {
        if (j < 4) {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            s[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
            s[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
        }
    }
}

// Shared by Q4_K (nmax 15) and Q5_K (nmax 31): eight 32-element sub-blocks, 6-bit scales and mins
// relative to the f16 super-block d and dmin. Writes d, dmin, scales and the levels L[256].
void quant_k_scales(const float* x, int nmax, uint8_t* b, uint8_t* L) {
    float scales[8], mins[8];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; ++j) {
        fit_scale_min(x + 32 * j, 32, nmax, &scales[j], &mins[j]);
        max_scale = std::max(max_scale, scales[j]);
        max_min = std::max(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; ++j) {
        ls[j] = static_cast<uint8_t>(std::min(63, nearest_int(inv_scale * scales[j])));
        lm[j] = static_cast<uint8_t>(std::min(63, nearest_int(inv_min * mins[j])));
    }
    store_u16(b, f32_to_f16(max_scale / 63.0f));
    store_u16(b + 2, f32_to_f16(max_min / 63.0f));
    pack_scales_k4(ls, lm, b + 4);
    // Requantise against the scales as they will be decoded (f16 d times 6-bit factor).
    const float d = qb::load_f16(b), dmin = qb::load_f16(b + 2);
    for (int j = 0; j < 8; ++j) {
        const float dl = d * ls[j], ml = dmin * lm[j];
        for (int i = 0; i < 32; ++i) {
            const int q = dl != 0.0f ? nearest_int((x[32 * j + i] + ml) / dl) : 0;
            L[32 * j + i] = static_cast<uint8_t>(std::clamp(q, 0, nmax));
        }
    }
}

void quant_q4_k(const float* x, uint8_t* b) {
    uint8_t L[256];
    quant_k_scales(x, 15, b, L);
    uint8_t* qs = b + qb::kQ4_K_Qs;
    for (int c = 0; c < 4; ++c) {
        for (int l = 0; l < 32; ++l) qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

void quant_q5_k(const float* x, uint8_t* b) {
    uint8_t L[256];
    quant_k_scales(x, 31, b, L);
    uint8_t* qh = b + qb::kQ5_K_Qh;
    uint8_t* qs = b + qb::kQ5_K_Qs;
    std::memset(qh, 0, 32);
    for (int c = 0; c < 4; ++c) {
        for (int l = 0; l < 32; ++l) {
            const uint8_t lo = L[64 * c + l], hi = L[64 * c + 32 + l];
            qs[32 * c + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
            qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
        }
    }
}

// Symmetric fit for one Q6_K sub-block: x ~ scale * q, q in [-32, 31]. The signed extreme maps to -32
// (using the one extra negative level); nearby step sizes are tried and the best least-squares fit kept.
float fit_scale_sym(const float* x, int n) {
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < n; ++i) {
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            vmax = x[i];
        }
    }
    if (amax < 1e-30f) return 0.0f;
    float best_score = -1.0f, best_scale = -vmax / 32.0f;
    for (int step = -9; step <= 9; ++step) {
        const float iscale = -(32.0f + 0.1f * static_cast<float>(step)) / vmax;
        float sxl = 0.0f, sl2 = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int q = std::clamp(nearest_int(iscale * x[i]), -32, 31);
            const float w = x[i] * x[i];
            sxl += w * x[i] * q;
            sl2 += w * q * q;
        }
        // For the optimal scale sxl/sl2 the weighted error is sum(w x^2) - sxl^2/sl2: maximise the latter.
        if (sl2 > 0.0f && sxl * sxl / sl2 > best_score) {
            best_score = sxl * sxl / sl2;
            best_scale = sxl / sl2;
        }
    }
    return best_scale;
}

void quant_q6_k(const float* x, uint8_t* b) {
    float scales[16];
    float amax = 0.0f, vmax = 0.0f;
    for (int j = 0; j < 16; ++j) {
        scales[j] = fit_scale_sym(x + 16 * j, 16);
        if (std::fabs(scales[j]) > amax) {
            amax = std::fabs(scales[j]);
            vmax = scales[j];
        }
    }
    auto* sc = reinterpret_cast<int8_t*>(b + qb::kQ6_K_Sc);
    uint8_t L[256];
    if (amax == 0.0f) {
        std::memset(b, 0, 210);
        std::memset(L, 32, sizeof(L));
    } else {
        const float iscale = -128.0f / vmax;
        for (int j = 0; j < 16; ++j) sc[j] = static_cast<int8_t>(std::clamp(nearest_int(iscale * scales[j]), -128, 127));
        store_u16(b + qb::kQ6_K_D, f32_to_f16(1.0f / iscale));
        const float d = qb::load_f16(b + qb::kQ6_K_D);
        for (int j = 0; j < 16; ++j) {
            const float dl = d * sc[j];
            for (int i = 0; i < 16; ++i) {
                const int q = dl != 0.0f ? nearest_int(x[16 * j + i] / dl) : 0;
                L[16 * j + i] = static_cast<uint8_t>(std::clamp(q, -32, 31) + 32);
            }
        }
    }
    uint8_t* ql_all = b + qb::kQ6_K_Ql;
    uint8_t* qh_all = b + qb::kQ6_K_Qh;
    for (int half = 0; half < 2; ++half) {
        uint8_t* ql = ql_all + 64 * half;
        uint8_t* qh = qh_all + 32 * half;
        const uint8_t* q = L + 128 * half;
        for (int l = 0; l < 32; ++l) {
            const uint8_t q1 = q[l], q2 = q[l + 32], q3 = q[l + 64], q4 = q[l + 96];
            ql[l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
            ql[l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
            qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
    }
}

}  // namespace

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
    auto* out = static_cast<uint8_t*>(dst);
    switch (t) {
        case DType::F32:
            if (n > 0) std::memcpy(out, src, static_cast<size_t>(n) * 4);
            return;
        case DType::F16:
            for (int64_t i = 0; i < n; ++i) store_u16(out + 2 * i, f32_to_f16(src[i]));
            return;
        case DType::BF16:
            for (int64_t i = 0; i < n; ++i) store_u16(out + 2 * i, f32_to_bf16(src[i]));
            return;
        default:
            break;
    }
    const DTypeInfo& info = dtype_info(t);
    DG_CHECK(n % info.block_elems == 0, "quantize_row: %d elements of %s", n, info.name);
    void (*fn)(const float*, uint8_t*) = nullptr;
    switch (t) {
        case DType::Q8_0: fn = quant_q8_0; break;
        case DType::Q4_0: fn = quant_q4_0; break;
        case DType::Q4_1: fn = quant_q4_1; break;
        case DType::Q4_K: fn = quant_q4_k; break;
        case DType::Q5_K: fn = quant_q5_k; break;
        case DType::Q6_K: fn = quant_q6_k; break;
        default: DG_CHECK(false, "quantize_row: bad dtype %u", static_cast<uint32_t>(t));
    }
    for (int64_t i = 0; i < n; i += info.block_elems) {
        fn(src + i, out);
        out += info.block_bytes;
    }
}

}  // namespace dg
