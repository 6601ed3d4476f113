// DType table, half conversions and block (de)quantisers, checked against the NumPy implementation in
// make_fixtures.py (an independent reading of the ggml formulas) and by round trips.
#include <cmath>
#include <random>

#include "engine/formats/dtype.h"
#include "engine/formats/quant_blocks.h"
#include "test_util.h"

namespace dg {
namespace {

using test::fixture;
using test::read_array;
using test::read_bytes;

constexpr DType kQuantTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};
constexpr DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                               DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

std::vector<float> gaussian(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

TEST(DTypeTable, IdsSizesAndNames) {
    struct Want { uint32_t id; const char* name; int64_t elems, bytes; };
    const Want want[] = {{0, "f32", 1, 4},      {1, "f16", 1, 2},      {2, "q4_0", 32, 18},
                         {3, "q4_1", 32, 20},   {8, "q8_0", 32, 34},   {12, "q4_k", 256, 144},
                         {13, "q5_k", 256, 176}, {14, "q6_k", 256, 210}, {30, "bf16", 1, 2}};
    for (const Want& w : want) {
        const DTypeInfo* i = dtype_info(w.id);
        ASSERT_NE(i, nullptr) << w.name;
        EXPECT_EQ(static_cast<uint32_t>(i->type), w.id);
        EXPECT_STREQ(i->name, w.name);
        EXPECT_EQ(i->block_elems, w.elems);
        EXPECT_EQ(i->block_bytes, w.bytes);
        EXPECT_EQ(&dtype_info(i->type), i);
        auto parsed = dtype_from_name(w.name);
        ASSERT_TRUE(parsed.ok());
        EXPECT_EQ(*parsed, i->type);
    }
    for (uint32_t id : {4u, 5u, 6u, 7u, 9u, 10u, 11u, 15u, 16u, 28u, 29u, 31u, 39u, 1000u}) EXPECT_EQ(dtype_info(id), nullptr) << id;
    EXPECT_EQ(*dtype_from_name("Q4_K"), DType::Q4_K);
    EXPECT_EQ(*dtype_from_name("BF16"), DType::BF16);
    EXPECT_FALSE(dtype_from_name("q5_0").ok());
    EXPECT_FALSE(dtype_from_name("").ok());
}

TEST(DTypeTable, RowBytes) {
    EXPECT_EQ(*row_bytes(DType::F32, 7), 28u);
    EXPECT_EQ(*row_bytes(DType::BF16, 0), 0u);
    EXPECT_EQ(*row_bytes(DType::Q8_0, 64), 68u);
    EXPECT_EQ(*row_bytes(DType::Q4_K, 512), 288u);
    EXPECT_EQ(*row_bytes(DType::Q6_K, 256), 210u);
    EXPECT_FALSE(row_bytes(DType::Q4_0, 33).ok());
    EXPECT_FALSE(row_bytes(DType::Q6_K, 128).ok());
    EXPECT_FALSE(row_bytes(DType::F32, -1).ok());
    EXPECT_FALSE(row_bytes(DType::F32, INT64_MAX).ok());  // 4 * INT64_MAX overflows uint64
    EXPECT_TRUE(row_bytes(DType::Q8_0, INT64_MAX / 32 * 32).ok());
}

TEST(HalfConversion, F16ToF32MatchesNumpy) {
    const auto in = read_array<uint16_t>(fixture("f16_in.u16"));
    const auto want = read_array<float>(fixture("f16_out.f32"));
    ASSERT_EQ(in.size(), want.size());
    ASSERT_GT(in.size(), 8000u);
    for (size_t i = 0; i < in.size(); ++i) ASSERT_EQ(bits(f16_to_f32(in[i])), bits(want[i])) << std::hex << in[i];
}

TEST(HalfConversion, F32ToF16MatchesNumpy) {
    const auto in = read_array<float>(fixture("f32_to_f16_in.f32"));
    const auto want = read_array<uint16_t>(fixture("f32_to_f16_out.u16"));
    ASSERT_EQ(in.size(), want.size());
    ASSERT_GT(in.size(), 10000u);
    for (size_t i = 0; i < in.size(); ++i) {
        ASSERT_EQ(f32_to_f16(in[i]), want[i]) << std::hexfloat << in[i] << " (index " << i << ")";
    }
}

TEST(HalfConversion, F16RoundTripsEveryPattern) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = f16_to_f32(static_cast<uint16_t>(h));
        if (std::isnan(f)) {
            EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << h;
        } else {
            ASSERT_EQ(f32_to_f16(f), h) << h;
        }
    }
    EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))));
}

