// The tokenizer <-> GGUF metadata bridge (tokenizer.ggml.*, the keys llama.cpp reads for gpt2 models).
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/tokenizer.h"

namespace dg::tok {

// Builds a tokenizer from tokenizer.ggml.{model=gpt2, pre=qwen35|qwen2, tokens, token_type, merges,
// eos_token_id, padding_token_id, bos_token_id}.
absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer_from_gguf(const GgufFile& gguf);

// Declares the tokenizer metadata on `writer` for make-model. The vocabulary is padded with tokens
// "[PAD{id}]" of type unused up to `pad_to_rows` (the embedding rows, e.g. 248320 for Qwen3.5), as
// llama.cpp's converter does; pad_to_rows below the vocabulary size is an error.
absl::Status add_tokenizer_to_gguf(const Tokenizer& tok, GgufWriter& writer, int64_t pad_to_rows);

}  // namespace dg::tok
