// HF directory (config.json + safetensors) -> ModelWeights. HF stores value heads grouped, zero-centred
// norms and A_log; this loader converts them to deltagate's layout (engine/weights.h) once, at load.
#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/formats/safetensors.h"
#include "engine/status.h"
#include "engine/weights.h"

namespace dg {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) absl::StrAppend(&r, i ? ", " : "", s[i]);
    return r + "]";
}

class HfLoader {
public:
    HfLoader(const SafetensorsDir& d, ModelWeights& w, const std::string& dir) : d_(d), w_(w), dir_(dir) {}

    // Looks a tensor up under the text-only and the VLM-wrapper prefix ("model." / "model.language_model.").
    const StTensor* find(const std::string& name) const {
        if (const StTensor* t = d_.find(name)) return t;
        if (name.rfind("model.", 0) == 0) return d_.find("model.language_model." + name.substr(6));
        return nullptr;
    }

    absl::StatusOr<const StTensor*> tensor(const std::string& name, const std::vector<int64_t>& shape) const {
        const StTensor* t = find(name);
        if (!t) return absl::InvalidArgumentError(absl::StrCat(dir_, ": tensor '", name, "' missing"));
        if (!t->supported)
            return absl::InvalidArgumentError(absl::StrCat(t->file, ": tensor '", name, "' has dtype ", t->dtype_name,
                                                           " (supported: F32, F16, BF16)"));
        if (t->shape != shape)
            return absl::InvalidArgumentError(absl::StrCat(t->file, ": tensor '", name, "' has shape ",
                                                           shape_str(t->shape), ", expected ", shape_str(shape)));
        return t;
    }

    absl::StatusOr<Matrix> matrix(const std::string& name, int64_t out, int64_t in) const {
        DG_ASSIGN_OR_RETURN(const StTensor* t, tensor(name, {out, in}));
        return view(t, out, in, 0);
    }

    static Matrix view(const StTensor* t, int64_t out, int64_t in, uint64_t first_row) {
        uint64_t rb = uint64_t(in) * dtype_info(t->type).block_bytes;
        return Matrix{t->type, out, in, t->data + first_row * rb, rb};
    }

    absl::StatusOr<std::vector<float>> vec(const std::string& name, std::vector<int64_t> shape) const {
        DG_ASSIGN_OR_RETURN(const StTensor* t, tensor(name, shape));
        int64_t n = 1;
        for (int64_t s : shape) n *= s;
        std::vector<float> v(n);
        dequantize_row(t->type, t->data, v.data(), n);
        return v;
    }

    // Copy of `m` with output rows taken from `src_row[r]`.
    Matrix permute_rows(const Matrix& m, const std::vector<int64_t>& src_row) {
        uint8_t* dst = w_.own(uint64_t(m.rows) * m.row_bytes);
        for (int64_t r = 0; r < m.rows; ++r) std::memcpy(dst + r * m.row_bytes, m.row(src_row[r]), m.row_bytes);
        return Matrix{m.type, m.rows, m.cols, dst, m.row_bytes};
    }

    // Copy of `m` with input columns taken from `src_col[c]` (plain element types only).
    Matrix permute_cols(const Matrix& m, const std::vector<int64_t>& src_col) {
        const uint64_t es = dtype_info(m.type).block_bytes;
        uint8_t* dst = w_.own(uint64_t(m.rows) * m.row_bytes);
        for (int64_t r = 0; r < m.rows; ++r)
            for (int64_t c = 0; c < m.cols; ++c)
                std::memcpy(dst + r * m.row_bytes + c * es, m.row(r) + src_col[c] * es, es);
        return Matrix{m.type, m.rows, m.cols, dst, m.row_bytes};
    }

    const std::string& dir() const { return dir_; }

private:
    const SafetensorsDir& d_;
    ModelWeights& w_;
    std::string dir_;
};

// tiled value head t = r*Hk + g holds grouped head g*R + r (docs/qwen35-model.md §6.4).
std::vector<int64_t> tiled_head_source(int64_t Hk, int64_t Hv) {
    const int64_t R = Hv / Hk;
    std::vector<int64_t> src(Hv);
    for (int64_t t = 0; t < Hv; ++t) src[t] = (t % Hk) * R + t / Hk;
    return src;
}

// Index map over `n_heads * width` entries, head-major, moving whole heads.
std::vector<int64_t> expand_heads(const std::vector<int64_t>& head_src, int64_t width, int64_t offset = 0,
                                  int64_t prefix = 0) {
    std::vector<int64_t> m(prefix);
    for (int64_t i = 0; i < prefix; ++i) m[i] = i;
    for (size_t t = 0; t < head_src.size(); ++t)
        for (int64_t j = 0; j < width; ++j) m.push_back(offset + head_src[t] * width + j);
    return m;
}

