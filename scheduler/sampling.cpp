#include "scheduler/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"

namespace dg::sched {

absl::Status validate_sampling(const SamplingParams& p) {
    if (!std::isfinite(p.temperature) || p.temperature < 0)
        return absl::InvalidArgumentError(absl::StrCat("sampling: temperature must be finite and >= 0, got ", p.temperature));
    if (p.top_k < 0) return absl::InvalidArgumentError(absl::StrCat("sampling: top_k must be >= 0, got ", p.top_k));
    if (!(p.top_p > 0 && p.top_p <= 1))
        return absl::InvalidArgumentError(absl::StrCat("sampling: top_p must be in (0, 1], got ", p.top_p));
    if (!(p.min_p >= 0 && p.min_p <= 1))
        return absl::InvalidArgumentError(absl::StrCat("sampling: min_p must be in [0, 1], got ", p.min_p));
    return absl::OkStatus();
}

uint64_t child_seed(uint64_t seed, int32_t index) {
    return index == 0 ? seed : seed ^ (0x9e3779b97f4a7c15ull * uint64_t(index));
}

Sampler::Sampler(const SamplingParams& p) : p_(p), state_(p.seed) {}

double Sampler::uniform() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return double(z >> 11) * 0x1.0p-53;
}

int32_t Sampler::sample(std::span<const float> logits) {
    const int32_t V = int32_t(logits.size());
    // Greedy: the first maximum, as std::max_element picks it (the Runner-based reference does too).
    if (p_.temperature == 0.f) return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());

    std::vector<int32_t> idx(V);
    std::iota(idx.begin(), idx.end(), 0);
    // Descending by logit, ties by id, so the order (and the draw) is deterministic.
    auto by_logit = [&](int32_t a, int32_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; };
    int32_t keep = V;
    if (p_.top_k > 0 && p_.top_k < V) {
        keep = p_.top_k;
        std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(), by_logit);
    } else {
        std::sort(idx.begin(), idx.end(), by_logit);
    }
    std::vector<double> prob(keep);
    const double top = logits[idx[0]];
    double sum = 0;
    for (int32_t i = 0; i < keep; ++i) sum += prob[i] = std::exp((double(logits[idx[i]]) - top) / p_.temperature);
    for (double& q : prob) q /= sum;
    if (p_.top_p < 1.f) {
        double acc = 0;
        int32_t n = 0;
        while (n < keep && acc < p_.top_p) acc += prob[n++];
        keep = std::max(n, 1);
    }
    if (p_.min_p > 0.f) {
        int32_t n = 1;
        while (n < keep && prob[n] >= p_.min_p * prob[0]) ++n;
        keep = n;
    }
    double total = 0;
    for (int32_t i = 0; i < keep; ++i) total += prob[i];
    double r = uniform() * total;
    for (int32_t i = 0; i < keep; ++i) {
        r -= prob[i];
        if (r < 0) return idx[i];
    }
    return idx[keep - 1];
}

}  // namespace dg::sched
