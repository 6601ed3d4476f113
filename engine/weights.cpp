#include "engine/weights.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"

namespace dg {

uint8_t* ModelWeights::own(uint64_t nbytes) {
    owned.push_back(std::make_unique<std::vector<uint8_t>>(nbytes));
    return owned.back()->data();
}

uint64_t ModelWeights::total_bytes() const {
    auto mb = [](const Matrix& m) { return m.empty() ? 0 : uint64_t(m.rows) * m.row_bytes; };
    auto mlp = [&](const MlpWeights& m) { return mb(m.gate) + mb(m.up) + mb(m.down); };
    uint64_t n = mb(embed) + (lm_head.data == embed.data ? 0 : mb(lm_head)) + final_norm.size() * 4;
    for (const LayerWeights& l : layers) {
        n += (l.attn_norm.size() + l.post_norm.size()) * 4;
        if (l.is_attention) {
            n += mb(l.attn.q) + mb(l.attn.k) + mb(l.attn.v) + mb(l.attn.o) + (l.attn.q_norm.size() + l.attn.k_norm.size()) * 4;
        } else {
            const GdnWeights& g = l.gdn;
            n += mb(g.qkv) + mb(g.z) + mb(g.beta) + mb(g.alpha) + mb(g.out) +
                 (g.conv_w.size() + g.dt_bias.size() + g.ssm_a.size() + g.norm_w.size()) * 4;
        }
        n += mlp(l.mlp) + mlp(l.moe.shared) + mb(l.moe.router) + mb(l.moe.shared_gate);
        for (const MlpWeights& e : l.moe.experts) n += mlp(e);
    }
    return n;
}

void ModelWeights::for_each_matrix(const std::function<void(Matrix&)>& fn) {
    auto one = [&](Matrix& m) {
        if (!m.empty()) fn(m);
    };
    auto mlp = [&](MlpWeights& m) { one(m.gate), one(m.up), one(m.down); };
    one(embed);
    one(lm_head);
    for (LayerWeights& l : layers) {
        one(l.gdn.qkv), one(l.gdn.z), one(l.gdn.beta), one(l.gdn.alpha), one(l.gdn.out);
        one(l.attn.q), one(l.attn.k), one(l.attn.v), one(l.attn.o);
        mlp(l.mlp);
        mlp(l.moe.shared);
        one(l.moe.router);
        one(l.moe.shared_gate);
        for (MlpWeights& e : l.moe.experts) mlp(e);
    }
}

absl::StatusOr<std::unique_ptr<ModelWeights>> load_model(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        if (fs::exists(fs::path(path) / "config.json")) return load_hf_model(path);
        std::string gguf;
        for (const auto& e : fs::directory_iterator(path, ec)) {
            if (e.path().extension() != ".gguf") continue;
            if (!gguf.empty())
                return absl::InvalidArgumentError(absl::StrCat(path, ": holds several .gguf files; name one"));
            gguf = e.path().string();
        }
        if (gguf.empty())
            return absl::NotFoundError(absl::StrCat(path, ": no config.json (HF model) and no .gguf file"));
        return load_gguf_model(gguf);
    }
    if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
    return load_gguf_model(path);
}

}  // namespace dg
