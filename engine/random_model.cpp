// Deterministic random Qwen3.5 weights and the named shape presets (docs/qwen35-model.md §1.3).
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/model_source.h"

namespace dg {
namespace {

uint64_t splitmix64(uint64_t& s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t hash_str(const std::string& s, uint64_t h) {
    for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;  // FNV-1a
    return h;
}

// Row-wise generators: the seed of row r depends only on (model seed, tensor name, r), so any row
// range can be produced independently and in parallel.
enum class Dist { kNormal, kUniform, kLogUniform };
struct RowGen {
    uint64_t base;
    Dist dist;
    float a, b;   // normal: std = a, mean = b; uniform: [a, b); log-uniform: log(U[a, b))
    int64_t pool;
    int64_t canonical(int64_t r) const {
        if (pool <= 0) return r;
        uint64_t h = uint64_t(r) * 0x9E3779B97F4A7C15ull;
        return int64_t((h ^ (h >> 29)) % uint64_t(pool));
    }
    void operator()(int64_t row0, int64_t n, int64_t cols, float* out) const {
        for (int64_t i = 0; i < n; ++i) {
            const int64_t r = canonical(row0 + i);
            uint64_t s = base ^ (uint64_t(r) * 0xD1B54A32D192ED03ull);
            float* o = out + i * cols;
            for (int64_t c = 0; c < cols; c += 2) {
                const double u1 = (double(splitmix64(s) >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
                const double u2 = double(splitmix64(s) >> 11) * 0x1.0p-53;
                double x0, x1;
                if (dist == Dist::kNormal) {
                    const double rad = std::sqrt(-2.0 * std::log(u1)), th = 2.0 * M_PI * u2;
                    x0 = b + a * rad * std::cos(th);
                    x1 = b + a * rad * std::sin(th);
                } else {
                    x0 = a + (b - a) * u1;
                    x1 = a + (b - a) * u2;
                    if (dist == Dist::kLogUniform) x0 = std::log(x0), x1 = std::log(x1);
                }
                o[c] = float(x0);
                if (c + 1 < cols) o[c + 1] = float(x1);
            }
        }
    }
};

// Gains as in the reference generator: small residual-branch outputs keep the random net from being
// chaotic; a larger lm_head gives logits a spread of a few units.
constexpr float kEmbed = 6.f, kEmbedTied = 2.f, kProj = 1.f, kOut = 0.3f, kAttnOut = 0.8f, kLmHead = 4.f,
                kConv = 0.5f, kNorm = 0.1f, kRouter = 2.f;

}  // namespace

ModelSource random_model(const ModelConfig& c, uint64_t seed, int64_t row_pool) {
    ModelSource m;
    m.config = c;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, Dist d, float a, float b, bool pooled) {
        RowGen g{hash_str(name, 0xCBF29CE484222325ull ^ seed), d, a, b, pooled ? row_pool : 0};
        const int64_t cols = shape.back();
        TensorSource t{shape, [g, cols](int64_t r0, int64_t n, float* out) { g(r0, n, cols, out); }, nullptr};
        if (g.pool > 0) t.canonical_row = [g](int64_t r) { return g.canonical(r); };
        m.tensors[name] = std::move(t);
    };
    auto lin = [&](const std::string& name, int64_t out, int64_t in, float gain) {
        add(name, {out, in}, Dist::kNormal, gain / std::sqrt(float(in)), 0.f, true);
    };
    auto znorm = [&](const std::string& name, int64_t n) { add(name, {n}, Dist::kNormal, kNorm, 0.f, false); };
    const int64_t H = c.hidden, V = c.vocab_size;
    add("model.embed_tokens.weight", {V, H}, Dist::kNormal, (c.tied_embeddings ? kEmbedTied : kEmbed) / std::sqrt(float(H)),
        0.f, true);
    for (int64_t i = 0; i < c.n_layers; ++i) {
        const std::string p = absl::StrCat("model.layers.", i, ".");
        znorm(p + "input_layernorm.weight", H);
        znorm(p + "post_attention_layernorm.weight", H);
        if (c.is_attention[i]) {
            const std::string a = p + "self_attn.";
            lin(a + "q_proj.weight", 2 * c.n_heads * c.head_dim, H, kProj);
            lin(a + "k_proj.weight", c.n_kv_heads * c.head_dim, H, kProj);
            lin(a + "v_proj.weight", c.n_kv_heads * c.head_dim, H, kProj);
            lin(a + "o_proj.weight", H, c.n_heads * c.head_dim, kAttnOut);
            znorm(a + "q_norm.weight", c.head_dim);
            znorm(a + "k_norm.weight", c.head_dim);
        } else {
            const std::string a = p + "linear_attn.";
            const int64_t Hv = c.lin_v_heads, vd = Hv * c.lin_v_dim;
            lin(a + "in_proj_qkv.weight", c.conv_dim(), H, kProj);
            lin(a + "in_proj_z.weight", vd, H, kProj);
            lin(a + "in_proj_b.weight", Hv, H, kProj);
            lin(a + "in_proj_a.weight", Hv, H, kProj);
            add(a + "conv1d.weight", {c.conv_dim(), 1, c.conv_kernel}, Dist::kNormal, kConv, 0.f, false);
            add(a + "dt_bias", {Hv}, Dist::kUniform, -4.f, 0.f, false);
            add(a + "A_log", {Hv}, Dist::kLogUniform, 1.f, 16.f, false);
            add(a + "norm.weight", {c.lin_v_dim}, Dist::kNormal, 0.1f, 1.f, false);
            lin(a + "out_proj.weight", H, vd, kOut);
        }
        const std::string mlp = p + "mlp.";
        if (c.is_moe()) {
            const int64_t E = c.n_experts, I = c.expert_intermediate, Is = c.shared_intermediate;
            lin(mlp + "gate.weight", E, H, kRouter);
            add(mlp + "experts.gate_up_proj", {E, 2 * I, H}, Dist::kNormal, kProj / std::sqrt(float(H)), 0.f, true);
            add(mlp + "experts.down_proj", {E, H, I}, Dist::kNormal, kOut / std::sqrt(float(I)), 0.f, true);
            lin(mlp + "shared_expert.gate_proj.weight", Is, H, kProj);
            lin(mlp + "shared_expert.up_proj.weight", Is, H, kProj);
            lin(mlp + "shared_expert.down_proj.weight", H, Is, kOut);
            lin(mlp + "shared_expert_gate.weight", 1, H, kProj);
        } else {
            lin(mlp + "gate_proj.weight", c.intermediate, H, kProj);
            lin(mlp + "up_proj.weight", c.intermediate, H, kProj);
            lin(mlp + "down_proj.weight", H, c.intermediate, kOut);
        }
    }
    znorm("model.norm.weight", H);
    if (!c.tied_embeddings) lin("lm_head.weight", V, H, kLmHead);
    return m;
}

namespace {

ModelConfig shape(const char* arch, int64_t vocab, int64_t hidden, int64_t layers, int64_t hq, int64_t hkv,
                  int64_t hd, int64_t hk, int64_t hv, int64_t dkv, int64_t inter, bool tied) {
    ModelConfig c;
    c.arch = arch;
    c.vocab_size = vocab;
    c.hidden = hidden;
    c.n_layers = layers;
    for (int64_t i = 0; i < layers; ++i) c.is_attention.push_back((i + 1) % 4 == 0);
    c.n_heads = hq;
    c.n_kv_heads = hkv;
    c.head_dim = hd;
    c.rotary_dim = hd / 4;
    c.rope_theta = 1e7f;
    c.lin_k_heads = hk;
    c.lin_v_heads = hv;
    c.lin_k_dim = c.lin_v_dim = dkv;
    c.intermediate = inter;
    c.tied_embeddings = tied;
    c.max_context = 262144;
    c.eos_ids = {int32_t(vocab - 1)};
    return c;
}

}  // namespace

std::vector<std::string> preset_names() { return {"tiny", "tiny-moe", "tiny-text", "0.8b", "27b", "35b-a3b"}; }

absl::StatusOr<ModelConfig> preset_config(const std::string& name) {
    ModelConfig c;
    if (name == "tiny") {  // 27B's head ratios (6:1 q/kv, 1:3 linear K/V) at real head sizes
        c = shape("qwen35", 1024, 256, 8, 12, 2, 256, 4, 12, 128, 768, false);
        c.max_context = 32768;
    } else if (name == "tiny-text") {  // "tiny" with a Qwen3 tokenizer's embedding rows (tied), for text tests
        c = shape("qwen35", 151936, 256, 8, 12, 2, 256, 4, 12, 128, 768, true);
        c.max_context = 32768;
        c.eos_ids = {151645, 151643};  // <|im_end|>, <|endoftext|> in the Qwen3 vocabulary
    } else if (name == "tiny-moe") {  // 35B-A3B's ratios
        c = shape("qwen35moe", 1024, 256, 8, 16, 2, 256, 4, 8, 128, 0, false);
        c.n_experts = 16, c.n_experts_used = 4, c.expert_intermediate = 64, c.shared_intermediate = 96;
        c.max_context = 32768;
    } else if (name == "0.8b") {
        c = shape("qwen35", 248320, 1024, 24, 8, 2, 256, 16, 16, 128, 3584, true);
    } else if (name == "27b") {
        c = shape("qwen35", 248320, 5120, 64, 24, 4, 256, 16, 48, 128, 17408, false);
    } else if (name == "35b-a3b") {
        c = shape("qwen35moe", 248320, 2048, 40, 16, 2, 256, 16, 32, 128, 0, false);
        c.n_experts = 256, c.n_experts_used = 8, c.expert_intermediate = 512, c.shared_intermediate = 512;
    } else {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown preset '", name, "' (", absl::StrJoin(preset_names(), ", "), ")"));
    }
    if (c.vocab_size == 248320) c.eos_ids = {248046, 248044};  // <|im_end|>, <|endoftext|>
    return c;
}

}  // namespace dg
