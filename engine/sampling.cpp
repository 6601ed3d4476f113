#include "engine/sampling.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <cstdint>
#include <cmath>
#include <immintrin.h>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/sample_mass.h"
#include "engine/sample_weights.h"

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

namespace {

// The first maximum, as std::max_element picks it (-0 and +0 alike), in two passes the compiler can
// vectorise: a blocked max, then the first index holding it. std::max_element's dependent compare chain
// took about a millisecond per token at Qwen3.5's 248,320 tokens, 7% of a 0.8B CPU decode step.
// The same two passes with AVX-512, four registers of running maxima (one maxps chain would wait on its
// latency): _mm512_max_ps(x, m) is exactly the loop's `x > m ? x : m` (m where x is NaN or equal). The
// scalar passes below took ~1% of a 0.8B q4_k_m decode step, serially on the calling thread.
__attribute__((target("avx512f"))) int32_t first_max_index_avx512(const float* l, int64_t V) {
    __m512 lane[4];
    for (auto& m : lane) m = _mm512_set1_ps(l[0]);
    int64_t i = 0;
    for (; i + 64 <= V; i += 64)
        for (int r = 0; r < 4; ++r) lane[r] = _mm512_max_ps(_mm512_loadu_ps(l + i + 16 * r), lane[r]);
    alignas(64) float lanes[64];
    for (int r = 0; r < 4; ++r) _mm512_store_ps(lanes + 16 * r, lane[r]);
    float m = l[0];
    for (float x : lanes) m = x > m ? x : m;
    for (; i < V; ++i) m = l[i] > m ? l[i] : m;
    const __m512 mv = _mm512_set1_ps(m);
    int64_t k = 0;
    for (; k + 16 <= V; k += 16)
        if (const __mmask16 eq = _mm512_cmp_ps_mask(_mm512_loadu_ps(l + k), mv, _CMP_EQ_OQ))
            return int32_t(k + __builtin_ctz(eq));
    for (; k < V; ++k)
        if (l[k] == m) return int32_t(k);
    return 0;  // NaN everywhere (or at l[0]): no order to follow
}

int32_t first_max_index(std::span<const float> l) {
    static const bool simd = __builtin_cpu_supports("avx512f");
    if (simd && !l.empty()) return first_max_index_avx512(l.data(), int64_t(l.size()));
    constexpr int kLanes = 16;
    const int64_t V = int64_t(l.size());
    float lane[kLanes];
    for (float& m : lane) m = l[0];
    int64_t i = 0;
    for (; i + kLanes <= V; i += kLanes)
        for (int j = 0; j < kLanes; ++j) lane[j] = l[i + j] > lane[j] ? l[i + j] : lane[j];
    float m = l[0];
    for (float x : lane) m = x > m ? x : m;
    for (; i < V; ++i) m = l[i] > m ? l[i] : m;
    for (int64_t k = 0; k < V; ++k)
        if (l[k] == m) return int32_t(k);
    return 0;  // NaN everywhere: no order to follow
}

// The k largest sample_order_keys (logit descending, id ascending), in a min-heap, in one pass: after the
// first few thousand tokens nearly every token loses to the heap's smallest with one comparison of logits.
void best_keys(std::span<const float> logits, int32_t k, std::vector<uint64_t>& best) {
    best.clear();
    const auto heap_order = std::greater<uint64_t>();
    const float* l = logits.data();
    const int32_t V = int32_t(logits.size()), first = std::min(k, V);
    for (int32_t i = 0; i < first; ++i) best.push_back(sample_order_key(l[i], i));
    std::make_heap(best.begin(), best.end(), heap_order);
    float weakest = l[sample_key_id(best.front())];  // the heap's smallest logit: below it nothing enters
    for (int32_t i = first; i < V; ++i) {
        if (l[i] < weakest) continue;
        const uint64_t key = sample_order_key(l[i], i);
        if (key <= best.front()) continue;
        std::pop_heap(best.begin(), best.end(), heap_order);
        best.back() = key;
        std::push_heap(best.begin(), best.end(), heap_order);
        weakest = l[sample_key_id(best.front())];
    }
}

struct Candidate {
    uint64_t key;     // sample_order_key
    uint64_t weight;  // sample_weight, > 0
};

// The candidate in sampler order (key descending) at which the running sum of weights first exceeds
// `mass` (mass < the sum of all). A radix descent over 16-bit digits of the key: each pass sums the
// weights per digit and keeps the one bucket the crossing lies in, so no sort. c[0, n) is reordered.
const Candidate& crossing(Candidate* c, size_t n, uint64_t mass) {
    thread_local std::vector<uint64_t> bucket(1 << 16);
    uint64_t before = 0;  // the weight of every candidate ahead of the current bucket
    for (int shift = 48; n > 1 && shift >= 0; shift -= 16) {
        std::fill(bucket.begin(), bucket.end(), 0);
        for (size_t i = 0; i < n; ++i) bucket[(c[i].key >> shift) & 0xFFFF] += c[i].weight;
        uint32_t d = 0xFFFF;
        for (; d > 0 && before + bucket[d] <= mass; --d) before += bucket[d];
        n = size_t(std::partition(c, c + n, [&](const Candidate& x) { return ((x.key >> shift) & 0xFFFF) == d; }) - c);
    }
    return c[0];
}

// Room for a row's candidates, kept per thread (a vector's resize would zero it every row).
Candidate* candidate_room(size_t n) {
    thread_local std::unique_ptr<Candidate[]> room;
    thread_local size_t cap = 0;
    if (cap < n) room.reset(new Candidate[cap = n]);
    return room.get();
}

}  // namespace

