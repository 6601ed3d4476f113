// ModelSource -> HF directory (config.json + model.safetensors), the layout transformers loads.
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "engine/formats/safetensors.h"
#include "engine/model_export.h"
#include "engine/status.h"
#include "nlohmann/json.hpp"

namespace dg {

absl::Status export_hf(const ModelSource& src, const std::string& dir, DType type) {
    if (type != DType::F32 && type != DType::F16 && type != DType::BF16)
        return absl::InvalidArgumentError("HF export: type must be f32, f16 or bf16");
    uint64_t total = 0;
    for (const auto& [name, t] : src.tensors) total += uint64_t(t.rows()) * t.cols() * dtype_info(type).block_bytes;
    if (total > (uint64_t(8) << 30))
        return absl::InvalidArgumentError(absl::StrCat("HF export: ", total >> 20, " MiB is too large for this writer (8 GiB "
                                                       "max); write a GGUF instead"));
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return absl::InternalError(absl::StrCat(dir, ": cannot create: ", ec.message()));
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    std::vector<float> f;
    std::vector<uint8_t> bytes;
    for (const auto& [name, t] : src.tensors) {
        const int64_t n = t.rows() * t.cols();
        f.resize(n);
        t.read_rows(0, t.rows(), f.data());
        bytes.resize(uint64_t(n) * dtype_info(type).block_bytes);
        quantize_row(type, f.data(), bytes.data(), n);
        DG_RETURN_IF_ERROR(w.add(name, type, t.shape, bytes.data()));
    }
    DG_RETURN_IF_ERROR(w.write((std::filesystem::path(dir) / "model.safetensors").string()));
    nlohmann::json cfg = config_to_hf_json(src.config);
    cfg["dtype"] = type == DType::F32 ? "float32" : type == DType::F16 ? "float16" : "bfloat16";
    std::ofstream out(std::filesystem::path(dir) / "config.json");
    out << cfg.dump(2) << "\n";
    if (!out) return absl::InternalError(absl::StrCat(dir, "/config.json: write failed"));
    return absl::OkStatus();
}

}  // namespace dg
