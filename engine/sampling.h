// Token sampling on the host (the oracle; the CUDA backend's device sampler, engine/cuda/sampling.cu,
// reproduces its token choices bit for bit): penalties first (repetition, frequency, presence), then greedy
// (temperature 0) or seeded random sampling with temperature, top-k, top-p and min-p, applied in that
// order (as llama.cpp and vLLM do), with integer weights (engine/sample_mass.h has the definition; the
// host computes it without sorting the vocabulary). Deterministic and stateless: the random draw for a
// token is philox_bits53(seed, position) (engine/philox.h), a function of the request's seed and the token's
// position in its continuation only, so the same logits, parameters, seed and position give the same token
// on every machine, after a preemption, and after a migration to another worker. Logprobs are computed
// apart, from the raw logits (compute_logprobs).
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace dg {

struct SamplingParams {
    float temperature = 0.f;  // 0 = greedy
    int32_t top_k = 0;        // 0 = off
    float top_p = 1.f;        // 1 = off; (0, 1]
    float min_p = 0.f;        // 0 = off; [0, 1]: drop tokens below min_p × the top probability
    uint64_t seed = 0;
    // Penalties, as vLLM defines them: repetition over the prompt and the generated tokens (HF/CTRL:
    // a positive logit is divided by it, a negative one multiplied); frequency (× occurrences) and
    // presence (once) subtracted for tokens the continuation generated (OpenAI).
    float repetition_penalty = 1.f;  // 1 = off; > 0
    float presence_penalty = 0.f;    // 0 = off; [-2, 2]
    float frequency_penalty = 0.f;   // 0 = off; [-2, 2]
};

// Largest top-n logprobs a request may ask for (OpenAI's limit).
inline constexpr int32_t kMaxTopLogprobs = 20;

absl::Status validate_sampling(const SamplingParams& p);
bool has_penalties(const SamplingParams& p);

// Applies p's penalties to `logits` in place. `tokens` = prompt then generated; the first `prompt_len`
// are the prompt.
void apply_penalties(const SamplingParams& p, std::span<float> logits, std::span<const int32_t> tokens,
                     int32_t prompt_len);

struct TokenLogprobs {
    float logprob = 0.f;                            // of the chosen token
    std::vector<std::pair<int32_t, float>> top;     // best first, ties by lower id
};
// Log-softmax of the raw logits: the chosen token's value and the `top_n` best.
TokenLogprobs compute_logprobs(std::span<const float> logits, int32_t token, int32_t top_n);

// The seed of fork child `index` (n > 1): child 0 keeps the request's seed.
uint64_t child_seed(uint64_t seed, int32_t index);

class Sampler {
public:
    explicit Sampler(const SamplingParams& p = {});
    // `position`: the token's index among its continuation's generated tokens (0 = the first), which
    // selects the random draw. `tokens`/`prompt_len` (prompt then generated) feed the penalties; unused
    // without them.
    int32_t sample(std::span<const float> logits, int64_t position, std::span<const int32_t> tokens = {},
                   int32_t prompt_len = 0) const;
    const SamplingParams& params() const { return p_; }

private:
    int32_t sample_adjusted(std::span<const float> logits, int64_t position) const;
    SamplingParams p_;
};

// --- sampling a step's logits on the backend (Backend::sample) ----------------------------------------

// One token to draw from row `logit_row` of the step's logits. Several rows may read the same logit row
// (the children of a fork each draw their first token from the parent's prompt logits).
struct SampleRow {
    int32_t logit_row = 0;
    SamplingParams params;
    int64_t position = 0;              // as Sampler::sample
    std::span<const int32_t> tokens;   // prompt then generated, for the penalties (host memory)
    int32_t prompt_len = 0;
    bool logprob = false;              // the chosen token's logprob (of the raw logits)
    int32_t top_logprobs = 0;          // [0, kMaxTopLogprobs]
};
struct SampledToken {
    int32_t token = -1;
    TokenLogprobs lp;  // filled when the row asked for a logprob or top logprobs
};

// Checks rows against a step of `n_logit_rows` rows of `vocab` logits: InvalidArgument naming the row.
absl::Status validate_sample_rows(std::span<const SampleRow> rows, int32_t n_logit_rows, int64_t vocab);

// The host implementation of Backend::sample (the CPU backend's, and the oracle of the CUDA one): for
// each row, Sampler::sample on its logit row, then compute_logprobs when asked. logits: [rows][vocab].
void sample_rows_host(const float* logits, int64_t vocab, std::span<const SampleRow> rows,
                      std::vector<SampledToken>* out);

}  // namespace dg
