// engine/cpu/quant_dot + matmul_fast, the CPU fast path, against independent references:
// * every kernel (scalar, AVX2, AVX-512 VNNI where the CPU has it; activation scales per 32 and, for
//   Q4_K / Q5_K, per 256) against a double-precision dot of the formats library's dequantised weights
//   with the dequantised activations: the same product, computed without any of the kernels' integer
//   tricks;
// * matmul_fast against the exact f32 oracle (matmul): the normalised error of the activation rounding,
//   printed per type and bounded;
// * batched == single, bit for bit (each token's activations are quantised on their own, and the prefill
//   tile kernels of Q8_0, Q4_K, Q6_K and, with VNNI, Q5_K - 5 tokens: a tile of 4 and one of 1 - equal the
//   decode kernels);
// * the float decode kernels (F32, F16, BF16; AVX2 and AVX-512) against a double-precision dot;
// * the prefill GEMM (gemm.h) for every type against the oracle and against the per-row fast kernels
//   (same activation rounding, so only the summation order differs), on a shape with partial tiles;
// * a whole quantised model (q8_0, q4_k_m, ..., and an MoE one) on the fast backend against the oracle backend: the
//   normalised logit error printed per type and bounded, and greedy agreement wherever the oracle's
//   top-2 margin is larger than the fast path's error could bridge.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/cpu/float_dot.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/quant_dot.h"
#include "engine/formats/dtype.h"
#include "engine/model_export.h"
#include "engine/model_source.h"
#include "engine/runner.h"