void add_one(std::vector<float>& v) {
    for (float& x : v) x += 1.0f;
}

absl::Status load_gdn(HfLoader& L, const ModelConfig& c, const std::string& p, GdnWeights& g) {
    const int64_t H = c.hidden, Hk = c.lin_k_heads, Hv = c.lin_v_heads, dv = c.lin_v_dim, K = c.conv_kernel;
    const int64_t qk = 2 * Hk * c.lin_k_dim, C = c.conv_dim();
    const std::vector<int64_t> heads = tiled_head_source(Hk, Hv);
    const bool reorder = Hk != Hv;
    DG_ASSIGN_OR_RETURN(g.qkv, L.matrix(p + "in_proj_qkv.weight", C, H));
    DG_ASSIGN_OR_RETURN(g.z, L.matrix(p + "in_proj_z.weight", Hv * dv, H));
    DG_ASSIGN_OR_RETURN(g.beta, L.matrix(p + "in_proj_b.weight", Hv, H));
    DG_ASSIGN_OR_RETURN(g.alpha, L.matrix(p + "in_proj_a.weight", Hv, H));
    DG_ASSIGN_OR_RETURN(g.out, L.matrix(p + "out_proj.weight", H, Hv * dv));
    DG_ASSIGN_OR_RETURN(std::vector<float> conv, L.vec(p + "conv1d.weight", {C, 1, K}));
    DG_ASSIGN_OR_RETURN(g.dt_bias, L.vec(p + "dt_bias", {Hv}));
    DG_ASSIGN_OR_RETURN(std::vector<float> a_log, L.vec(p + "A_log", {Hv}));
    DG_ASSIGN_OR_RETURN(g.norm_w, L.vec(p + "norm.weight", {dv}));
    g.ssm_a.resize(Hv);
    for (int64_t h = 0; h < Hv; ++h) g.ssm_a[h] = -std::exp(a_log[h]);
    g.conv_w = conv;  // [C][1][K] == [C][K]
    if (reorder) {
        const std::vector<int64_t> v_rows = expand_heads(heads, dv, qk, qk);
        g.qkv = L.permute_rows(g.qkv, v_rows);
        g.z = L.permute_rows(g.z, expand_heads(heads, dv));
        g.beta = L.permute_rows(g.beta, heads);
        g.alpha = L.permute_rows(g.alpha, heads);
        g.out = L.permute_cols(g.out, expand_heads(heads, dv));
        std::vector<float> dt(Hv), sa(Hv);
        for (int64_t t = 0; t < Hv; ++t) dt[t] = g.dt_bias[heads[t]], sa[t] = g.ssm_a[heads[t]];
        g.dt_bias = dt;
        g.ssm_a = sa;
        for (int64_t ch = qk; ch < C; ++ch)
            for (int64_t j = 0; j < K; ++j) g.conv_w[ch * K + j] = conv[v_rows[ch] * K + j];
    }
    return absl::OkStatus();
}