// The inlinable conversions used in hot loops agree with the exported ones on every pattern.
TEST(HalfConversion, FastPathsMatchForEveryPattern) {
    for (uint32_t h = 0; h < 65536; ++h) {
        const auto x = static_cast<uint16_t>(h);
        ASSERT_EQ(bits(qb::f16_to_f32_fast(x)), bits(f16_to_f32(x))) << std::hex << h;
        ASSERT_EQ(bits(qb::bf16_to_f32_fast(x)), bits(bf16_to_f32(x))) << std::hex << h;
    }
}

TEST(HalfConversion, F32ToBf16MatchesNearestSearch) {
    const auto in = read_array<float>(fixture("f32_to_bf16_in.f32"));
    const auto want = read_array<uint16_t>(fixture("f32_to_bf16_out.u16"));
    ASSERT_EQ(in.size(), want.size());
    ASSERT_GT(in.size(), 7000u);
    for (size_t i = 0; i < in.size(); ++i) {
        ASSERT_EQ(f32_to_bf16(in[i]), want[i]) << std::hexfloat << in[i] << " (index " << i << ")";
        if (!std::isinf(bf16_to_f32(want[i]))) {
            EXPECT_EQ(f32_to_bf16(bf16_to_f32(want[i])), want[i]);
        }
    }
}

TEST(HalfConversion, Bf16KeepsNaN) {
    // A NaN whose payload sits only in the low 16 bits must not truncate to infinity.
    uint32_t u = 0x7f800001u;
    float f;
    std::memcpy(&f, &u, 4);
    EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
    EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(-std::nanf("")))));
    EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
}

class QuantFixture : public ::testing::TestWithParam<DType> {};

// Random blocks decoded by NumPy from the doc's formulas: any layout slip (field order, nibble or bit
// position, scale packing) shows up as a large difference.
TEST_P(QuantFixture, DequantizeMatchesIndependentDecoder) {
    const DTypeInfo& info = dtype_info(GetParam());
    const auto blocks = read_bytes(fixture(std::string("quant_") + info.name + ".bin"));
    const auto want = read_array<float>(fixture(std::string("quant_") + info.name + ".f32"));
    ASSERT_EQ(blocks.size() % info.block_bytes, 0u);
    const int64_t n = static_cast<int64_t>(blocks.size() / info.block_bytes) * info.block_elems;
    ASSERT_EQ(static_cast<size_t>(n), want.size());
    std::vector<float> got(n);
    dequantize_row(info.type, blocks.data(), got.data(), n);
    for (int64_t i = 0; i < n; ++i) {
        ASSERT_NEAR(got[i], want[i], 1e-6f * std::fabs(want[i]) + 1e-30f) << info.name << " element " << i;
    }
    // dot_row with a one-hot x reads the same value as dequantize_row.
    std::vector<float> x(n, 0.0f);
    for (int64_t i : {int64_t{0}, n / 3, n - 1}) {
        x[i] = 1.0f;
        EXPECT_NEAR(dot_row(info.type, blocks.data(), x.data(), n), want[i], 1e-6f * std::fabs(want[i]) + 1e-30f);
        x[i] = 0.0f;
    }
}

INSTANTIATE_TEST_SUITE_P(AllQuants, QuantFixture, ::testing::ValuesIn(kQuantTypes),
                         [](const auto& p) { return std::string(dtype_info(p.param).name); });

// Q8_0, Q4_0 and Q4_1 follow ggml's *_ref quantisers bit for bit (the NumPy copy in make_fixtures.py).
TEST(QuantizeRef, MatchesGgmlReferenceBytes) {
    const auto x = read_array<float>(fixture("quant_input.f32"));
    ASSERT_EQ(x.size(), 1024u);
    for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
        const DTypeInfo& info = dtype_info(t);
        const auto want = read_bytes(fixture(std::string("quant_ref_") + info.name + ".bin"));
        std::vector<uint8_t> got(*row_bytes(t, 1024));
        quantize_row(t, x.data(), got.data(), 1024);
        ASSERT_EQ(got.size(), want.size()) << info.name;
        for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_EQ(got[i], want[i]) << info.name << " byte " << i << " (block " << i / info.block_bytes << ")";
        }
    }
}

double rel_rms_error(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        den += double(a[i]) * a[i];
    }
    return std::sqrt(num / den);
}

struct Bound { DType type; double max_rel_rms; };

class QuantRoundTrip : public ::testing::TestWithParam<Bound> {};

