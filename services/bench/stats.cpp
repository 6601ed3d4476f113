#include "services/bench/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace dg::bench {

static double percentile_sorted(const std::vector<double>& s, double p) {
    if (s.empty()) return std::numeric_limits<double>::quiet_NaN();
    p = std::clamp(p, 0.0, 100.0);
    const double pos = p / 100.0 * double(s.size() - 1);
    const size_t lo = size_t(std::floor(pos));
    const size_t hi = std::min(lo + 1, s.size() - 1);
    const double frac = pos - double(lo);
    return s[lo] + (s[hi] - s[lo]) * frac;
}

double percentile(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return percentile_sorted(v, p);
}

Summary summarize(const std::vector<double>& v) {
    Summary s;
    s.n = int(v.size());
    if (v.empty()) {
        const double nan = std::numeric_limits<double>::quiet_NaN();
        s.mean = s.min = s.p50 = s.p90 = s.p99 = s.max = nan;
        return s;
    }
    std::vector<double> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    s.mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) / double(sorted.size());
    s.min = sorted.front();
    s.max = sorted.back();
    s.p50 = percentile_sorted(sorted, 50);
    s.p90 = percentile_sorted(sorted, 90);
    s.p99 = percentile_sorted(sorted, 99);
    return s;
}

}  // namespace dg::bench
