// GGUF (llama.cpp layout) -> ModelWeights. The file already uses deltagate's layout (tiled value heads,
// 1+w norms, ssm_a), so matrices point straight into the mapping; only small vectors become f32 copies.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/formats/gguf.h"
#include "engine/status.h"
#include "engine/weights.h"

namespace dg {
namespace {

class GgufLoader {
public:
    GgufLoader(const GgufFile& f, ModelWeights& w) : f_(f), w_(w) {}

    absl::StatusOr<const GgufTensor*> tensor(const std::string& name, std::vector<int64_t> ne) {
        const GgufTensor* t = f_.find_tensor(name);
        if (!t) return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": tensor '", name, "' missing"));
        if (t->ne != ne)
            return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": tensor '", name, "' has shape ",
                                                           shape_str(t->ne), ", expected ", shape_str(ne)));
        return t;
    }

    // 2-D {in, out} matrix, or expert `e` of a 3-D {in, out, E} stack.
    absl::StatusOr<Matrix> matrix(const std::string& name, int64_t in, int64_t out, int64_t n_experts = 0,
                                  int64_t e = 0) {
        std::vector<int64_t> ne = {in, out};
        if (n_experts) ne.push_back(n_experts);
        DG_ASSIGN_OR_RETURN(const GgufTensor* t, tensor(name, ne));
        auto rb = row_bytes(t->type, in);
        if (!rb.ok())
            return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": tensor '", name, "': ", rb.status().message()));
        Matrix m{t->type, out, in, t->data + uint64_t(e) * uint64_t(out) * *rb, *rb};
        return m;
    }

    absl::StatusOr<std::vector<float>> vec(const std::string& name, int64_t n) {
        DG_ASSIGN_OR_RETURN(const GgufTensor* t, tensor(name, {n}));
        if (t->type != DType::F32 && t->type != DType::F16 && t->type != DType::BF16)
            return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": tensor '", name, "' must be f32/f16/bf16, is ",
                                                           dtype_info(t->type).name));
        std::vector<float> v(n);
        dequantize_row(t->type, t->data, v.data(), n);
        return v;
    }

    absl::StatusOr<std::vector<float>> conv(const std::string& name, int64_t K, int64_t C) {
        DG_ASSIGN_OR_RETURN(const GgufTensor* t, tensor(name, {K, C}));
        if (t->type != DType::F32 && t->type != DType::F16 && t->type != DType::BF16)
            return absl::InvalidArgumentError(absl::StrCat(f_.path(), ": tensor '", name, "' must be f32/f16/bf16"));
        std::vector<float> v(K * C);
        dequantize_row(t->type, t->data, v.data(), K * C);
        return v;
    }

    static std::string shape_str(const std::vector<int64_t>& ne) {
        std::string s = "{";
        for (size_t i = 0; i < ne.size(); ++i) absl::StrAppend(&s, i ? ", " : "", ne[i]);
        return s + "}";
    }