TokenLogprobs compute_logprobs(std::span<const float> logits, int32_t token, int32_t top_n) {
    const int32_t V = int32_t(logits.size());
    TokenLogprobs out;
    if (V == 0) return out;
    const float mx = logits[first_max_index(logits)];
    const double lse = double(mx) + std::log(sum_exp_shifted(logits.data(), V, mx));
    if (token >= 0 && token < V) out.logprob = float(double(logits[token]) - lse);
    top_n = std::min(top_n, V);
    if (top_n > 0) {
        thread_local std::vector<uint64_t> best;
        best_keys(logits, top_n, best);
        std::sort(best.begin(), best.end(), std::greater<uint64_t>());  // best first, ties by lower id
        for (const uint64_t key : best) out.top.emplace_back(sample_key_id(key), float(double(logits[sample_key_id(key)]) - lse));
    }
    return out;
}

int32_t Sampler::sample_adjusted(std::span<const float> logits, int64_t position) const {
    const int32_t V = int32_t(logits.size());
    if (p_.temperature == 0.f) return first_max_index(logits);

    // The sampler's definition is engine/sample_mass.h's; here it runs in one to three passes over the
    // vocabulary, sorting nothing.
    Candidate* c = candidate_room(size_t(V));
    size_t nc = 0;
    uint64_t total = 0;
    int32_t top_id = 0;
    float top = 0.f;
    if (p_.top_k > 0 && p_.top_k < V) {
        // The k best keys in a min-heap: after the first few thousand tokens nearly every token loses to
        // the heap's smallest with one comparison of logits. They are the candidates (and the largest
        // is the top), so this is the only pass over the vocabulary.
        thread_local std::vector<uint64_t> best;
        best_keys(logits, p_.top_k, best);
        top_id = sample_key_id(*std::max_element(best.begin(), best.end()));
        top = logits[top_id];
        for (const uint64_t key : best) {
            const uint64_t w = sample_weight(logits[sample_key_id(key)], top, p_.temperature);
            if (w == 0) continue;
            c[nc++] = {key, w};
            total += w;
        }
    } else {
        top_id = first_max_index(logits);
        top = logits[top_id];
        // Weights a block at a time (sample_weights: SIMD). Below top - 31 T a weight is 0 (sample_weight's
        // cut is at -30), so a block entirely below that costs one comparison per token.
        const double skip_below = double(top) - 31.0 * double(p_.temperature);
        constexpr int32_t kBlock = 256;
        uint64_t w[kBlock];
        for (int32_t b = 0; b < V; b += kBlock) {
            const int32_t n = std::min(kBlock, V - b);
            bool any = false;
            for (int32_t i = 0; i < n; ++i) any |= double(logits[b + i]) >= skip_below;
            if (!any) continue;
            sample_weights(logits.data() + b, n, top, p_.temperature, w);
            for (int32_t i = 0; i < n; ++i) {
                if (w[i] == 0) continue;
                c[nc++] = {sample_order_key(logits[b + i], b + i), w[i]};
                total += w[i];
            }
        }
    }
    if (total == 0) return top_id;  // an infinite top logit: nothing has a finite share (sample_mass.h)
    const uint64_t top_key = sample_order_key(top, top_id);
    if (p_.top_p < 1.f) {
        const uint64_t last = crossing(c, nc, top_p_target(total, p_.top_p) - 1).key;  // the nucleus' last token
        nc = size_t(std::remove_if(c, c + nc, [&](const Candidate& x) { return x.key < last; }) - c);
    }
    if (p_.min_p > 0.f) {
        const uint64_t floor_w = min_p_floor(p_.min_p);
        nc = size_t(std::remove_if(c, c + nc, [&](const Candidate& x) { return x.weight < floor_w && x.key != top_key; }) - c);
    }
    uint64_t kept = 0;
    for (size_t i = 0; i < nc; ++i) kept += c[i].weight;
    return sample_key_id(crossing(c, nc, sample_draw_point(kept, p_.seed, uint64_t(position))).key);
}

absl::Status validate_sample_rows(std::span<const SampleRow> rows, int32_t n_logit_rows, int64_t vocab) {
    if (vocab <= 0 || vocab > kSampleMaxVocab)
        return absl::InvalidArgumentError(absl::StrCat("sample: vocabulary size ", vocab, " outside [1, ", kSampleMaxVocab, "]"));
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
