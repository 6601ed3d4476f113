// An HF directory as a ModelSource (for `deltagate convert`): names normalised to the text layout,
// per-expert MoE tensors presented as the packed [E, 2I, H] / [E, H, I] tensors.
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/formats/safetensors.h"
#include "engine/model_source.h"
#include "engine/status.h"

namespace dg {
namespace {

TensorSource from_st(const StTensor& t) {
    const int64_t cols = t.shape.empty() ? 1 : t.shape.back();
    const uint64_t row_bytes = uint64_t(cols) * dtype_info(t.type).block_bytes;
    const StTensor* p = &t;
    return TensorSource{t.shape.empty() ? std::vector<int64_t>{1} : t.shape,
                        [p, cols, row_bytes](int64_t r0, int64_t n, float* out) {
                            dequantize_row(p->type, p->data + r0 * row_bytes, out, n * cols);
                        },
                        nullptr};
}

}  // namespace

absl::StatusOr<ModelSource> hf_model_source(const std::string& dir) {
    ModelSource m;
    DG_ASSIGN_OR_RETURN(m.config, config_from_hf_file((std::filesystem::path(dir) / "config.json").string()));
    DG_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsDir> st, SafetensorsDir::open(dir));
    for (const auto& [raw, t] : st->tensors()) {
        std::string name = raw;
        if (absl::StartsWith(name, "model.visual.") || absl::StartsWith(name, "mtp.")) continue;
        if (absl::StartsWith(name, "model.language_model.")) name = "model." + name.substr(21);
        if (!t.supported)
            return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor '", raw, "' has dtype ", t.dtype_name));
        if (absl::EndsWith(name, "experts.gate_up_proj.weight") || absl::EndsWith(name, "experts.down_proj.weight"))
            name = name.substr(0, name.size() - 7);
        m.tensors[name] = from_st(t);
    }
    const ModelConfig& c = m.config;
    if (c.is_moe()) {  // per-expert layout -> packed views
        const int64_t E = c.n_experts, I = c.expert_intermediate, H = c.hidden;
        for (int64_t i = 0; i < c.n_layers; ++i) {
            const std::string p = absl::StrCat("model.layers.", i, ".mlp.experts.");
            if (m.tensors.count(p + "gate_up_proj")) continue;
            std::vector<TensorSource> g(E), u(E), d(E);
            for (int64_t e = 0; e < E; ++e) {
                const std::string q = absl::StrCat(p, e, ".");
                for (auto [part, vec] : {std::pair{"gate_proj.weight", &g}, {"up_proj.weight", &u}, {"down_proj.weight", &d}}) {
                    auto it = m.tensors.find(q + part);
                    if (it == m.tensors.end())
                        return absl::InvalidArgumentError(absl::StrCat(dir, ": tensor '", q, part, "' missing"));
                    (*vec)[e] = it->second;
                    m.tensors.erase(it);
                }
            }
            m.tensors[p + "gate_up_proj"] = TensorSource{{E, 2 * I, H}, [g, u, I, H](int64_t r0, int64_t n, float* out) {
                for (int64_t k = 0; k < n; ++k) {
                    const int64_t r = r0 + k, e = r / (2 * I), j = r % (2 * I);
                    (j < I ? g[e] : u[e]).read_rows(j % I, 1, out + k * H);
                }
            }, nullptr};
            m.tensors[p + "down_proj"] = TensorSource{{E, H, I}, [d, H, I](int64_t r0, int64_t n, float* out) {
                for (int64_t k = 0; k < n; ++k) d[(r0 + k) / H].read_rows((r0 + k) % H, 1, out + k * I);
            }, nullptr};
        }
    }
    m.keep_alive = std::shared_ptr<SafetensorsDir>(std::move(st));
    return m;
}

}  // namespace dg
