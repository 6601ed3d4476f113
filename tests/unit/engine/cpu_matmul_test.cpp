// engine/cpu/matmul: the decode kernels give bit-identical results to the references they replace.
// * F16/BF16 rows: dot_row_cpu (an AVX2 clone where the CPU has it) equals dot_row, bit for bit, at
//   every length around the 16-lane and 256-element block edges, with subnormal, huge and signed-zero
//   values; and matmul at n = 1 uses it.
// * F32: a token's row of matmul's output does not depend on how many tokens share the call (tiles of
//   1-4 tokens), so a batched step equals single steps bit for bit.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/cpu/ops.h"
#include "engine/formats/dtype.h"

namespace dg {
namespace {

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

std::vector<float> random_values(int64_t n, std::mt19937& rng) {
    std::normal_distribution<float> nd;
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        v[size_t(i)] = nd(rng);
        switch (i % 37) {  // some edge values among the normal ones
            case 3: v[size_t(i)] = 3e-6f; break;    // an f16 subnormal
            case 11: v[size_t(i)] = -0.f; break;
            case 19: v[size_t(i)] = 6.0e4f; break;  // near the f16 maximum
            case 29: v[size_t(i)] *= 1e-3f; break;
            default: break;
        }
    }
    return v;
}

TEST(CpuMatmul, HalfRowDotMatchesDotRowBitForBit) {
    std::mt19937 rng(7);
    for (DType t : {DType::BF16, DType::F16}) {
        for (int64_t n : {1, 2, 15, 16, 17, 31, 255, 256, 257, 271, 512, 1000, 1024, 3584}) {
            for (int rep = 0; rep < 3; ++rep) {
                const std::vector<float> w = random_values(n, rng), x = random_values(n, rng);
                std::vector<uint8_t> row(static_cast<size_t>(n) * 2 + 2);
                quantize_row(t, w.data(), row.data() + (rep == 2 ? 2 : 0), n);  // rep 2: a row at an offset
                const uint8_t* r = row.data() + (rep == 2 ? 2 : 0);
                const float want = dot_row(t, r, x.data(), n), got = cpu::dot_row_cpu(t, r, x.data(), n);
                ASSERT_EQ(bits(got), bits(want)) << dtype_info(t).name << " n=" << n << ": " << got << " vs " << want;
            }
        }
    }
}

TEST(CpuMatmul, DecodeMatmulUsesDotRowArithmetic) {
    std::mt19937 rng(11);
    for (DType t : {DType::BF16, DType::F16}) {
        const int64_t rows = 40, cols = 1040;
        std::vector<uint8_t> data(static_cast<size_t>(rows * cols * 2));
        for (int64_t r = 0; r < rows; ++r) quantize_row(t, random_values(cols, rng).data(), data.data() + r * cols * 2, cols);
        const Matrix W{t, rows, cols, data.data(), uint64_t(cols * 2)};
        const std::vector<float> x = random_values(cols, rng);
        std::vector<float> y(static_cast<size_t>(rows));
        cpu::matmul(x.data(), 1, W, y.data());
        for (int64_t r = 0; r < rows; ++r)
            ASSERT_EQ(bits(y[size_t(r)]), bits(dot_row(t, W.row(r), x.data(), cols))) << "row " << r;
    }
}

TEST(CpuMatmul, F32TokenResultIndependentOfBatch) {
    std::mt19937 rng(5);
    const int64_t rows = 70, cols = 300;  // cols: 37 lanes of 8 and a tail of 4
    const std::vector<float> w = random_values(rows * cols, rng);
    const Matrix W{DType::F32, rows, cols, reinterpret_cast<const uint8_t*>(w.data()), uint64_t(cols * 4)};
    const int32_t n = 7;  // tiles of 4 and 3
    const std::vector<float> x = random_values(n * cols, rng);
    std::vector<float> all(static_cast<size_t>(n * rows)), one(static_cast<size_t>(rows));
    cpu::matmul(x.data(), n, W, all.data());
    for (int32_t t = 0; t < n; ++t) {
        cpu::matmul(x.data() + t * cols, 1, W, one.data());
        for (int64_t r = 0; r < rows; ++r)
            ASSERT_EQ(bits(all[size_t(t * rows + r)]), bits(one[size_t(r)])) << "token " << t << " row " << r;
    }
    // Two tokens (a tile of 2) against the same single rows.
    std::vector<float> two(static_cast<size_t>(2 * rows));
    cpu::matmul(x.data() + 5 * cols, 2, W, two.data());
    for (int32_t t = 0; t < 2; ++t) {
        cpu::matmul(x.data() + (5 + t) * cols, 1, W, one.data());
        for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(bits(two[size_t(t * rows + r)]), bits(one[size_t(r)]));
    }
}

}  // namespace
}  // namespace dg