TEST_P(QuantRoundTrip, ErrorIsSmall) {
    const DType t = GetParam().type;
    const int64_t n = 256 * 16;
    // Rows of different scales, plus one with outliers and one with a non-zero mean. Measured on this
    // data: q8_0 0.54%, q4_0 8.9%, q4_1 8.0%, q4_k 7.4%, q5_k 3.7%, q6_k 1.8% (2.1% at scale 1e-3, where the
    // f16 super-block scale turns subnormal).
    for (int variant = 0; variant < 4; ++variant) {
        std::vector<float> x = gaussian(n, 100 + variant, variant == 1 ? 1e-3f : 1.0f);
        if (variant == 2) for (int64_t i = 0; i < n; i += 97) x[i] *= 20.0f;
        if (variant == 3) for (float& v : x) v += 0.7f;
        std::vector<uint8_t> q(*row_bytes(t, n));
        quantize_row(t, x.data(), q.data(), n);
        std::vector<float> y(n);
        dequantize_row(t, q.data(), y.data(), n);
        const double err = rel_rms_error(x, y);
        // Outliers widen the block scales, so every value in their blocks is coarser.
        const double bound = GetParam().max_rel_rms * (variant == 2 ? 1.6 : 1.0);
        EXPECT_LT(err, bound) << dtype_info(t).name << " variant " << variant;
    }
    // All zeros stay zeros.
    std::vector<float> zero(n, 0.0f), y(n, 1.0f);
    std::vector<uint8_t> q(*row_bytes(t, n));
    quantize_row(t, zero.data(), q.data(), n);
    dequantize_row(t, q.data(), y.data(), n);
    for (float v : y) ASSERT_EQ(v, 0.0f) << dtype_info(t).name;
}

INSTANTIATE_TEST_SUITE_P(AllTypes, QuantRoundTrip,
                         ::testing::Values(Bound{DType::F32, 1e-9}, Bound{DType::F16, 1e-3}, Bound{DType::BF16, 5e-3},
                                           Bound{DType::Q8_0, 0.01}, Bound{DType::Q4_0, 0.10},
                                           Bound{DType::Q4_1, 0.10}, Bound{DType::Q4_K, 0.08},
                                           Bound{DType::Q5_K, 0.04}, Bound{DType::Q6_K, 0.025}),
                         [](const auto& p) { return std::string(dtype_info(p.param.type).name); });

TEST(DotRow, MatchesDequantizeThenDot) {
    for (DType t : kAllTypes) {
        const DTypeInfo& info = dtype_info(t);
        for (int64_t n : {int64_t{256}, int64_t{768}, int64_t{4096}}) {
            const auto w = gaussian(n, 7);
            const auto x = gaussian(n, 8);
            std::vector<uint8_t> q(*row_bytes(t, n));
            quantize_row(t, w.data(), q.data(), n);
            std::vector<float> deq(n);
            dequantize_row(t, q.data(), deq.data(), n);
            double want = 0, mag = 0;
            for (int64_t i = 0; i < n; ++i) {
                want += double(deq[i]) * x[i];
                mag += std::fabs(double(deq[i]) * x[i]);
            }
            const float got = dot_row(t, q.data(), x.data(), n);
            EXPECT_NEAR(got, want, 1e-5 * mag) << info.name << " n=" << n;
        }
    }
}

TEST(DotRow, PlainFloatTailsAndMisalignedRows) {
    for (DType t : {DType::F32, DType::F16, DType::BF16}) {
        for (int64_t n : {int64_t{1}, int64_t{15}, int64_t{17}, int64_t{255}, int64_t{257}, int64_t{1000}}) {
            const auto w = gaussian(n, 11);
            const auto x = gaussian(n, 12);
            const uint64_t bytes = *row_bytes(t, n);
            // Offset by 1 byte: rows from a hostile safetensors header can start anywhere.
            std::vector<uint8_t> storage(bytes + 1);
            for (int off : {0, 1}) {
                quantize_row(t, w.data(), storage.data() + off, n);
                std::vector<float> deq(n);
                dequantize_row(t, storage.data() + off, deq.data(), n);
                double want = 0, mag = 0;
                for (int64_t i = 0; i < n; ++i) {
                    want += double(deq[i]) * x[i];
                    mag += std::fabs(double(deq[i]) * x[i]);
                }
                EXPECT_NEAR(dot_row(t, storage.data() + off, x.data(), n), want, 1e-5 * mag + 1e-30)
                    << dtype_info(t).name << " n=" << n << " off=" << off;
            }
        }
    }
}

}  // namespace
}  // namespace dg
