// Public request -> prompt ids and worker parameters, with every check that gives INVALID_ARGUMENT.
// Messages say what is wrong, the limit, and which flag sets it, so a person can act on them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "services/front/protos.h"
#include "deltagate/v1/inference.pb.h"
#include "deltagate/worker/v1/worker.pb.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace dg::front {

// The front's limits (flags of `deltagate front`).
struct FrontLimits {
    int32_t max_prompt_tokens = 0;         // 0 = the model's context
    int32_t max_tokens = 4096;             // per continuation; also the default when a request sets none
    int32_t max_fanout = 64;               // n, and BatchGenerate continuations
    int64_t max_message_bytes = 4 << 20;   // gRPC receive limit
    int32_t max_inflight = 1024;           // running streams on this front; over it RESOURCE_EXHAUSTED
    int32_t max_stop_strings = 16;
    int32_t max_stop_bytes = 256;
    int32_t max_top_logprobs = 20;
};

// What the front knows about the served model (from the workers' GetInfo).
struct ModelFacts {
    std::string name;
    int32_t vocab_size = 0;
    int32_t max_context = 0;
    std::vector<int32_t> eos_ids;
};

struct BuiltPrompt {
    std::vector<int32_t> ids;
    bool chat = false;
    bool thinking = false;                 // the prompt ends inside a <think> block
    std::vector<tok::ojson> tools;
};

// `suffix_user_text`: BatchGenerate's per-continuation text; for a chat prompt it becomes a final user turn,
// otherwise it is encoded and appended. `tok` may be null (token-id prompts only).
absl::StatusOr<BuiltPrompt> build_prompt(const v1::Prompt& p, const tok::Tokenizer* tok, const ModelFacts& model,
                                         const FrontLimits& limits, const std::string* suffix_user_text = nullptr,
                                         const std::vector<int32_t>* suffix_ids = nullptr);

absl::Status validate_sampling(const v1::SamplingParams& s);
absl::Status validate_stop(const v1::StopCriteria& s, const ModelFacts& model, const FrontLimits& limits);
absl::Status validate_logprobs(const v1::LogprobOptions& l, const FrontLimits& limits);
// The effective max_tokens: the request's, or the most that fits (front limit, context).
absl::StatusOr<int32_t> resolve_max_tokens(const v1::StopCriteria& s, size_t prompt_len, const ModelFacts& model,
                                           const FrontLimits& limits);
absl::Status validate_model_name(const std::string& requested, const ModelFacts& model);

// Seed: the request's, else `random_seed`.
void to_worker_sampling(const v1::SamplingParams& s, uint64_t random_seed, worker::v1::SamplingParams* out);

}  // namespace dg::front
