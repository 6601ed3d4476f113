// A single-process driver for a Model: a few sequences, each with a state slot and a private KV block
// list from a free list. It is what the CLI (`logits`, `generate`) and the engine tests use. The worker's
// scheduler (scheduler/) replaces it with shared, refcounted, hash-chained blocks and checkpoints.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/model.h"

namespace dg {

struct RunnerOptions {
    DType kv_type = DType::F16;
    int32_t block_tokens = 16;
    int32_t max_seqs = 4;
    int64_t max_tokens_per_seq = 4096;  // KV blocks are reserved for this many tokens per sequence
    int32_t prefill_chunk = 512;        // long inputs run as steps of at most this many tokens
};

class Runner {
public:
    static absl::StatusOr<std::unique_ptr<Runner>> open(const std::string& model_path, BackendKind backend,
                                                         const RunnerOptions& opt = {});
    static absl::StatusOr<std::unique_ptr<Runner>> create(std::unique_ptr<ModelWeights> weights,
                                                          BackendKind backend, const RunnerOptions& opt = {});

    Model& model() { return *model_; }
    const ModelConfig& config() const { return model_->config(); }

    // A fresh sequence (empty KV, zero state). ResourceExhausted when all are in use.
    absl::StatusOr<int32_t> new_sequence();
    void release(int32_t seq);
    int64_t position(int32_t seq) const { return seqs_[seq].pos; }

    // Runs `tokens` after what the sequence has seen. Returns logits [rows, vocab]: every token's row
    // when all_logits, else the last token's row. `chunk` overrides the prefill chunk size (tests).
    absl::StatusOr<std::vector<float>> feed(int32_t seq, std::span<const int32_t> tokens, bool all_logits,
                                            int32_t chunk = 0);
    // Runs one token-range per sequence in ONE batched step; returns each sequence's last-row logits,
    // or all rows when all_logits, in order.
    absl::StatusOr<std::vector<float>> feed_batch(const std::vector<std::pair<int32_t, std::vector<int32_t>>>& work,
                                                  bool all_logits);

    // Runs `tokens` as ONE step of sequence `seq` and samples `rows` of its last-row logits on the backend
    // (Model::forward_sample): the tokens come back, not the logits.
    absl::StatusOr<std::vector<SampledToken>> feed_sample(int32_t seq, std::span<const int32_t> tokens,
                                                          std::span<const SampleRow> rows);

private:
    // One batched step: logits to the host when `logits`, else `rows` sampled into `drawn`.
    absl::Status step(const std::vector<std::pair<int32_t, std::vector<int32_t>>>& work, bool all_logits,
                      std::vector<float>* logits, std::span<const SampleRow> rows, std::vector<SampledToken>* drawn);
    struct Seq {
        bool used = false;
        int64_t pos = 0;
        std::vector<int32_t> blocks;
    };
    absl::Status check_seq(int32_t seq) const;

    RunnerOptions opt_;
    std::unique_ptr<Model> model_;
    std::vector<Seq> seqs_;
};

}  // namespace dg
