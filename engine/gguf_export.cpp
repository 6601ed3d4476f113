// ModelSource (HF layout) -> GGUF (llama.cpp layout), streamed tensor by tensor, rows converted in
// parallel. Tensor names and metadata keys: docs/qwen35-model.md §6.2-§6.4.
#include <cmath>
#include <map>
#include <mutex>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "engine/cpu/parallel.h"
#include "engine/formats/gguf.h"
#include "engine/model_export.h"
#include "engine/status.h"
#include "engine/tokenizer/gguf_vocab.h"

namespace dg {
namespace {

enum class Xform { kNone, kAddOne, kNegExp };

// One GGUF tensor: rows in GGUF orientation (ne[1..] flattened), each built from one source row.
struct Plan {
    std::string name;
    std::vector<int64_t> ne;
    DType type;
    const TensorSource* src;
    std::function<int64_t(int64_t)> src_row;  // GGUF row -> source row (identity when empty)
    std::vector<int64_t> col_src;               // GGUF column -> source column (identity when empty)
    Xform xform = Xform::kNone;
};

// Grouped (HF) value head g*R + r sits at tiled (GGUF) position r*Hk + g: tiled t <- grouped src(t).
int64_t grouped_of_tiled(int64_t t, int64_t Hk, int64_t R) { return (t % Hk) * R + t / Hk; }

bool more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

class Planner {
public:
    Planner(const ModelSource& s, const std::string& type) : s_(s), c_(s.config), type_(type) {}

    absl::StatusOr<std::vector<Plan>> plan() {
        const int64_t H = c_.hidden, V = c_.vocab_size;
        DG_RETURN_IF_ERROR(mat("token_embd.weight", "model.embed_tokens.weight", {H, V}, "embd"));
        DG_RETURN_IF_ERROR(vec("output_norm.weight", "model.norm.weight", H, Xform::kAddOne));
        if (!c_.tied_embeddings) DG_RETURN_IF_ERROR(mat("output.weight", "lm_head.weight", {H, V}, "output"));
        for (int64_t i = 0; i < c_.n_layers; ++i) DG_RETURN_IF_ERROR(layer(i));
        return std::move(plans_);
    }

private:
    absl::StatusOr<const TensorSource*> get(const std::string& name, std::vector<int64_t> shape) {
        auto it = s_.tensors.find(name);
        if (it == s_.tensors.end()) return absl::InvalidArgumentError(absl::StrCat("source: tensor '", name, "' missing"));
        if (it->second.shape != shape) {
            int64_t want = 1, have = 1;
            for (int64_t d : shape) want *= d;
            for (int64_t d : it->second.shape) have *= d;
            if (want != have || it->second.cols() != shape.back())
                return absl::InvalidArgumentError(absl::StrCat("source: tensor '", name, "' has the wrong shape"));
        }
        return &it->second;
    }

    // Storage type for a matrix of this role under the chosen scheme.
    absl::StatusOr<DType> pick(const std::string& role, int64_t layer, int64_t in_dim) {
        std::string t = type_;
        if (t == "q4_k_m") {
            t = "q4_k";
            if (role == "output") t = "q6_k";
            if ((role == "attn_v" || role == "ffn_down") && more_bits(layer, c_.n_layers)) t = "q6_k";
        }
        if (role == "router") t = "f32";  // llama.cpp never quantises ffn_gate_inp
        DG_ASSIGN_OR_RETURN(DType d, dtype_from_name(t));
        if (!row_bytes(d, in_dim).ok())
            return absl::InvalidArgumentError(absl::StrCat("type ", t, " needs rows that are a multiple of ",
                                                           dtype_info(d).block_elems, " values; this model has a ",
                                                           in_dim, "-wide input (", role, ")"));
        return d;
    }

    absl::Status mat(const std::string& gname, const std::string& hname, std::vector<int64_t> ne, const std::string& role,
                     int64_t layer = 0, std::function<int64_t(int64_t)> src_row = nullptr, std::vector<int64_t> cols = {},
                     std::vector<int64_t> src_shape = {}) {
        if (src_shape.empty()) src_shape = {ne[1], ne[0]};
        DG_ASSIGN_OR_RETURN(const TensorSource* t, get(hname, src_shape));
        DG_ASSIGN_OR_RETURN(DType d, pick(role, layer, ne[0]));
        plans_.push_back(Plan{gname, ne, d, t, std::move(src_row), std::move(cols), Xform::kNone});
        return absl::OkStatus();
    }