namespace dg {
namespace {

using cpu::QuantIsa;

const DType kTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};

std::vector<float> normal(size_t n, std::mt19937& rng, float scale = 1.f) {
    std::normal_distribution<float> nd(0.f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

std::vector<uint8_t> quantized(DType t, const std::vector<float>& w, int64_t rows, int64_t cols) {
    const uint64_t rb = *row_bytes(t, cols);
    std::vector<uint8_t> out(rb * rows);
    for (int64_t r = 0; r < rows; ++r) quantize_row(t, w.data() + r * cols, out.data() + r * rb, cols);
    return out;
}

// The SIMD activation quantisation against its scalar definition, byte for byte: random blocks, a block
// whose products land exactly on halves (127 / amax = 1, so x = k + 0.5 tests ties to even), an all-zero
// block, and one of denormals. On CPUs without AVX-512 both calls run the scalar loop.
TEST(CpuQuantDot, ActivationQuantisationEqualsTheScalarDefinition) {
    std::mt19937 rng(11);
    const int64_t rows = 3, n = 512;
    std::vector<float> x = normal(size_t(rows * n), rng, 3.f);
    x[0] = 127.f;
    for (int i = 1; i < 32; ++i) x[size_t(i)] = float(i % 7) - 3.5f + float(i / 7) * 20.f;  // halves, |x| < 127
    for (int i = 32; i < 64; ++i) x[size_t(i)] = 0.f;
    for (int i = 64; i < 96; ++i) x[size_t(i)] = 1e-40f * float(i - 80);
    const size_t blocks = size_t(rows * n / 32);
    std::vector<int8_t> q(size_t(rows * n)), q_ref(q.size());
    std::vector<float> d(blocks), d_ref(blocks);
    std::vector<int32_t> s(blocks), s_ref(blocks);
    cpu::quantize_act_rows(x.data(), rows, n, q.data(), d.data(), s.data());
    cpu::quantize_act_rows_scalar(x.data(), rows, n, q_ref.data(), d_ref.data(), s_ref.data());
    EXPECT_EQ(q, q_ref);
    EXPECT_EQ(0, std::memcmp(d.data(), d_ref.data(), blocks * sizeof(float)));
    EXPECT_EQ(s, s_ref);
    EXPECT_EQ(q_ref[1], -2) << "-2.5 rounds to even";
    EXPECT_EQ(q_ref[4], 0) << "0.5 rounds to even";
    EXPECT_EQ(q_ref[5], 2) << "1.5 rounds to even";

    // kSuper256 on the same rows: fast == scalar byte for byte, and the scalar one against its definition
    // (element i at super256_pos(i), one scale per 256, sums per 32 in element order).
    const size_t supers = size_t(rows * n / 256);
    std::vector<float> dk(supers), dk_ref(supers);
    cpu::quantize_act_rows_super256(x.data(), rows, n, q.data(), dk.data(), s.data());
    cpu::quantize_act_rows_super256_scalar(x.data(), rows, n, q_ref.data(), dk_ref.data(), s_ref.data());
    EXPECT_EQ(q, q_ref);
    EXPECT_EQ(0, std::memcmp(dk.data(), dk_ref.data(), supers * sizeof(float)));
    EXPECT_EQ(s, s_ref);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t sb = 0; sb < n / 256; ++sb) {
            const float* xs = x.data() + r * n + 256 * sb;
            float amax = 0.f;
            for (int i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(xs[i]));
            ASSERT_EQ(dk_ref[size_t(r * n / 256 + sb)], amax / 127.f);
            for (int j = 0; j < 8; ++j) {
                int32_t sum = 0;
                for (int l = 0; l < 32; ++l) {
                    const int64_t i = 256 * sb + 32 * j + l;
                    const int v = q_ref[size_t(r * n + cpu::super256_pos(i))];
                    sum += v;
                    EXPECT_EQ(v, int(std::nearbyint(xs[32 * j + l] * (amax > 0.f ? 127.f / amax : 0.f)))) << "element " << i;
                }
                EXPECT_EQ(s_ref[size_t(r * n / 32 + 8 * sb + j)], sum);
            }
        }
    EXPECT_EQ(cpu::super256_pos(32), 64) << "sub-block 1 is stored third";
    EXPECT_EQ(cpu::super256_pos(64 + 5), 32 + 5) << "sub-block 2 second";
    EXPECT_EQ(cpu::super256_pos(256 + 7 * 32), 256 + 7 * 32) << "sub-block 7 last";
}

// A row's activations quantised in format f, with each element's dequantised value (what every kernel
// must multiply the weights by).
struct Acts {
    std::vector<int8_t> q;
    std::vector<float> d, xd;
    std::vector<int32_t> s;
    cpu::Q8Row row() const { return {q.data(), d.data(), s.data()}; }
    // The reference product with dequantised weights wd, in double, and the sum of the products'
    // magnitudes (the scale of the kernels' f32 rounding).
    std::pair<double, double> dot(const std::vector<float>& wd) const {
        double want = 0, mag = 0;
        for (size_t i = 0; i < wd.size(); ++i) {
            want += double(wd[i]) * xd[i];
            mag += std::fabs(double(wd[i]) * xd[i]);
        }
        return {want, mag};
    }
};
Acts quantised_acts(cpu::ActFormat f, const std::vector<float>& x) {
    const int64_t n = int64_t(x.size());
    Acts a{std::vector<int8_t>(n), std::vector<float>(n / cpu::act_scale_elems(f)), std::vector<float>(n),
           std::vector<int32_t>(n / 32)};
    cpu::quantize_act(f, x.data(), 1, n, a.q.data(), a.d.data(), a.s.data());
    for (int64_t i = 0; i < n; ++i)
        a.xd[i] = f == cpu::ActFormat::kSuper256 ? float(a.q[cpu::super256_pos(i)]) * a.d[i / 256]
                                                 : float(a.q[i]) * a.d[i / 32];
    return a;
}
const cpu::ActFormat kFormats[] = {cpu::ActFormat::kBlock32, cpu::ActFormat::kSuper256};
const char* fname(cpu::ActFormat f) { return f == cpu::ActFormat::kSuper256 ? "super256" : "block32"; }
// Which (type, ISA, format) must have a kernel: every quantised type on every ISA the CPU has in
// kBlock32; Q4_K and Q5_K in kSuper256 as scalar and VNNI.
bool must_have(DType t, QuantIsa isa, cpu::ActFormat f) {
    if (f == cpu::ActFormat::kBlock32) return true;
    return (t == DType::Q4_K || t == DType::Q5_K) && isa != QuantIsa::kAvx2;
}

void every_kernel_equals_the_dequantised_product(int64_t n) {
    std::mt19937 rng(42);
    std::vector<float> x = normal(n, rng);
    x[5] = 40.f;             // one outlier block
    for (int i = 64; i < 96; ++i) x[i] = 0.f;  // an all-zero block (scale 0)
    std::printf("quant dot kernels: best ISA on this CPU: %s\n", cpu::quant_isa_name(cpu::best_quant_isa()));
    for (cpu::ActFormat f : kFormats) {
        if (n % cpu::act_scale_elems(f) != 0) continue;
        const Acts act = quantised_acts(f, x);
        for (DType t : kTypes) {
            if (n % dtype_info(t).block_elems != 0) continue;
            const std::vector<float> w = normal(4 * n, rng, 0.05f);
            const std::vector<uint8_t> rows = quantized(t, w, 4, n);
            const uint64_t rb = *row_bytes(t, n);
            for (int64_t r = 0; r < 4; ++r) {
                std::vector<float> wd(n);
                dequantize_row(t, rows.data() + r * rb, wd.data(), n);
                const auto [want, mag] = act.dot(wd);
                for (QuantIsa isa : {QuantIsa::kScalar, QuantIsa::kAvx2, QuantIsa::kAvx512Vnni}) {
                    auto fn = cpu::quant_dot_kernel(t, isa, f);
                    if (isa > cpu::best_quant_isa() || !must_have(t, isa, f)) {
                        EXPECT_EQ(fn, nullptr) << dtype_info(t).name << " " << cpu::quant_isa_name(isa) << " " << fname(f);
                        continue;
                    }
                    ASSERT_NE(fn, nullptr) << dtype_info(t).name << " " << cpu::quant_isa_name(isa) << " " << fname(f);
                    const float got = fn(rows.data() + r * rb, act.row(), n);
                    // f32 accumulation of ~n/32 block terms: a few ulps of the magnitude.
                    EXPECT_NEAR(got, want, 2e-6 * mag + 1e-30) << dtype_info(t).name << " " << cpu::quant_isa_name(isa)
                                                               << " " << fname(f) << " row " << r << " n " << n;
                }
            }
        }
    }
}

// Widths: 1024 (four K-quant super-blocks; 32 blocks of 32, whole 8-block steps of the 512-bit Q8_0
// kernel) and 1120 for the 32-element types (35 blocks: 3 past the last 8-block step).
TEST(CpuQuantDot, EveryKernelEqualsTheDequantisedProduct) {
    for (const int64_t n : {int64_t(1024), int64_t(1120)}) every_kernel_equals_the_dequantised_product(n);
    for (DType t : {DType::F32, DType::F16, DType::BF16}) EXPECT_FALSE(cpu::has_quant_kernel(t));
}

// The bf16 decode kernel that takes up to 8 rows at once gives each row exactly what it gives that row
// taken alone (same chains, same reduction), for every group size and for widths with a scalar tail.
TEST(CpuQuantDot, Bf16RowsKernelEqualsTheOneRowKernel) {
    const cpu::Bf16RowsDotFn rows = cpu::bf16_rows_dot_kernel();
    if (!rows) GTEST_SKIP() << "no AVX512_BF16 on this CPU: bf16 decode uses the f32 kernel";
    std::mt19937 rng(9);
    for (const int64_t n : {64, 1024, 1056, 1000}) {
        const uint64_t row_bytes = uint64_t(n) * 2 + 64;  // rows apart by more than their width, as slices are
        std::vector<uint8_t> w(row_bytes * cpu::kBf16Rows);
        std::vector<uint16_t> xb(n);
        for (size_t i = 0; i + 1 < w.size(); i += 2) {
            const uint16_t v = uint16_t(0x3c00 + rng() % 0x0800) | uint16_t(rng() % 2 ? 0x8000 : 0);  // |w| ~ 2^-7..2^9
            std::memcpy(&w[i], &v, 2);
        }
        for (auto& v : xb) v = uint16_t(0x3e00 + rng() % 0x0400) | uint16_t(rng() % 2 ? 0x8000 : 0);
        for (int nr = 1; nr <= cpu::kBf16Rows; ++nr) {
            float out[cpu::kBf16Rows];
            rows(w.data(), row_bytes, nr, xb.data(), n, out);
            for (int r = 0; r < nr; ++r) {
                float want;
                rows(w.data() + r * row_bytes, row_bytes, 1, xb.data(), n, &want);
                EXPECT_EQ(std::memcmp(&out[r], &want, 4), 0) << "n " << n << ", " << nr << " rows, row " << r << ": "
                                                             << out[r] << " vs " << want;
            }
        }
    }
}

// K-quant super-blocks of random bytes (only d and dmin fixed, so they are finite): every bit of the 12
// packed 6-bit scales and mins varies (Q4_K, Q5_K), and of Q6_K's quants and signed scales, which weights
// quantised from smooth data do not guarantee. The kernels unpack those bits their own way (the 512-bit
// Q4_K kernel with byte shuffles, the 512-bit Q6_K one with per-half shifts); the scalar dequantisation is
// the reference.
TEST(CpuQuantDot, KQuantKernelsOnRandomBlockBytes) {
    std::mt19937 rng(7);
    const int64_t n = 256 * 16;
    std::vector<float> x = normal(n, rng);
    for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
        const uint64_t rb = *row_bytes(t, n);
        std::vector<uint8_t> row(rb);
        for (auto& b : row) b = uint8_t(rng());
        const uint64_t block = rb / (n / 256);
        for (uint64_t b = 0; b < rb; b += block) {
            const uint16_t d_half = 0x2c00, dmin_half = 0x2400;  // 1/16 and 1/64
            if (t == DType::Q6_K) {  // every bit of ql, qh and the signed scales varies; d at the end
                std::memcpy(&row[b + 208], &d_half, 2);
                continue;
            }
            std::memcpy(&row[b], &d_half, 2);
            std::memcpy(&row[b + 2], &dmin_half, 2);
        }
        std::vector<float> wd(n);
        dequantize_row(t, row.data(), wd.data(), n);
        for (cpu::ActFormat f : kFormats) {
            const Acts act = quantised_acts(f, x);
            const auto [want, mag] = act.dot(wd);
            for (QuantIsa isa : {QuantIsa::kScalar, QuantIsa::kAvx2, QuantIsa::kAvx512Vnni}) {
                if (isa > cpu::best_quant_isa() || !must_have(t, isa, f)) continue;
                EXPECT_NEAR(cpu::quant_dot_kernel(t, isa, f)(row.data(), act.row(), n), want, 2e-6 * mag)
                    << dtype_info(t).name << " " << cpu::quant_isa_name(isa) << " " << fname(f);
            }
        }
    }
}

TEST(CpuQuantDot, FloatDotKernelsEqualTheDoubleDot) {
    std::mt19937 rng(5);
    for (int64_t n : {1024, 1000, 7}) {  // whole vectors, a tail after the 64-wide body, tail only
        const std::vector<float> x = normal(n, rng);
        for (DType t : {DType::F32, DType::F16, DType::BF16}) {
            const std::vector<uint8_t> row = quantized(t, normal(n, rng, 0.05f), 1, n);
            std::vector<float> wd(n);
            dequantize_row(t, row.data(), wd.data(), n);
            double want = 0, mag = 0;
            for (int64_t i = 0; i < n; ++i) want += double(wd[i]) * x[i], mag += std::fabs(double(wd[i]) * x[i]);
            EXPECT_EQ(cpu::float_dot_kernel(t, QuantIsa::kScalar), nullptr);
            for (QuantIsa isa : {QuantIsa::kAvx2, QuantIsa::kAvx512Vnni}) {
                auto fn = cpu::float_dot_kernel(t, isa);
                if (isa > cpu::best_quant_isa()) {
                    EXPECT_EQ(fn, nullptr);
                    continue;
                }
                ASSERT_NE(fn, nullptr) << dtype_info(t).name;
                // The weights are exact in f32; only the f32 sum's rounding differs (a few ulps of the magnitude).
                EXPECT_NEAR(fn(row.data(), x.data(), n), want, 1e-6 * mag)
                    << dtype_info(t).name << " " << cpu::quant_isa_name(isa) << " n " << n;
            }
        }
    }
}

TEST(CpuQuantDot, FastMatmulAgainstTheOracle) {
    std::mt19937 rng(7);
    const int64_t rows = 192, cols = 1536;
    const int32_t n = 5;
    static_assert(n < cpu::kGemmMinTokensFloat && n < cpu::kGemmMinTokensQuant, "this test is about the per-row kernels");
    const std::vector<float> x = normal(size_t(n) * cols, rng);
    std::vector<DType> types(std::begin(kTypes), std::end(kTypes));
    for (DType t : {DType::F32, DType::F16, DType::BF16}) types.push_back(t);
    for (DType t : types) {
        const bool is_float = !cpu::has_quant_kernel(t);
        // BF16 on a CPU with AVX512_BF16 rounds the activations to bf16 (vdpbf16ps, as the bf16 GEMM).
        const bool bf16_acts = t == DType::BF16 && cpu::bf16_rows_dot_kernel() != nullptr;
        const std::vector<uint8_t> data = quantized(t, normal(rows * cols, rng, 0.05f), rows, cols);
        const Matrix W{t, rows, cols, data.data(), *row_bytes(t, cols)};
        std::vector<float> exact(size_t(n) * rows), fast(size_t(n) * rows);
        cpu::matmul(x.data(), n, W, exact.data());
        cpu::matmul_fast(x.data(), n, W, fast.data());
        double num = 0, den = 0;
        for (size_t i = 0; i < exact.size(); ++i) {
            num += (fast[i] - exact[i]) * double(fast[i] - exact[i]);
            den += double(exact[i]) * exact[i];
        }
        const double err = std::sqrt(num / den);
        std::printf("matmul_fast %-5s vs oracle, %d tokens: normalised error %.2e (%s)\n", dtype_info(t).name, n, err,
                    bf16_acts ? "bf16 activations" : is_float ? "f32 activations, FMA order"
                    : cpu::fast_act_format(t, cpu::best_quant_isa()) == cpu::ActFormat::kSuper256 ? "8-bit activations, a scale per 256"
                                                                                                  : "8-bit activation blocks of 32");
        // 8-bit rounding of normal activations: ~0.3-0.5% per product, partly averaging out. Float weights:
        // the same products in another order (1e-7 measured). bf16 activations: 8 bits of mantissa, ~2^-9
        // relative per product (1.7e-3 measured, as the bf16 GEMM).
        EXPECT_LT(err, bf16_acts ? 4e-3 : is_float ? 1e-6 : 1e-2) << dtype_info(t).name;
        if (!is_float || cpu::best_quant_isa() != QuantIsa::kScalar) {
            EXPECT_GT(err, 0.0) << dtype_info(t).name << ": the fast path did not run";
        }
        // A token's outputs do not depend on the others in the call.
        for (int32_t tok = 0; tok < n; ++tok) {
            std::vector<float> one(rows);
            cpu::matmul_fast(x.data() + int64_t(tok) * cols, 1, W, one.data());
            for (int64_t r = 0; r < rows; ++r)
                ASSERT_EQ(one[r], fast[int64_t(tok) * rows + r]) << dtype_info(t).name << " token " << tok;
        }
    }
}

// The prefill GEMM on a shape with partial tiles everywhere: 190 rows (panels of 16, row groups of 4),
// 37 tokens (token vectors of 16, tiles of 2 vectors). Against the oracle (the error of the activation
// rounding, as in the per-row path) and against the per-row kernels token by token with the GEMM's
// activation format (the same rounded activations: only the order of the block sums differs).
TEST(CpuQuantDot, PrefillGemmAgainstTheOracle) {
    std::vector<DType> types(std::begin(kTypes), std::end(kTypes));
    for (DType t : {DType::F32, DType::F16, DType::BF16}) types.push_back(t);
    std::mt19937 rng(9);
    const int64_t rows = 190, cols = 1536;
    const int32_t n = 37;
    const std::vector<float> x = normal(size_t(n) * cols, rng);
    for (DType t : types) {
        if (!cpu::gemm_supported(t)) {
            std::printf("prefill GEMM %-5s: not available on this CPU (needs AVX-512 VNNI); per-row path used\n",
                        dtype_info(t).name);
            continue;
        }
        const std::vector<uint8_t> data = quantized(t, normal(rows * cols, rng, 0.05f), rows, cols);
        const Matrix W{t, rows, cols, data.data(), *row_bytes(t, cols)};
        std::vector<float> exact(size_t(n) * rows), fast(size_t(n) * rows, std::nanf("")), rowwise(size_t(n) * rows);
        cpu::matmul(x.data(), n, W, exact.data());
        ASSERT_GE(n, cpu::gemm_min_tokens(t));
        cpu::matmul_fast(x.data(), n, W, fast.data());  // the GEMM
        for (int32_t tok = 0; tok < n; ++tok)  // the GEMM's activation format (per 32) for every type
            cpu::matmul_fast_rows(x.data() + int64_t(tok) * cols, 1, W, rowwise.data() + int64_t(tok) * rows,
                                  cpu::FastActs::kBlock32);
        auto nerr = [&](const std::vector<float>& a, const std::vector<float>& ref) {
            double num = 0, den = 0;
            for (size_t i = 0; i < a.size(); ++i) num += (a[i] - ref[i]) * double(a[i] - ref[i]), den += double(ref[i]) * ref[i];
            return std::sqrt(num / den);
        };
        const double vs_oracle = nerr(fast, exact), vs_rowwise = nerr(fast, rowwise);
        std::printf("prefill GEMM %-5s vs oracle: normalised error %.2e; vs the per-row fast kernels %.2e\n",
                    dtype_info(t).name, vs_oracle, vs_rowwise);
        const bool is_float = !cpu::has_quant_kernel(t);
        // bf16: activations rounded to bf16 (8 significant bits) for vdpbf16ps, 1.7e-3 measured; f32/f16:
        // f32 FMA in another order, 7e-7 measured.
        const double bound = t == DType::BF16 ? 5e-3 : is_float ? 5e-6 : 1e-2;
        EXPECT_LT(vs_oracle, bound) << dtype_info(t).name;  // NaN (an output never written) fails too
        // Same quantised activations as the per-row kernels: f32 rounding of a different summation order.
        if (!is_float) {
            EXPECT_LT(vs_rowwise, 1e-5) << dtype_info(t).name;
        }
    }
}

// matmuls_fast (one conversion of the input, one pass over the pool for several matrices) gives each
// matrix what its own matmul_fast call gives, bit for bit: every type in one call (so both activation
// formats, bf16 and f32 inputs and the oracle's fallback meet), at decode, a token tile and the GEMM's
// token counts, and matrices of 1 to 300 rows (chunk boundaries in bytes fall inside every matrix).
TEST(CpuQuantDot, MatmulsOfOneInputEqualSeparateCalls) {
    std::vector<DType> types(std::begin(kTypes), std::end(kTypes));
    for (DType t : {DType::F32, DType::F16, DType::BF16}) types.push_back(t);
    std::mt19937 rng(12);
    const int64_t cols = 512;
    const int64_t rows_of[] = {300, 1, 16, 77, 5, 130, 2, 64, 33};
    std::vector<std::vector<uint8_t>> data;
    std::vector<Matrix> Ws;
    for (size_t i = 0; i < types.size(); ++i) {
        const int64_t rows = rows_of[i % std::size(rows_of)];
        data.push_back(quantized(types[i], normal(rows * cols, rng, 0.05f), rows, cols));
        Ws.push_back(Matrix{types[i], rows, cols, data.back().data(), *row_bytes(types[i], cols)});
    }
    for (int32_t n : {1, 3, 40}) {
        const std::vector<float> x = normal(size_t(n) * cols, rng);
        std::vector<std::vector<float>> fused, separate;
        std::vector<const Matrix*> wp;
        std::vector<float*> yp;
        for (const Matrix& W : Ws) {
            fused.emplace_back(size_t(n) * W.rows, std::nanf(""));
            separate.emplace_back(size_t(n) * W.rows);
            cpu::matmul_fast(x.data(), n, W, separate.back().data());
        }
        for (size_t i = 0; i < Ws.size(); ++i) wp.push_back(&Ws[i]), yp.push_back(fused[i].data());
        cpu::matmuls_fast(x.data(), n, wp, yp);
        for (size_t i = 0; i < Ws.size(); ++i)
            for (size_t k = 0; k < fused[i].size(); ++k)
                ASSERT_EQ(std::bit_cast<uint32_t>(fused[i][k]), std::bit_cast<uint32_t>(separate[i][k]))
                    << dtype_info(Ws[i].type).name << ", " << n << " tokens, element " << k;
    }
}

// Every input width a multiple of 256 so every type applies to every matrix.
ModelConfig model_config(bool moe = false) {
    ModelConfig c = *preset_config(moe ? "tiny-moe" : "tiny");
    c.vocab_size = 512;
    c.hidden = 256;
    c.n_layers = 4;
    c.is_attention = {false, false, false, true};
    c.n_heads = 2, c.n_kv_heads = 1, c.head_dim = 128, c.rotary_dim = 32;
    c.lin_k_heads = 2, c.lin_v_heads = 4, c.lin_k_dim = c.lin_v_dim = 64;
    if (moe) c.n_experts = 4, c.n_experts_used = 2, c.expert_intermediate = 256, c.shared_intermediate = 256;
    else c.intermediate = 512;
    c.eos_ids = {511};
    return c;
}

TEST(CpuQuantDot, QuantisedModelOnTheFastBackend) {
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("dg_quant_dot_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const ModelSource dense = random_model(model_config(), 11), moe = random_model(model_config(true), 11);
    std::vector<int32_t> prompt;
    for (int i = 0; i < 24; ++i) prompt.push_back((i * 53 + 5) % 500);
    for (const char* type : {"q8_0", "q4_0", "q4_1", "q4_k_m", "q5_k", "q6_k", "bf16", "f16", "f32", "moe-q8_0",
                             "moe-q4_k_m"}) {
        const bool is_moe = std::string(type).rfind("moe-", 0) == 0;
        const ModelSource& src = is_moe ? moe : dense;
        GgufExportOptions opt;
        opt.type = is_moe ? std::string(type).substr(4) : std::string(type);
        const std::string path = (dir / (std::string(type) + ".gguf")).string();
        ASSERT_TRUE(export_gguf(src, path, opt).ok()) << type;
        auto exact = Runner::open(path, BackendKind::kCpuExact, RunnerOptions{DType::F32});
        auto fast = Runner::open(path, BackendKind::kCpu, RunnerOptions{DType::F32});
        ASSERT_TRUE(exact.ok() && fast.ok()) << type;
        if (is_moe) {
            // The MoE FFN op on one input: the router runs exactly in both, so the same experts are chosen
            // and the difference is the experts' matmul rounding alone.
            std::mt19937 rng(3);
            const int32_t n = 6;
            const std::vector<float> x = normal(size_t(n) * 256, rng);
            for (const auto& layer : (*exact)->model().weights().layers) {
                std::vector<float> ye(size_t(n) * 256), yf(size_t(n) * 256);
                cpu::moe_ffn(x.data(), n, layer.moe, 2, ye.data(), cpu::matmul);
                cpu::moe_ffn(x.data(), n, layer.moe, 2, yf.data(), cpu::matmul_fast);
                double num = 0, den = 0;
                for (size_t i = 0; i < ye.size(); ++i) num += (yf[i] - ye[i]) * double(yf[i] - ye[i]), den += double(ye[i]) * ye[i];
                std::printf("moe_ffn %s (one layer) fast vs oracle: normalised error %.2e\n", type, std::sqrt(num / den));
                EXPECT_LT(std::sqrt(num / den), 3e-2) << type;  // 1.2e-2 measured: two chained matmuls
                EXPECT_GT(num, 0.0) << type << ": the experts did not take the fast path";
                break;
            }
        }
        ASSERT_EQ((*fast)->model().backend().name(), "cpu");
        const int32_t se = *(*exact)->new_sequence(), sf = *(*fast)->new_sequence();
        // Prefill, then greedy decode driven by the oracle's choice so both see the same tokens.
        auto le = *(*exact)->feed(se, prompt, false);
        auto lf = *(*fast)->feed(sf, prompt, false);
        double worst = 0;
        int compared = 0, agreed = 0;
        for (int step = 0; step < 12; ++step) {
            double num = 0, den = 0, max_abs = 0;
            for (size_t i = 0; i < le.size(); ++i) {
                const double e = double(lf[i]) - le[i];
                num += e * e;
                den += double(le[i]) * le[i];
                max_abs = std::max(max_abs, std::fabs(e));
            }
            worst = std::max(worst, std::sqrt(num / den));
            int top = 0, second = -1;
            for (int i = 1; i < int(le.size()); ++i)
                if (le[i] > le[top]) second = top, top = i;
                else if (second < 0 || le[i] > le[second]) second = i;
            int top_fast = 0;
            for (int i = 1; i < int(lf.size()); ++i)
                if (lf[i] > lf[top_fast]) top_fast = i;
            if (le[top] - le[second] > 2 * max_abs) {  // the error cannot swap them: the choice must agree
                ++compared;
                agreed += top_fast == top;
            }
            const int32_t next = top;
            le = *(*exact)->feed(se, {&next, 1}, false);
            lf = *(*fast)->feed(sf, {&next, 1}, false);
        }
        std::printf("model %-6s fast vs oracle: worst normalised logit error %.2e over 13 positions; greedy "
                    "agreement %d of %d positions with a clear margin\n", type, worst, agreed, compared);
        // Measured 3.2e-2 (q6_k) .. 4.5e-2 (q5_k) on this random 4-layer model: the ~0.5-0.7% per-matmul
        // rounding (above; Q4_K and Q5_K with one activation scale per 256 where the CPU has VNNI, 2.1e-2
        // for q5_k with scales per 32) compounds over the layers. The bound leaves room for other seeds and CPUs.
        // MoE: upstream rounding flips near-tied routing choices of this random router, so whole experts
        // differ (0.14 / 0.52 measured, also with the experts on the exact path): printed, not bounded;
        // the op-level check above bounds the experts' own error.
        // Float weights: f16/f32 differ only in summation order (1e-6 measured); bf16's prefill GEMM rounds
        // the activations to bf16 (3.8e-3 measured).
        const std::string ty = type;
        const double bound = ty == "bf16" ? 2e-2 : ty == "f16" || ty == "f32" ? 1e-5 : 6e-2;
        if (!is_moe) {
            EXPECT_LT(worst, bound) << type;
        }
        EXPECT_EQ(agreed, compared) << type;
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace dg
