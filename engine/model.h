// A loaded model bound to one backend: the Qwen3.5 forward pass, written once over the backend's
// coarse ops (engine/backend.h). Owns the weights, the backend (with its KV blocks and state slots)
// and a workspace that grows to the largest step seen.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/batch.h"
#include "engine/weights.h"

namespace dg {

class Model {
public:
    static absl::StatusOr<std::unique_ptr<Model>> create(std::unique_ptr<ModelWeights> weights,
                                                         std::unique_ptr<Backend> backend,
                                                         const CacheLayout& caches);
    ~Model();

    const ModelConfig& config() const { return weights_->config; }
    const ModelWeights& weights() const { return *weights_; }
    Backend& backend() { return *backend_; }

    // Checks the batch against the model and the caches (token ids, ranges, slots, block coverage,
    // context length): InvalidArgument naming the sequence and the field.
    absl::Status validate(const StepBatch& b) const;

    // Runs one step. logits: [b.n_logit_rows(), vocab] on the host, rows in StepBatch order.
    absl::Status forward(const StepBatch& b, std::vector<float>* logits);
    // Runs one step and samples `rows` of its logits on the backend (Backend::sample), where the logits
    // are: on CUDA only the tokens (and requested logprobs) come back to the host, not [rows, vocab].
    absl::Status forward_sample(const StepBatch& b, std::span<const SampleRow> rows, std::vector<SampledToken>* out);

private:
    Model() = default;
    // The step up to the logits, left in ws_.logits (backend memory); sample_rows: what forward_sample
    // will sample (Backend::begin_step).
    absl::Status run(const StepBatch& b, std::span<const SampleRow> sample_rows);
    absl::Status reserve(int32_t n_tokens, int32_t n_logit_rows);
    void mixer(const StepBatch& b, int32_t layer, int32_t n);
    void mlp(int32_t layer, int32_t n);

    std::unique_ptr<ModelWeights> weights_;
    std::unique_ptr<Backend> backend_;
    std::vector<int32_t> gdn_index_, attn_index_;  // per layer: index among its kind, or -1

    struct Workspace {
        int32_t tokens = 0, logit_rows = 0;
        float* x = nullptr;      // [n, H] residual stream
        float* h = nullptr;      // [n, H] normed input of a sublayer
        float* y = nullptr;      // [n, H] sublayer output
        float* big = nullptr;    // [n, max(conv_dim, 2*Hq*hd)] qkv / q+gate projections
        float* z = nullptr;      // [n, max(Hv*dv, Hkv*hd)] GDN gate / attention K
        float* v = nullptr;      // [n, Hkv*hd] attention V
        float* ba = nullptr;     // [n, 2*Hv] GDN beta / alpha projections
        float* o = nullptr;      // [n, max(Hv*dv, Hq*hd)] mixer output before its out projection
        float* ff1 = nullptr;    // [n, I] MLP gate
        float* ff2 = nullptr;    // [n, I] MLP up
        float* last = nullptr;   // [logit_rows, H]
        float* logits = nullptr; // [logit_rows, V]
    } ws_;
    std::vector<float*> allocations_;
};

}  // namespace dg
