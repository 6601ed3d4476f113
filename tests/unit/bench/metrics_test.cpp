// A cell's figures from hand-made request results: counts, errors by class, throughput over the wall time,
// cached fractions, and goodput against the SLOs.
#include <gtest/gtest.h>

#include "services/bench/metrics.h"

namespace dg::bench {
namespace {

RequestResult ok_result(Clock::time_point t0, double start_ms, double ttft, std::vector<double> itl, int prompt,
                        int cached) {
    RequestResult r;
    r.ok = true;
    r.start = t0 + std::chrono::microseconds(int64_t(start_ms * 1000));
    r.ttft_ms = ttft;
    double e2e = ttft;
    for (double g : itl) e2e += g;
    r.e2e_ms = e2e;
    r.itl_ms = std::move(itl);
    r.prompt_tokens = r.usage_prompt_tokens = prompt;
    r.cached_tokens = cached;
    r.output_tokens = int(r.itl_ms.size()) + 1;
    return r;
}

TEST(BenchMetrics, CountsThroughputCacheAndGoodput) {
    const Clock::time_point t0 = Clock::now();
    std::vector<RequestResult> rs;
    rs.push_back(ok_result(t0, 0, 100, {10, 10, 10}, 100, 0));     // 4 tokens, ends at 130 ms
    rs.push_back(ok_result(t0, 0, 300, {60, 60, 60}, 100, 50));    // misses both SLOs, ends at 480 ms
    rs.push_back(ok_result(t0, 500, 100, {10, 10, 10}, 100, 100)); // ends at 630 ms
    RequestResult bad;
    bad.start = t0 + std::chrono::milliseconds(10);
    bad.e2e_ms = 5;
    bad.prompt_tokens = 100;
    bad.error_class = "UNAVAILABLE";
    bad.error_message = "worker lost";
    rs.push_back(bad);
    const CellMetrics m = compute_metrics(rs, Slo{200, 50});
    EXPECT_EQ(m.requests, 4);
    EXPECT_EQ(m.ok, 3);
    EXPECT_EQ(m.failed, 1);
    EXPECT_EQ(m.errors.at("UNAVAILABLE"), 1);
    EXPECT_EQ(m.first_error, "UNAVAILABLE: worker lost");
    EXPECT_NEAR(m.wall_s, 0.630, 1e-3);
    EXPECT_EQ(m.output_tokens, 12);
    EXPECT_NEAR(m.output_tok_per_s, 12 / 0.630, 0.1);
    EXPECT_NEAR(m.cached_fraction, 150.0 / 300.0, 1e-12);
    EXPECT_LT(m.cached_device_fraction, 0);  // tiers not reported
    EXPECT_EQ(m.good, 2);
    EXPECT_NEAR(m.good_fraction, 0.5, 1e-12);
    EXPECT_EQ(m.ttft_ms.n, 3);
    EXPECT_DOUBLE_EQ(m.ttft_ms.p50, 100);
    EXPECT_EQ(m.itl_ms.n, 9);
    EXPECT_DOUBLE_EQ(m.tpot_ms.max, 60);
    // prefill rate per request: uncached prompt / TTFT (the fully cached one has none to count)
    EXPECT_EQ(m.prefill_tok_per_s.n, 2);
    EXPECT_DOUBLE_EQ(m.prefill_tok_per_s.max, 1000.0);
}

TEST(BenchMetrics, NoSloMeansEveryOkRequestIsGood) {
    const Clock::time_point t0 = Clock::now();
    std::vector<RequestResult> rs = {ok_result(t0, 0, 5000, {900}, 10, -1)};
    const CellMetrics m = compute_metrics(rs, Slo{});
    EXPECT_EQ(m.good, 1);
    EXPECT_LT(m.cached_fraction, 0);  // the server did not report cached tokens
}

}  // namespace
}  // namespace dg::bench
