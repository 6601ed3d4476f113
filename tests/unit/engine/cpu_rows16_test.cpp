// engine/cpu/rows16: Q4_K, Q6_K, Q8_0 and BF16 rows packed in groups of 16 for the decode kernels. For each type:
// * packing is a permutation: every row comes back byte for byte (random block bytes, every scale bit);
// * the scalar reference and the VNNI kernels against a double-precision dot of the formats library's
//   dequantised row with the dequantised activations (the product, without the kernels' integer tricks);
//   the BF16 kernel against the double-precision dot of the bf16 row and the bf16-rounded activations;
// * matmul_fast on a packed matrix: decode and the small-batch path against the oracle (the activation
//   rounding's error, bounded as for the other Q4_K paths), batched == single bit for bit, and the
//   prefill GEMM bit for bit what it gives on the plain matrix (it reads the rows put back);
// * the oracle matmul and the embedding lookup read a packed matrix's rows as they were.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "engine/backend.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/quant_dot.h"
#include "engine/cpu/rows16.h"
#include "engine/formats/dtype.h"

namespace dg {
namespace {

std::vector<float> normal(size_t n, std::mt19937& rng, float scale = 1.f) {
    std::normal_distribution<float> nd(0.f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

const DType kQuantPacked[] = {DType::Q4_K, DType::Q6_K, DType::Q8_0};
const DType kPacked[] = {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::BF16};

// Rows of random bytes (every quant, scale and min bit varies) with finite f16 scales: Q4_K d = 1/16 and
// dmin = 1/64, Q6_K and Q8_0 d = 1/16 (Q6_K's int8 sub-block scales random). BF16: every byte random (any
// bit pattern, NaN included, packs and comes back).
std::vector<uint8_t> random_rows(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
    const uint64_t rb = *row_bytes(t, cols);
    std::vector<uint8_t> out(rb * rows);
    for (auto& b : out) b = uint8_t(rng());
    const uint16_t d_half = 0x2c00, dmin_half = 0x2400;
    if (t == DType::BF16) return out;
    const uint64_t block = t == DType::Q4_K ? 144 : t == DType::Q6_K ? 210 : 34;
    const uint64_t d_at = t == DType::Q6_K ? 208 : 0;
    for (uint64_t b = 0; b < out.size(); b += block) {
        std::memcpy(&out[b + d_at], &d_half, 2);
        if (t == DType::Q4_K) std::memcpy(&out[b + 2], &dmin_half, 2);
    }
    return out;
}

// Quantised weights as the model files hold them (normal values).
std::vector<uint8_t> quantised_rows(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
    const std::vector<float> w = normal(size_t(rows * cols), rng, 0.05f);
    const uint64_t rb = *row_bytes(t, cols);
    std::vector<uint8_t> out(rb * rows);
    for (int64_t r = 0; r < rows; ++r) quantize_row(t, w.data() + r * cols, out.data() + r * rb, cols);
    return out;
}

struct Acts {
    std::vector<int8_t> q;
    std::vector<float> d;
    std::vector<int32_t> s, s16;
    cpu::Q8Row row() const { return {q.data(), d.data(), s.data(), s16.data()}; }
};
Acts block32_acts(const std::vector<float>& x) {
    const int64_t n = int64_t(x.size());
    Acts a{std::vector<int8_t>(n), std::vector<float>(n / 32), std::vector<int32_t>(n / 32), std::vector<int32_t>(n / 16)};
    cpu::quantize_act(cpu::ActFormat::kBlock32, x.data(), 1, n, a.q.data(), a.d.data(), a.s.data());
    cpu::act_sums16(a.q.data(), 1, n, a.s16.data());
    return a;
}

Matrix packed_copy(DType t, const std::vector<uint8_t>& plain, int64_t rows, int64_t cols, std::vector<uint8_t>& storage) {
    storage = plain;
    Matrix m{t, rows, cols, storage.data(), *row_bytes(t, cols)};
    cpu::pack_rows16(m, storage.data());
    return m;
}

TEST(CpuRows16, PackingPutsEveryRowBack) {
    std::mt19937 rng(3);
    const int64_t rows = 48, cols = 768;
    for (DType t : kPacked) {
        const std::vector<uint8_t> plain = random_rows(t, rows, cols, rng);
        std::vector<uint8_t> storage;
        const Matrix m = packed_copy(t, plain, rows, cols, storage);
        ASSERT_EQ(m.packing, Packing::kRows16);
        EXPECT_NE(storage, plain) << dtype_info(t).name << ": packing left the bytes as they were";
        std::vector<uint8_t> scratch(m.row_bytes);
        for (int64_t r = 0; r < rows; ++r) {
            const uint8_t* row = cpu::plain_row(m, r, scratch.data());
            ASSERT_EQ(std::memcmp(row, plain.data() + r * m.row_bytes, m.row_bytes), 0) << dtype_info(t).name << " row " << r;
        }
    }
}

TEST(CpuRows16, DotsEqualTheDequantisedProduct) {
    std::mt19937 rng(5);
    const int64_t rows = 32, cols = 1024;
    for (DType t : kQuantPacked) {
        const std::vector<uint8_t> plain = random_rows(t, rows, cols, rng);
        std::vector<uint8_t> storage;
        const Matrix m = packed_copy(t, plain, rows, cols, storage);
        const Acts act = block32_acts(normal(cols, rng));
        const auto kernel = cpu::rows16_dot_kernel(t);
        for (int64_t g = 0; g < rows / 16; ++g) {
            float def[16], fast[16];
            const uint8_t* group = m.data + g * 16 * m.row_bytes;
            cpu::rows16_dot_scalar(t, group, cols, act.row(), def);
            if (kernel) kernel(group, cols, act.row(), fast);
            for (int r = 0; r < 16; ++r) {
                std::vector<float> w(cols);
                dequantize_row(t, plain.data() + (16 * g + r) * m.row_bytes, w.data(), cols);
                double want = 0, mag = 0;
                for (int64_t i = 0; i < cols; ++i) {
                    const double p = double(w[i]) * act.q[i] * act.d[i / 32];
                    want += p;
                    mag += std::fabs(p);
                }
                EXPECT_NEAR(def[r], want, 2e-6 * mag) << dtype_info(t).name << " scalar, row " << 16 * g + r;
                if (kernel) {
                    EXPECT_NEAR(fast[r], want, 2e-6 * mag) << dtype_info(t).name << " VNNI, row " << 16 * g + r;
                }
            }
        }
    }
}

TEST(CpuRows16, Bf16DotEqualsTheProductOfTheRoundedValues) {
    const auto kernel = cpu::rows16_bf16_dot_kernel();
    if (!kernel) GTEST_SKIP() << "no AVX512_BF16: bf16 matrices are not packed";
    std::mt19937 rng(7);
    const int64_t rows = 32, cols = 1056;  // 33 blocks of 32
    const std::vector<uint8_t> plain = quantised_rows(DType::BF16, rows, cols, rng);
    std::vector<uint8_t> storage;
    const Matrix m = packed_copy(DType::BF16, plain, rows, cols, storage);
    const std::vector<float> x = normal(cols, rng);
    std::vector<uint16_t> xb(cols);
    cpu::to_bf16(x.data(), cols, xb.data());
    std::vector<float> xr(cols), w(cols);
    dequantize_row(DType::BF16, xb.data(), xr.data(), cols);
    for (int64_t g = 0; g < rows / 16; ++g) {
        float fast[16];
        kernel(m.data + g * 16 * m.row_bytes, cols, xb.data(), fast);
        for (int r = 0; r < 16; ++r) {
            dequantize_row(DType::BF16, plain.data() + (16 * g + r) * m.row_bytes, w.data(), cols);
            double want = 0, mag = 0;
            for (int64_t i = 0; i < cols; ++i) {
                want += double(w[i]) * xr[i];
                mag += std::fabs(double(w[i]) * xr[i]);
            }
            EXPECT_NEAR(fast[r], want, 2e-6 * mag) << "row " << 16 * g + r;
        }
    }
}

TEST(CpuRows16, MatmulOnAPackedMatrix) {
    std::mt19937 rng(9);
    const int64_t rows = 96, cols = 512;
    for (DType t : kPacked) {
        const char* name = dtype_info(t).name;
        const std::vector<uint8_t> plain_bytes = quantised_rows(t, rows, cols, rng);
        const Matrix plain{t, rows, cols, plain_bytes.data(), *row_bytes(t, cols)};
        if (!cpu::can_pack_rows16(plain)) {
            std::printf("%s: no kernel on this CPU (AVX-512 VNNI, AVX512_BF16): not packed, not tested\n", name);
            continue;
        }
        std::vector<uint8_t> storage;
        const Matrix packed = packed_copy(t, plain_bytes, rows, cols, storage);

        const int32_t n = 5;  // the per-row path (below the GEMM's token count)
        const std::vector<float> x = normal(size_t(n) * cols, rng);
        std::vector<float> exact(size_t(n) * rows), fast(size_t(n) * rows), unpacked(size_t(n) * rows);
        cpu::matmul(x.data(), n, plain, exact.data());
        cpu::matmul_fast(x.data(), n, packed, fast.data());
        cpu::matmul_fast(x.data(), n, plain, unpacked.data());
        double num = 0, den = 0;
        for (size_t i = 0; i < exact.size(); ++i) {
            num += (fast[i] - exact[i]) * double(fast[i] - exact[i]);
            den += double(exact[i]) * exact[i];
        }
        const double err = std::sqrt(num / den);
        std::printf("matmul_fast %s packed by 16 rows vs oracle, %d tokens: normalised error %.2e\n", name, n, err);
        EXPECT_GT(err, 0.0) << name << ": the fast path did not run";
        EXPECT_LT(err, 1e-2) << name;
        EXPECT_NE(fast, unpacked) << name << ": the packed kernel did not run";  // another summation order
        for (int32_t tok = 0; tok < n; ++tok) {
            std::vector<float> one(rows);
            cpu::matmul_fast(x.data() + int64_t(tok) * cols, 1, packed, one.data());
            for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(one[r], fast[int64_t(tok) * rows + r]) << name << " token " << tok;
        }

        // The oracle reads the packed matrix as the plain one, bit for bit.
        std::vector<float> exact_packed(exact.size());
        cpu::matmul(x.data(), n, packed, exact_packed.data());
        EXPECT_EQ(exact_packed, exact) << name;

        // Prefill through the GEMM: the rows put back, so the same result as on the plain matrix.
        const int32_t np = cpu::gemm_min_tokens(t) + 3;
        if (cpu::gemm_supported(t)) {
            const std::vector<float> xp = normal(size_t(np) * cols, rng);
            std::vector<float> from_plain(size_t(np) * rows), from_packed(size_t(np) * rows);
            cpu::matmul_fast(xp.data(), np, plain, from_plain.data());
            cpu::matmul_fast(xp.data(), np, packed, from_packed.data());
            EXPECT_EQ(from_packed, from_plain) << name;
        }
    }
}

TEST(CpuRows16, EmbeddingLookupFromAPackedTable) {
    std::mt19937 rng(11);
    const int64_t rows = 32, cols = 256;
    auto backend = make_backend(BackendKind::kCpu);
    ASSERT_TRUE(backend.ok()) << backend.status();
    for (DType t : kPacked) {
        const std::vector<uint8_t> plain_bytes = quantised_rows(t, rows, cols, rng);
        const Matrix plain{t, rows, cols, plain_bytes.data(), *row_bytes(t, cols)};
        std::vector<uint8_t> storage;
        const Matrix packed = packed_copy(t, plain_bytes, rows, cols, storage);
        const int32_t tokens[] = {0, 17, 31, 5};
        std::vector<float> want(4 * cols), got(4 * cols);
        (*backend)->embed(tokens, 4, plain, want.data());
        (*backend)->embed(tokens, 4, packed, got.data());
        EXPECT_EQ(got, want) << dtype_info(t).name;
    }
}

}  // namespace
}  // namespace dg
