// A model as a set of named f32 tensor sources in HF layout (names `model.layers.{i}...`, grouped value
// heads, zero-centred norms, A_log), produced row by row so multi-GB models stream: the random
// generator behind `make-model`, or an HF directory for `convert`. The exporters turn a source into an
// HF directory (hf_export) or a llama.cpp-layout GGUF with chosen quant types (gguf_export).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"

namespace dg {

struct TensorSource {
    std::vector<int64_t> shape;  // PyTorch order; viewed as [rows = prod(shape[:-1]), cols = shape.back()]
    // Fills rows [row0, row0 + n) as f32 into out[n * cols]. Thread-safe, deterministic.
    std::function<void(int64_t row0, int64_t n, float* out)> read_rows;
    // Optional: rows with equal canonical ids hold equal values (a pooled random model), so an exporter
    // may convert one and copy it. Empty = every row distinct.
    std::function<int64_t(int64_t row)> canonical_row;
    int64_t cols() const { return shape.back(); }
    int64_t rows() const {
        int64_t r = 1;
        for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
        return r;
    }
};

struct ModelSource {
    ModelConfig config;
    std::map<std::string, TensorSource> tensors;  // HF text-layout names
    std::shared_ptr<const void> keep_alive;        // backing files, if any
};

// Random weights for `config`, deterministic in `seed`, scaled so activations stay O(1) and logits have
// a spread of a few units (same scheme as the reference generator: N(0, (gain/sqrt(fan_in))^2)).
// `row_pool` > 0 makes each matrix reuse that many distinct random rows (row r = pool row hash(r) %
// row_pool): statistically the same model for benchmarks, and export runs at memcpy speed.
ModelSource random_model(const ModelConfig& config, uint64_t seed, int64_t row_pool = 0);

// The tensors of an HF directory (safetensors; F32/F16/BF16), names normalised to the text layout.
absl::StatusOr<ModelSource> hf_model_source(const std::string& dir);

// Named shapes: "tiny" (dense, Hk != Hv, real head sizes), "tiny-moe", "tiny-text" (tiny with 151,936
// tied embedding rows: room for a real Qwen3 tokenizer, so text tests run on a tiny model), "0.8b", "27b",
// "35b-a3b".
absl::StatusOr<ModelConfig> preset_config(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace dg