private:
    const GgufFile& f_;
    ModelWeights& w_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelWeights>> load_gguf_model(const std::string& path) {
    DG_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, GgufFile::open(path));
    auto w = std::make_unique<ModelWeights>();
    DG_ASSIGN_OR_RETURN(w->config, config_from_gguf(*file));
    w->source = path;
    const ModelConfig& c = w->config;
    GgufLoader L(*file, *w);
    const int64_t H = c.hidden;

    DG_ASSIGN_OR_RETURN(w->embed, L.matrix("token_embd.weight", H, c.vocab_size));
    if (c.tied_embeddings) {
        w->lm_head = w->embed;
    } else {
        DG_ASSIGN_OR_RETURN(w->lm_head, L.matrix("output.weight", H, c.vocab_size));
    }
    DG_ASSIGN_OR_RETURN(w->final_norm, L.vec("output_norm.weight", H));

    for (int64_t i = 0; i < c.n_layers; ++i) {
        LayerWeights lw;
        lw.is_attention = c.is_attention[i];
        std::string p = absl::StrCat("blk.", i, ".");
        DG_ASSIGN_OR_RETURN(lw.attn_norm, L.vec(p + "attn_norm.weight", H));
        DG_ASSIGN_OR_RETURN(lw.post_norm, L.vec(p + "post_attention_norm.weight", H));
        if (lw.is_attention) {
            const int64_t hd = c.head_dim;
            AttnWeights& a = lw.attn;
            DG_ASSIGN_OR_RETURN(a.q, L.matrix(p + "attn_q.weight", H, 2 * c.n_heads * hd));
            DG_ASSIGN_OR_RETURN(a.k, L.matrix(p + "attn_k.weight", H, c.n_kv_heads * hd));
            DG_ASSIGN_OR_RETURN(a.v, L.matrix(p + "attn_v.weight", H, c.n_kv_heads * hd));
            DG_ASSIGN_OR_RETURN(a.o, L.matrix(p + "attn_output.weight", c.n_heads * hd, H));
            DG_ASSIGN_OR_RETURN(a.q_norm, L.vec(p + "attn_q_norm.weight", hd));
            DG_ASSIGN_OR_RETURN(a.k_norm, L.vec(p + "attn_k_norm.weight", hd));
        } else {
            GdnWeights& g = lw.gdn;
            const int64_t Hv = c.lin_v_heads, vd = Hv * c.lin_v_dim;
            DG_ASSIGN_OR_RETURN(g.qkv, L.matrix(p + "attn_qkv.weight", H, c.conv_dim()));
            DG_ASSIGN_OR_RETURN(g.z, L.matrix(p + "attn_gate.weight", H, vd));
            DG_ASSIGN_OR_RETURN(g.beta, L.matrix(p + "ssm_beta.weight", H, Hv));
            DG_ASSIGN_OR_RETURN(g.alpha, L.matrix(p + "ssm_alpha.weight", H, Hv));
            DG_ASSIGN_OR_RETURN(g.out, L.matrix(p + "ssm_out.weight", vd, H));
            DG_ASSIGN_OR_RETURN(g.conv_w, L.conv(p + "ssm_conv1d.weight", c.conv_kernel, c.conv_dim()));
            DG_ASSIGN_OR_RETURN(g.dt_bias, L.vec(p + "ssm_dt.bias", Hv));
            DG_ASSIGN_OR_RETURN(g.ssm_a, L.vec(p + "ssm_a", Hv));
            DG_ASSIGN_OR_RETURN(g.norm_w, L.vec(p + "ssm_norm.weight", c.lin_v_dim));
        }
        if (c.is_moe()) {
            MoeWeights& m = lw.moe;
            const int64_t E = c.n_experts, Ie = c.expert_intermediate, Is = c.shared_intermediate;
            DG_ASSIGN_OR_RETURN(m.router, L.matrix(p + "ffn_gate_inp.weight", H, E));
            m.experts.resize(E);
            for (int64_t e = 0; e < E; ++e) {
                DG_ASSIGN_OR_RETURN(m.experts[e].gate, L.matrix(p + "ffn_gate_exps.weight", H, Ie, E, e));
                DG_ASSIGN_OR_RETURN(m.experts[e].up, L.matrix(p + "ffn_up_exps.weight", H, Ie, E, e));
                DG_ASSIGN_OR_RETURN(m.experts[e].down, L.matrix(p + "ffn_down_exps.weight", Ie, H, E, e));
            }
            DG_ASSIGN_OR_RETURN(m.shared.gate, L.matrix(p + "ffn_gate_shexp.weight", H, Is));
            DG_ASSIGN_OR_RETURN(m.shared.up, L.matrix(p + "ffn_up_shexp.weight", H, Is));
            DG_ASSIGN_OR_RETURN(m.shared.down, L.matrix(p + "ffn_down_shexp.weight", Is, H));
            // Stored as a 1-D {H} vector; as a [1, H] matrix it goes through the same matmul.
            DG_ASSIGN_OR_RETURN(const GgufTensor* sg, L.tensor(p + "ffn_gate_inp_shexp.weight", {H}));
            DG_ASSIGN_OR_RETURN(uint64_t rb, row_bytes(sg->type, H));
            m.shared_gate = Matrix{sg->type, 1, H, sg->data, rb};
        } else {
            const int64_t I = c.intermediate;
            DG_ASSIGN_OR_RETURN(lw.mlp.gate, L.matrix(p + "ffn_gate.weight", H, I));
            DG_ASSIGN_OR_RETURN(lw.mlp.up, L.matrix(p + "ffn_up.weight", H, I));
            DG_ASSIGN_OR_RETURN(lw.mlp.down, L.matrix(p + "ffn_down.weight", I, H));
        }
        w->layers.push_back(std::move(lw));
    }
    std::shared_ptr<GgufFile> keep(std::move(file));
    w->keep_alive.push_back(keep);
    return w;
}

}  // namespace dg
