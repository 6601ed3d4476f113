// Model weights in deltagate's one in-memory layout, whatever file they came from.
//
// The layout is llama.cpp's (GGUF's), because quantized GGUF rows cannot be permuted column-wise:
//  * linear-attention value heads in *tiled* order: value head h uses key head h % Hk
//    (HF files are grouped, h / R; the HF loader permutes them at load time);
//  * zero-centred RMSNorm weights stored as the multiplier (1 + w);
//  * ssm_a = -exp(A_log);
//  * conv weight as [conv_dim][K], tap K-1 multiplying the current token.
// Matrices are [rows = out][cols = in], each row contiguous in its storage type (F32/F16/BF16 or a
// GGUF block type), read in place from the mmap'd file when no transform was needed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/formats/dtype.h"
#include "engine/model_config.h"

namespace dg {

// How a matrix's rows lie in its bytes. Only the serving CPU backend packs (engine/cpu/rows16.h); what
// the loader, the oracle and the GPU backends see is always kRows.
enum class Packing : uint8_t {
    kRows,       // row r at data + r * row_bytes, in its file layout
    kRows16,     // Q4_K or Q8_0, 16 rows interleaved per block (cpu/rows16.h): cpu::plain_row puts a row back
};

struct Matrix {
    DType type = DType::F32;
    int64_t rows = 0;        // output features
    int64_t cols = 0;        // input features (contiguous)
    const uint8_t* data = nullptr;
    uint64_t row_bytes = 0;
    Packing packing = Packing::kRows;
    // Only for kRows (a packed matrix's rows are not contiguous: cpu::plain_row).
    const uint8_t* row(int64_t r) const { return data + uint64_t(r) * row_bytes; }
    bool empty() const { return data == nullptr; }
};

struct GdnWeights {
    Matrix qkv;                    // [conv_dim, H]: rows [Q (Hk*dk) | K (Hk*dk) | V (Hv*dv, tiled heads)]
    Matrix z;                      // [Hv*dv, H]   output gate (tiled heads)
    Matrix beta;                   // [Hv, H]      b -> beta = sigmoid(b)
    Matrix alpha;                  // [Hv, H]      a -> g = ssm_a * softplus(a + dt_bias)
    Matrix out;                    // [H, Hv*dv]
    std::vector<float> conv_w;     // [conv_dim][K]
    std::vector<float> dt_bias;    // [Hv]
    std::vector<float> ssm_a;      // [Hv] = -exp(A_log)
    std::vector<float> norm_w;     // [dv] gated RMSNorm weight (plain, shared by heads)
};

struct AttnWeights {
    Matrix q;                      // [Hq*2*hd, H]: per head [query hd | gate hd]
    Matrix k;                      // [Hkv*hd, H]
    Matrix v;                      // [Hkv*hd, H]
    Matrix o;                      // [H, Hq*hd]
    std::vector<float> q_norm;     // [hd] (1 + w)
    std::vector<float> k_norm;     // [hd] (1 + w)
};

struct MlpWeights {
    Matrix gate;                   // [I, H]
    Matrix up;                     // [I, H]
    Matrix down;                   // [H, I]
};

struct MoeWeights {
    Matrix router;                 // [E, H]
    std::vector<MlpWeights> experts;  // [E], each of width expert_intermediate
    MlpWeights shared;             // width shared_intermediate
    Matrix shared_gate;            // [1, H]
};

struct LayerWeights {
    bool is_attention = false;
    std::vector<float> attn_norm;  // [H] (1 + w)
    std::vector<float> post_norm;  // [H] (1 + w)
    GdnWeights gdn;                // when !is_attention
    AttnWeights attn;              // when is_attention
    MlpWeights mlp;                // dense models
    MoeWeights moe;                // MoE models
};

struct ModelWeights {
    ModelConfig config;
    Matrix embed;                  // [V, H]
    Matrix lm_head;                // [V, H] (== embed when tied)
    std::vector<float> final_norm; // [H] (1 + w)
    std::vector<LayerWeights> layers;
    std::string source;            // file or directory it was loaded from

    // Keeps mmap'd files and transformed copies alive for as long as the Matrix pointers are used.
    std::vector<std::shared_ptr<const void>> keep_alive;
    std::vector<std::unique_ptr<std::vector<uint8_t>>> owned;
    uint8_t* own(uint64_t nbytes);  // new zeroed buffer owned by these weights
    uint64_t total_bytes() const;   // bytes of all matrices and vectors (what a backend must hold)
    // Calls fn on every matrix that has data, lm_head included when it is tied to embed (same data).
    void for_each_matrix(const std::function<void(Matrix&)>& fn);
};

// Loads a model: an HF directory (config.json + safetensors, sharded or not), a GGUF file, or a
// directory holding exactly one .gguf. Every tensor's presence, type and shape is checked; errors
// name the file and the tensor.
absl::StatusOr<std::unique_ptr<ModelWeights>> load_model(const std::string& path);
absl::StatusOr<std::unique_ptr<ModelWeights>> load_hf_model(const std::string& dir);
absl::StatusOr<std::unique_ptr<ModelWeights>> load_gguf_model(const std::string& path);

}  // namespace dg
