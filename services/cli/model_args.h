// Shared by the subcommands that run a model: --model (default: the built-in tiny model, made on first
// use), --backend, --kv-type, and token-list parsing.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/runner.h"
#include "services/cli/flags.h"

namespace dg::cli {

// The flags every model-running command accepts.
inline const std::set<std::string> kModelFlags = {"model", "backend", "kv-type", "threads"};

// The built-in default: the "tiny" preset (seed 0, f32) as a GGUF under $XDG_CACHE_HOME/deltagate
// (or ~/.cache/deltagate), written the first time it is needed.
absl::StatusOr<std::string> default_model_path();

// Opens --model (or the default) on --backend (default: cuda when a GPU is present, else cpu).
absl::StatusOr<std::unique_ptr<Runner>> open_runner(const ParsedFlags& f, RunnerOptions opt = {});

// "1,2,3" or "1 2 3" -> ids; a clear error for anything else.
absl::StatusOr<std::vector<int32_t>> parse_token_list(const std::string& s);

}  // namespace dg::cli