    absl::Status vec(const std::string& gname, const std::string& hname, int64_t n, Xform x,
                     std::function<int64_t(int64_t)> elem_src = nullptr) {
        DG_ASSIGN_OR_RETURN(const TensorSource* t, get(hname, {n}));
        std::vector<int64_t> cols;
        if (elem_src)
            for (int64_t i = 0; i < n; ++i) cols.push_back(elem_src(i));
        plans_.push_back(Plan{gname, {n}, DType::F32, t, nullptr, std::move(cols), x});
        return absl::OkStatus();
    }

    absl::Status layer(int64_t i) {
        const int64_t H = c_.hidden;
        const std::string g = absl::StrCat("blk.", i, "."), h = absl::StrCat("model.layers.", i, ".");
        DG_RETURN_IF_ERROR(vec(g + "attn_norm.weight", h + "input_layernorm.weight", H, Xform::kAddOne));
        DG_RETURN_IF_ERROR(vec(g + "post_attention_norm.weight", h + "post_attention_layernorm.weight", H, Xform::kAddOne));
        if (c_.is_attention[i]) {
            const int64_t q = c_.n_heads * c_.head_dim, kv = c_.n_kv_heads * c_.head_dim, hd = c_.head_dim;
            const std::string a = h + "self_attn.";
            DG_RETURN_IF_ERROR(mat(g + "attn_q.weight", a + "q_proj.weight", {H, 2 * q}, "attn_q", i));
            DG_RETURN_IF_ERROR(mat(g + "attn_k.weight", a + "k_proj.weight", {H, kv}, "attn_k", i));
            DG_RETURN_IF_ERROR(mat(g + "attn_v.weight", a + "v_proj.weight", {H, kv}, "attn_v", i));
            DG_RETURN_IF_ERROR(mat(g + "attn_output.weight", a + "o_proj.weight", {q, H}, "attn_output", i));
            DG_RETURN_IF_ERROR(vec(g + "attn_q_norm.weight", a + "q_norm.weight", hd, Xform::kAddOne));
            DG_RETURN_IF_ERROR(vec(g + "attn_k_norm.weight", a + "k_norm.weight", hd, Xform::kAddOne));
        } else {
            DG_RETURN_IF_ERROR(gdn(i, g, h + "linear_attn."));
        }
        const std::string m = h + "mlp.";
        if (!c_.is_moe()) {
            const int64_t I = c_.intermediate;
            DG_RETURN_IF_ERROR(mat(g + "ffn_gate.weight", m + "gate_proj.weight", {H, I}, "ffn_gate", i));
            DG_RETURN_IF_ERROR(mat(g + "ffn_up.weight", m + "up_proj.weight", {H, I}, "ffn_up", i));
            DG_RETURN_IF_ERROR(mat(g + "ffn_down.weight", m + "down_proj.weight", {I, H}, "ffn_down", i));
            return absl::OkStatus();
        }
        const int64_t E = c_.n_experts, I = c_.expert_intermediate, Is = c_.shared_intermediate;
        DG_RETURN_IF_ERROR(mat(g + "ffn_gate_inp.weight", m + "gate.weight", {H, E}, "router", i));
        // gate_up_proj [E, 2I, H]: expert e's gate rows are e*2I + j, its up rows e*2I + I + j.
        DG_RETURN_IF_ERROR(mat(g + "ffn_gate_exps.weight", m + "experts.gate_up_proj", {H, I, E}, "ffn_gate", i,
                               [I](int64_t r) { return (r / I) * 2 * I + r % I; }, {}, {E, 2 * I, H}));
        DG_RETURN_IF_ERROR(mat(g + "ffn_up_exps.weight", m + "experts.gate_up_proj", {H, I, E}, "ffn_up", i,
                               [I](int64_t r) { return (r / I) * 2 * I + I + r % I; }, {}, {E, 2 * I, H}));
        DG_RETURN_IF_ERROR(mat(g + "ffn_down_exps.weight", m + "experts.down_proj", {I, H, E}, "ffn_down", i, nullptr, {},
                               {E, H, I}));
        DG_RETURN_IF_ERROR(mat(g + "ffn_gate_shexp.weight", m + "shared_expert.gate_proj.weight", {H, Is}, "ffn_gate", i));
        DG_RETURN_IF_ERROR(mat(g + "ffn_up_shexp.weight", m + "shared_expert.up_proj.weight", {H, Is}, "ffn_up", i));
        DG_RETURN_IF_ERROR(mat(g + "ffn_down_shexp.weight", m + "shared_expert.down_proj.weight", {Is, H}, "ffn_down", i));
        DG_ASSIGN_OR_RETURN(const TensorSource* sg, get(m + "shared_expert_gate.weight", {1, H}));
        plans_.push_back(Plan{g + "ffn_gate_inp_shexp.weight", {H}, DType::F32, sg, nullptr, {}, Xform::kNone});
        return absl::OkStatus();
    }

