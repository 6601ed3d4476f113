// Order statistics for the benchmark's figures: percentiles with linear interpolation between closest
// ranks (numpy's default, so a figure here can be checked with numpy.percentile), and the summary of one
// sample (n, mean, min, p50, p90, p99, max) that every latency column of results.json carries.
#pragma once

#include <vector>

namespace dg::bench {

// p in [0, 100]. Sorts a copy; NaN for an empty sample.
double percentile(std::vector<double> v, double p);

struct Summary {
    int n = 0;
    double mean = 0, min = 0, p50 = 0, p90 = 0, p99 = 0, max = 0;  // NaN when n == 0
};

Summary summarize(const std::vector<double>& v);

}  // namespace dg::bench
