// Writing a ModelSource (HF layout) out: as an HF directory, or as a llama.cpp-layout GGUF
// (qwen35 / qwen35moe) with chosen tensor types. The GGUF conversion applies what llama.cpp's
// converter applies (docs/qwen35-model.md §6.4): value heads grouped -> tiled, +1 on zero-centred
// norms, ssm_a = -exp(A_log), conv weight squeezed, packed experts split into gate/up stacks.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "engine/formats/dtype.h"
#include "engine/model_source.h"

namespace dg {

namespace tok {
class Tokenizer;
}

struct GgufExportOptions {
    // f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k, q6_k, or q4_k_m (llama.cpp's mix: q4_k with q6_k for
    // the output head and for attn_v / ffn_down in the layers llama.cpp gives more bits).
    std::string type = "f16";
    std::string name = "deltagate random model";
    const tok::Tokenizer* tokenizer = nullptr;  // embedded (padded to vocab rows) when set
    std::function<void(const std::string& line)> progress;  // one line per tensor, may be empty
};

absl::Status export_gguf(const ModelSource& src, const std::string& path, const GgufExportOptions& opt);

// config.json + model.safetensors in `type` (f32, f16 or bf16). For small models: it holds each tensor
// in memory once; refuses models over 8 GiB.
absl::Status export_hf(const ModelSource& src, const std::string& dir, DType type);

}  // namespace dg