    absl::Status gdn(int64_t i, const std::string& g, const std::string& a) {
        const int64_t H = c_.hidden, Hk = c_.lin_k_heads, Hv = c_.lin_v_heads, R = Hv / Hk, dv = c_.lin_v_dim;
        const int64_t qk = 2 * Hk * c_.lin_k_dim, C = c_.conv_dim(), vd = Hv * dv, K = c_.conv_kernel;
        if (c_.lin_k_dim != dv)
            return absl::InvalidArgumentError(absl::StrCat("GGUF qwen35 stores one ssm.state_size for the linear key and "
                                                           "value head dims; this model has ", c_.lin_k_dim, " and ", dv));
        auto head = [Hk, R](int64_t t) { return grouped_of_tiled(t, Hk, R); };
        auto head_rows = [head, dv](int64_t r) { return head(r / dv) * dv + r % dv; };  // within a [Hv*dv] block
        auto qkv_rows = [qk, head_rows](int64_t r) { return r < qk ? r : qk + head_rows(r - qk); };
        std::vector<int64_t> out_cols(vd);
        for (int64_t c = 0; c < vd; ++c) out_cols[c] = head_rows(c);
        DG_RETURN_IF_ERROR(mat(g + "attn_qkv.weight", a + "in_proj_qkv.weight", {H, C}, "attn_qkv", i, qkv_rows));
        DG_RETURN_IF_ERROR(mat(g + "attn_gate.weight", a + "in_proj_z.weight", {H, vd}, "attn_gate", i, head_rows));
        DG_RETURN_IF_ERROR(mat(g + "ssm_beta.weight", a + "in_proj_b.weight", {H, Hv}, "ssm_beta", i, head));
        DG_RETURN_IF_ERROR(mat(g + "ssm_alpha.weight", a + "in_proj_a.weight", {H, Hv}, "ssm_alpha", i, head));
        DG_RETURN_IF_ERROR(mat(g + "ssm_out.weight", a + "out_proj.weight", {vd, H}, "ssm_out", i, nullptr, out_cols));
        DG_ASSIGN_OR_RETURN(const TensorSource* conv, get(a + "conv1d.weight", {C, 1, K}));
        plans_.push_back(Plan{g + "ssm_conv1d.weight", {K, C}, DType::F32, conv, qkv_rows, {}, Xform::kNone});
        DG_RETURN_IF_ERROR(vec(g + "ssm_dt.bias", a + "dt_bias", Hv, Xform::kNone, head));
        DG_RETURN_IF_ERROR(vec(g + "ssm_a", a + "A_log", Hv, Xform::kNegExp, head));
        DG_RETURN_IF_ERROR(vec(g + "ssm_norm.weight", a + "norm.weight", dv, Xform::kNone));
        return absl::OkStatus();
    }

    const ModelSource& s_;
    const ModelConfig& c_;
    std::string type_;
    std::vector<Plan> plans_;
};

// Converts GGUF rows [r0, r1) of `p` into dst (row_bytes each).
void produce_rows(const Plan& p, int64_t r0, int64_t r1, uint64_t rb, uint8_t* dst) {
    const int64_t scols = p.src->cols(), cols = p.ne[0];
    std::vector<float> in(scols), out(cols);
    std::unordered_map<int64_t, int64_t> done;  // canonical source row -> GGUF row already converted
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t sr = p.src_row ? p.src_row(r) : r;
        if (p.src->canonical_row) {
            const int64_t key = p.src->canonical_row(sr);
            auto [it, fresh] = done.emplace(key, r);
            if (!fresh) {
                std::memcpy(dst + (r - r0) * rb, dst + (it->second - r0) * rb, rb);
                continue;
            }
        }
        if (p.ne.size() == 1) {  // a vector: the whole source is one row (or [1, n])
            p.src->read_rows(0, 1, in.data());
        } else {
            p.src->read_rows(sr, 1, in.data());
        }
        for (int64_t c = 0; c < cols; ++c) {
            float v = in[p.col_src.empty() ? c : p.col_src[c]];
            if (p.xform == Xform::kAddOne) v += 1.f;
            if (p.xform == Xform::kNegExp) v = -std::exp(v);
            out[c] = v;
        }
        quantize_row(p.type, out.data(), dst + (r - r0) * rb, cols);
    }
}

}  // namespace

