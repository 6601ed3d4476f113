// The one model configuration type, read from an HF config.json (qwen3_5, qwen3_5_text, qwen3_5_moe,
// qwen3_5_moe_text; flat or nested under text_config) or from GGUF metadata (qwen35, qwen35moe).
// Facts: docs/qwen35-model.md §1, §6.2.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace dg {

class GgufFile;

struct ModelConfig {
    std::string arch;            // "qwen35" or "qwen35moe"
    int64_t vocab_size = 0;      // embedding rows
    int64_t hidden = 0;          // H
    int64_t n_layers = 0;
    std::vector<bool> is_attention;  // [n_layers]: full (gated) attention, else Gated DeltaNet
    float rms_eps = 1e-6f;
    int64_t max_context = 262144;

    // full attention
    int64_t n_heads = 0;         // Hq
    int64_t n_kv_heads = 0;      // Hkv
    int64_t head_dim = 0;        // hd
    int64_t rotary_dim = 0;      // rotated dims per head (64 for the real models)
    float rope_theta = 1e7f;

    // Gated DeltaNet
    int64_t lin_k_heads = 0;     // Hk
    int64_t lin_v_heads = 0;     // Hv
    int64_t lin_k_dim = 0;       // dk
    int64_t lin_v_dim = 0;       // dv
    int64_t conv_kernel = 4;     // K

    // MLP
    int64_t intermediate = 0;    // dense SwiGLU width (0 for MoE)
    int64_t n_experts = 0;       // 0 = dense
    int64_t n_experts_used = 0;  // top-k
    int64_t expert_intermediate = 0;
    int64_t shared_intermediate = 0;

    bool tied_embeddings = false;
    std::vector<int32_t> eos_ids;    // from the file when present

    bool is_moe() const { return n_experts > 0; }
    int64_t conv_dim() const { return 2 * lin_k_heads * lin_k_dim + lin_v_heads * lin_v_dim; }
    int64_t n_attention_layers() const;
    int64_t n_gdn_layers() const;
    // Bytes of one sequence's recurrent state (all GDN layers: conv + S, fp32).
    int64_t state_bytes_per_seq() const;

    // Every field consistent (divisibility, ranges); errors name `source` and the field.
    absl::Status validate(const std::string& source) const;
};

absl::StatusOr<ModelConfig> config_from_hf_json(const nlohmann::json& j, const std::string& source);
absl::StatusOr<ModelConfig> config_from_hf_file(const std::string& config_json_path);
absl::StatusOr<ModelConfig> config_from_gguf(const GgufFile& f);
// The config as HF config.json text-model fields (used by make-model to write HF directories).
nlohmann::json config_to_hf_json(const ModelConfig& c);

}  // namespace dg
