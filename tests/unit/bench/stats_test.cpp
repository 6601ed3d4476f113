// Percentiles and summaries against values computed by hand with numpy's default rule (linear
// interpolation between closest ranks: numpy.percentile([...], p)).
#include <gtest/gtest.h>

#include <cmath>

#include "services/bench/stats.h"

namespace dg::bench {
namespace {

TEST(BenchStats, PercentileMatchesNumpyLinear) {
    // numpy.percentile([1, 2, 3, 4], [0, 25, 50, 90, 99, 100]) = [1, 1.75, 2.5, 3.7, 3.97, 4]
    const std::vector<double> v = {4, 1, 3, 2};
    EXPECT_DOUBLE_EQ(percentile(v, 0), 1);
    EXPECT_DOUBLE_EQ(percentile(v, 25), 1.75);
    EXPECT_DOUBLE_EQ(percentile(v, 50), 2.5);
    EXPECT_NEAR(percentile(v, 90), 3.7, 1e-12);
    EXPECT_NEAR(percentile(v, 99), 3.97, 1e-12);
    EXPECT_DOUBLE_EQ(percentile(v, 100), 4);
    // numpy.percentile(range(1, 101), 99) = 99.01; p90 = 90.1
    std::vector<double> h;
    for (int i = 1; i <= 100; ++i) h.push_back(i);
    EXPECT_NEAR(percentile(h, 99), 99.01, 1e-9);
    EXPECT_NEAR(percentile(h, 90), 90.1, 1e-9);
}

TEST(BenchStats, SingleAndEmptySamples) {
    EXPECT_DOUBLE_EQ(percentile({7}, 99), 7);
    EXPECT_TRUE(std::isnan(percentile({}, 50)));
    const Summary e = summarize({});
    EXPECT_EQ(e.n, 0);
    EXPECT_TRUE(std::isnan(e.p50) && std::isnan(e.mean) && std::isnan(e.max));
}

TEST(BenchStats, SummaryIsOrdered) {
    std::vector<double> v;
    uint64_t x = 12345;
    for (int i = 0; i < 1000; ++i) {  // a skewed sample: latencies with a long tail
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const double u = double(x >> 11) * 0x1.0p-53;
        v.push_back(10 + 1000 * u * u * u);
    }
    const Summary s = summarize(v);
    EXPECT_EQ(s.n, 1000);
    EXPECT_LE(s.min, s.p50);
    EXPECT_LE(s.p50, s.p90);
    EXPECT_LE(s.p90, s.p99);
    EXPECT_LE(s.p99, s.max);
    EXPECT_LT(s.p50, s.mean);  // right-skewed
    EXPECT_DOUBLE_EQ(s.p90, percentile(v, 90));
}

}  // namespace
}  // namespace dg::bench