absl::Status export_gguf(const ModelSource& src, const std::string& path, const GgufExportOptions& opt) {
    const ModelConfig& c = src.config;
    DG_RETURN_IF_ERROR(c.validate("export"));
    Planner planner(src, opt.type);
    DG_ASSIGN_OR_RETURN(std::vector<Plan> plans, planner.plan());

    GgufWriter w;
    const std::string& a = c.arch;
    auto k = [&](const char* key) { return absl::StrCat(a, ".", key); };
    w.set_string("general.architecture", a);
    w.set_string("general.name", opt.name);
    w.set_u32(k("block_count"), uint32_t(c.n_layers));
    w.set_u32(k("context_length"), uint32_t(c.max_context));
    w.set_u32(k("embedding_length"), uint32_t(c.hidden));
    w.set_u32(k("feed_forward_length"), uint32_t(c.intermediate));
    w.set_u32(k("attention.head_count"), uint32_t(c.n_heads));
    w.set_u32(k("attention.head_count_kv"), uint32_t(c.n_kv_heads));
    w.set_u32(k("attention.key_length"), uint32_t(c.head_dim));
    w.set_u32(k("attention.value_length"), uint32_t(c.head_dim));
    w.set_f32(k("attention.layer_norm_rms_epsilon"), c.rms_eps);
    w.set_f32(k("rope.freq_base"), c.rope_theta);
    w.set_u32(k("rope.dimension_count"), uint32_t(c.rotary_dim));
    const int32_t half = int32_t(c.rotary_dim / 2), s0 = (half + 2) / 3, s1 = (half + 1) / 3;
    w.set_i32_array(k("rope.dimension_sections"), {s0, s1, half - s0 - s1, 0});  // [11, 11, 10, 0] for rotary 64
    w.set_u32(k("ssm.conv_kernel"), uint32_t(c.conv_kernel));
    w.set_u32(k("ssm.state_size"), uint32_t(c.lin_k_dim));
    w.set_u32(k("ssm.group_count"), uint32_t(c.lin_k_heads));
    w.set_u32(k("ssm.time_step_rank"), uint32_t(c.lin_v_heads));
    w.set_u32(k("ssm.inner_size"), uint32_t(c.lin_v_heads * c.lin_v_dim));
    int64_t interval = 0;  // the GGUF carries only an interval: the layer pattern must be periodic
    for (int64_t i = 0; i < c.n_layers && !interval; ++i)
        if (c.is_attention[i]) interval = i + 1;
    for (int64_t i = 0; i < c.n_layers; ++i)
        if (interval == 0 || c.is_attention[i] != ((i + 1) % interval == 0))
            return absl::InvalidArgumentError("GGUF qwen35 needs full-attention layers every N layers (full_attention_interval)");
    w.set_u32(k("full_attention_interval"), uint32_t(interval));
    if (c.is_moe()) {
        w.set_u32(k("expert_count"), uint32_t(c.n_experts));
        w.set_u32(k("expert_used_count"), uint32_t(c.n_experts_used));
        w.set_u32(k("expert_feed_forward_length"), uint32_t(c.expert_intermediate));
        w.set_u32(k("expert_shared_feed_forward_length"), uint32_t(c.shared_intermediate));
    }
    if (opt.tokenizer) {
        DG_RETURN_IF_ERROR(tok::add_tokenizer_to_gguf(*opt.tokenizer, w, c.vocab_size));
    } else if (!c.eos_ids.empty()) {
        w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(c.eos_ids[0]));
    }

    for (const Plan& p : plans) {
        const Plan* pp = &p;
        auto progress = opt.progress;
        DG_RETURN_IF_ERROR(w.add_tensor(p.name, p.ne, p.type, [pp, progress](uint8_t* dst, uint64_t nbytes) {
            int64_t rows = 1;
            for (size_t d = 1; d < pp->ne.size(); ++d) rows *= pp->ne[d];
            const uint64_t rb = nbytes / uint64_t(rows);
            cpu::parallel_for(rows, [&](int64_t r0, int64_t r1) { produce_rows(*pp, r0, r1, rb, dst + r0 * rb); }, 64);
            if (progress) progress(absl::StrCat(pp->name, " ", dtype_info(pp->type).name, " ", nbytes, " bytes"));
        }));
    }
    return w.write(path);
}

}  // namespace dg
