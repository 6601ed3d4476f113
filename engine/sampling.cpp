#include "engine/sampling.h"

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/det_exp.h"
#include "engine/philox.h"

namespace dg {

absl::Status validate_sampling(const SamplingParams& p) {
    if (!std::isfinite(p.temperature) || p.temperature < 0)
        return absl::InvalidArgumentError(absl::StrCat("sampling: temperature must be finite and >= 0, got ", p.temperature));
    if (p.top_k < 0) return absl::InvalidArgumentError(absl::StrCat("sampling: top_k must be >= 0, got ", p.top_k));
    if (!(p.top_p > 0 && p.top_p <= 1))
        return absl::InvalidArgumentError(absl::StrCat("sampling: top_p must be in (0, 1], got ", p.top_p));
    if (!(p.min_p >= 0 && p.min_p <= 1))
        return absl::InvalidArgumentError(absl::StrCat("sampling: min_p must be in [0, 1], got ", p.min_p));
    if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0)
        return absl::InvalidArgumentError(
            absl::StrCat("sampling: repetition_penalty must be > 0 (1 = off), got ", p.repetition_penalty));
    if (!(p.presence_penalty >= -2 && p.presence_penalty <= 2))
        return absl::InvalidArgumentError(
            absl::StrCat("sampling: presence_penalty must be in [-2, 2], got ", p.presence_penalty));
    if (!(p.frequency_penalty >= -2 && p.frequency_penalty <= 2))
        return absl::InvalidArgumentError(
            absl::StrCat("sampling: frequency_penalty must be in [-2, 2], got ", p.frequency_penalty));
    return absl::OkStatus();
}

bool has_penalties(const SamplingParams& p) {
    return p.repetition_penalty != 1.f || p.presence_penalty != 0.f || p.frequency_penalty != 0.f;
}

void apply_penalties(const SamplingParams& p, std::span<float> logits, std::span<const int32_t> tokens,
                     int32_t prompt_len) {
    const int32_t V = int32_t(logits.size());
    prompt_len = std::clamp<int32_t>(prompt_len, 0, int32_t(tokens.size()));
    if (p.repetition_penalty != 1.f) {
        // Each distinct token once, whether it appears once or many times.
        std::vector<int32_t> seen(tokens.begin(), tokens.end());
        std::sort(seen.begin(), seen.end());
        seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
        for (int32_t t : seen) {
            if (t < 0 || t >= V) continue;
            float& l = logits[t];
            l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
        }
    }
    if (p.presence_penalty != 0.f || p.frequency_penalty != 0.f) {
        std::vector<int32_t> gen(tokens.begin() + prompt_len, tokens.end());
        std::sort(gen.begin(), gen.end());
        for (size_t i = 0; i < gen.size();) {
            size_t j = i;
            while (j < gen.size() && gen[j] == gen[i]) ++j;
            if (gen[i] >= 0 && gen[i] < V)
                logits[gen[i]] -= p.frequency_penalty * float(j - i) + p.presence_penalty;
            i = j;
        }
    }
}

TokenLogprobs compute_logprobs(std::span<const float> logits, int32_t token, int32_t top_n) {
    const int32_t V = int32_t(logits.size());
    TokenLogprobs out;
    if (V == 0) return out;
    const double mx = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (float l : logits) sum += std::exp(double(l) - mx);
    const double lse = mx + std::log(sum);
    if (token >= 0 && token < V) out.logprob = float(double(logits[token]) - lse);
    top_n = std::min(top_n, V);
    if (top_n > 0) {
        std::vector<int32_t> idx(V);
        std::iota(idx.begin(), idx.end(), 0);
        std::partial_sort(idx.begin(), idx.begin() + top_n, idx.end(),
                          [&](int32_t a, int32_t b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; });
        for (int32_t i = 0; i < top_n; ++i) out.top.emplace_back(idx[i], float(double(logits[idx[i]]) - lse));
    }
    return out;
}

uint64_t child_seed(uint64_t seed, int32_t index) {
    return index == 0 ? seed : seed ^ (0x9e3779b97f4a7c15ull * uint64_t(index));
}

Sampler::Sampler(const SamplingParams& p) : p_(p) {}

int32_t Sampler::sample(std::span<const float> logits, int64_t position, std::span<const int32_t> tokens,
                        int32_t prompt_len) const {
    if (!has_penalties(p_)) return sample_adjusted(logits, position);
    std::vector<float> adjusted(logits.begin(), logits.end());
    apply_penalties(p_, adjusted, tokens, prompt_len);
    return sample_adjusted(adjusted, position);
}

int32_t Sampler::sample_adjusted(std::span<const float> logits, int64_t position) const {
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
    for (int32_t i = 0; i < keep; ++i) sum += prob[i] = det_exp((double(logits[idx[i]]) - top) / p_.temperature);
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
    double r = philox_uniform(p_.seed, uint64_t(position)) * total;
    for (int32_t i = 0; i < keep; ++i) {
        r -= prob[i];
        if (r < 0) return idx[i];
    }
    return idx[keep - 1];
}

absl::Status validate_sample_rows(std::span<const SampleRow> rows, int32_t n_logit_rows, int64_t vocab) {
    if (vocab <= 0 || vocab > INT32_MAX) return absl::InvalidArgumentError(absl::StrCat("sample: bad vocabulary size ", vocab));
    for (size_t i = 0; i < rows.size(); ++i) {
        const SampleRow& r = rows[i];
        if (r.logit_row < 0 || r.logit_row >= n_logit_rows)
            return absl::InvalidArgumentError(
                absl::StrCat("sample row ", i, ": logit row ", r.logit_row, " outside [0, ", n_logit_rows, ")"));
        if (r.top_logprobs < 0 || r.top_logprobs > kMaxTopLogprobs)
            return absl::InvalidArgumentError(
                absl::StrCat("sample row ", i, ": top_logprobs ", r.top_logprobs, " outside [0, ", kMaxTopLogprobs, "]"));
        if (r.position < 0) return absl::InvalidArgumentError(absl::StrCat("sample row ", i, ": negative position"));
        if (absl::Status st = validate_sampling(r.params); !st.ok())
            return absl::InvalidArgumentError(absl::StrCat("sample row ", i, ": ", st.message()));
    }
    return absl::OkStatus();
}

void sample_rows_host(const float* logits, int64_t vocab, std::span<const SampleRow> rows,
                      std::vector<SampledToken>* out) {
    out->assign(rows.size(), SampledToken{});
    for (size_t i = 0; i < rows.size(); ++i) {
        const SampleRow& r = rows[i];
        const std::span<const float> row(logits + int64_t(r.logit_row) * vocab, size_t(vocab));
        SampledToken& t = (*out)[i];
        t.token = Sampler(r.params).sample(row, r.position, r.tokens, r.prompt_len);
        if (r.logprob || r.top_logprobs > 0) t.lp = compute_logprobs(row, t.token, r.top_logprobs);
    }
}

}  // namespace dg