absl::Status load_moe(HfLoader& L, const ModelConfig& c, const std::string& p, MoeWeights& m) {
    const int64_t H = c.hidden, E = c.n_experts, Ie = c.expert_intermediate, Is = c.shared_intermediate;
    DG_ASSIGN_OR_RETURN(m.router, L.matrix(p + "gate.weight", E, H));
    m.experts.resize(E);
    const StTensor* gu = L.find(p + "experts.gate_up_proj");
    if (!gu) gu = L.find(p + "experts.gate_up_proj.weight");
    if (gu) {  // packed [E, 2*Ie, H] (gate rows first) and [E, H, Ie]
        std::string gu_name = gu->name.size() > 7 && gu->name.substr(gu->name.size() - 7) == ".weight"
                                  ? p + "experts.gate_up_proj.weight" : p + "experts.gate_up_proj";
        DG_ASSIGN_OR_RETURN(gu, L.tensor(gu_name, {E, 2 * Ie, H}));
        std::string dn_name = L.find(p + "experts.down_proj") ? p + "experts.down_proj" : p + "experts.down_proj.weight";
        DG_ASSIGN_OR_RETURN(const StTensor* dn, L.tensor(dn_name, {E, H, Ie}));
        for (int64_t e = 0; e < E; ++e) {
            m.experts[e].gate = HfLoader::view(gu, Ie, H, uint64_t(e) * 2 * Ie);
            m.experts[e].up = HfLoader::view(gu, Ie, H, uint64_t(e) * 2 * Ie + Ie);
            m.experts[e].down = HfLoader::view(dn, H, Ie, uint64_t(e) * H);
        }
    } else {
        for (int64_t e = 0; e < E; ++e) {
            std::string q = absl::StrCat(p, "experts.", e, ".");
            DG_ASSIGN_OR_RETURN(m.experts[e].gate, L.matrix(q + "gate_proj.weight", Ie, H));
            DG_ASSIGN_OR_RETURN(m.experts[e].up, L.matrix(q + "up_proj.weight", Ie, H));
            DG_ASSIGN_OR_RETURN(m.experts[e].down, L.matrix(q + "down_proj.weight", H, Ie));
        }
    }
    DG_ASSIGN_OR_RETURN(m.shared.gate, L.matrix(p + "shared_expert.gate_proj.weight", Is, H));
    DG_ASSIGN_OR_RETURN(m.shared.up, L.matrix(p + "shared_expert.up_proj.weight", Is, H));
    DG_ASSIGN_OR_RETURN(m.shared.down, L.matrix(p + "shared_expert.down_proj.weight", H, Is));
    DG_ASSIGN_OR_RETURN(m.shared_gate, L.matrix(p + "shared_expert_gate.weight", 1, H));
    return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelWeights>> load_hf_model(const std::string& dir) {
    auto w = std::make_unique<ModelWeights>();
    DG_ASSIGN_OR_RETURN(w->config, config_from_hf_file((std::filesystem::path(dir) / "config.json").string()));
    DG_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsDir> st, SafetensorsDir::open(dir));
    w->source = dir;
    const ModelConfig& c = w->config;
    HfLoader L(*st, *w, dir);
    const int64_t H = c.hidden;

    DG_ASSIGN_OR_RETURN(w->embed, L.matrix("model.embed_tokens.weight", c.vocab_size, H));
    // HF ties when either the text config or the wrapper says so; then lm_head.weight (if any) is unused.
    if (c.tied_embeddings) {
        w->lm_head = w->embed;
    } else {
        DG_ASSIGN_OR_RETURN(w->lm_head, L.matrix("lm_head.weight", c.vocab_size, H));
    }
    DG_ASSIGN_OR_RETURN(w->final_norm, L.vec("model.norm.weight", {H}));
    add_one(w->final_norm);

    for (int64_t i = 0; i < c.n_layers; ++i) {
        LayerWeights lw;
        lw.is_attention = c.is_attention[i];
        const std::string p = absl::StrCat("model.layers.", i, ".");
        DG_ASSIGN_OR_RETURN(lw.attn_norm, L.vec(p + "input_layernorm.weight", {H}));
        DG_ASSIGN_OR_RETURN(lw.post_norm, L.vec(p + "post_attention_layernorm.weight", {H}));
        add_one(lw.attn_norm);
        add_one(lw.post_norm);
        if (lw.is_attention) {
            const int64_t hd = c.head_dim;
            const std::string a = p + "self_attn.";
            DG_ASSIGN_OR_RETURN(lw.attn.q, L.matrix(a + "q_proj.weight", 2 * c.n_heads * hd, H));
            DG_ASSIGN_OR_RETURN(lw.attn.k, L.matrix(a + "k_proj.weight", c.n_kv_heads * hd, H));
            DG_ASSIGN_OR_RETURN(lw.attn.v, L.matrix(a + "v_proj.weight", c.n_kv_heads * hd, H));
            DG_ASSIGN_OR_RETURN(lw.attn.o, L.matrix(a + "o_proj.weight", H, c.n_heads * hd));
            DG_ASSIGN_OR_RETURN(lw.attn.q_norm, L.vec(a + "q_norm.weight", {hd}));
            DG_ASSIGN_OR_RETURN(lw.attn.k_norm, L.vec(a + "k_norm.weight", {hd}));
            add_one(lw.attn.q_norm);
            add_one(lw.attn.k_norm);
        } else {
            DG_RETURN_IF_ERROR(load_gdn(L, c, p + "linear_attn.", lw.gdn));
        }
        if (c.is_moe()) {
            DG_RETURN_IF_ERROR(load_moe(L, c, p + "mlp.", lw.moe));
        } else {
            DG_ASSIGN_OR_RETURN(lw.mlp.gate, L.matrix(p + "mlp.gate_proj.weight", c.intermediate, H));
            DG_ASSIGN_OR_RETURN(lw.mlp.up, L.matrix(p + "mlp.up_proj.weight", c.intermediate, H));
            DG_ASSIGN_OR_RETURN(lw.mlp.down, L.matrix(p + "mlp.down_proj.weight", H, c.intermediate));
        }
        w->layers.push_back(std::move(lw));
    }
    std::shared_ptr<SafetensorsDir> keep(std::move(st));
    w->keep_alive.push_back(keep);
    return w;
}

}  // namespace dg
