#include "engine/model_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "engine/formats/gguf.h"
#include "engine/sample_mass.h"
#include "engine/status.h"
#include "nlohmann/json.hpp"

namespace dg {

int64_t ModelConfig::n_attention_layers() const {
    int64_t n = 0;
    for (bool a : is_attention) n += a;
    return n;
}
int64_t ModelConfig::n_gdn_layers() const { return n_layers - n_attention_layers(); }

int64_t ModelConfig::state_bytes_per_seq() const {
    int64_t per_layer = (conv_kernel - 1) * conv_dim() + lin_v_heads * lin_k_dim * lin_v_dim;
    return n_gdn_layers() * per_layer * int64_t(sizeof(float));
}

absl::Status ModelConfig::validate(const std::string& source) const {
    auto bad = [&](const std::string& field, const std::string& why) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": ", field, ": ", why));
    };
    auto pos = [&](int64_t v, const char* field, int64_t max = int64_t(1) << 24) -> absl::Status {
        if (v <= 0 || v > max) return bad(field, absl::StrCat("must be in [1, ", max, "], got ", v));
        return absl::OkStatus();
    };
    // The sampler's integer weights sum below 2^63 up to kSampleMaxVocab tokens (engine/sample_mass.h).
    DG_RETURN_IF_ERROR(pos(vocab_size, "vocab_size", kSampleMaxVocab));
    DG_RETURN_IF_ERROR(pos(hidden, "hidden_size", 65536));
    DG_RETURN_IF_ERROR(pos(n_layers, "num_hidden_layers", 1024));
    if (int64_t(is_attention.size()) != n_layers) return bad("layer_types", "length differs from num_hidden_layers");
    if (n_attention_layers() > 0) {
        DG_RETURN_IF_ERROR(pos(n_heads, "num_attention_heads", 1024));
        DG_RETURN_IF_ERROR(pos(n_kv_heads, "num_key_value_heads", 1024));
        DG_RETURN_IF_ERROR(pos(head_dim, "head_dim", 1024));
        if (n_heads % n_kv_heads) return bad("num_attention_heads", "not a multiple of num_key_value_heads");
        if (rotary_dim < 0 || rotary_dim > head_dim || rotary_dim % 2)
            return bad("partial_rotary_factor", absl::StrCat("rotary dim ", rotary_dim, " invalid for head_dim ", head_dim));
        if (!(rope_theta > 0)) return bad("rope_theta", "must be positive");
    }
    if (n_gdn_layers() > 0) {
        DG_RETURN_IF_ERROR(pos(lin_k_heads, "linear_num_key_heads", 1024));
        DG_RETURN_IF_ERROR(pos(lin_v_heads, "linear_num_value_heads", 1024));
        DG_RETURN_IF_ERROR(pos(lin_k_dim, "linear_key_head_dim", 1024));
        DG_RETURN_IF_ERROR(pos(lin_v_dim, "linear_value_head_dim", 1024));
        DG_RETURN_IF_ERROR(pos(conv_kernel, "linear_conv_kernel_dim", 64));
        if (lin_v_heads % lin_k_heads) return bad("linear_num_value_heads", "not a multiple of linear_num_key_heads");
    }
    if (is_moe()) {
        DG_RETURN_IF_ERROR(pos(n_experts, "num_experts", 4096));
        DG_RETURN_IF_ERROR(pos(n_experts_used, "num_experts_per_tok", n_experts));
        DG_RETURN_IF_ERROR(pos(expert_intermediate, "moe_intermediate_size", 1 << 20));
        DG_RETURN_IF_ERROR(pos(shared_intermediate, "shared_expert_intermediate_size", 1 << 20));
    } else {
        DG_RETURN_IF_ERROR(pos(intermediate, "intermediate_size", 1 << 20));
    }
    if (!(rms_eps > 0 && rms_eps < 1)) return bad("rms_norm_eps", "must be in (0, 1)");
    return absl::OkStatus();
}

namespace {

// Reads a field with a clear error when it is missing or of the wrong JSON type.
template <typename T>
absl::StatusOr<T> field(const nlohmann::json& t, const char* key, const std::string& source) {
    auto it = t.find(key);
    if (it == t.end() || it->is_null()) return absl::InvalidArgumentError(absl::StrCat(source, ": missing '", key, "'"));
    try {
        return it->get<T>();
    } catch (const std::exception& e) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": '", key, "' has the wrong type: ", e.what()));
    }
}
template <typename T>
absl::StatusOr<T> field_or(const nlohmann::json& t, const char* key, T dflt, const std::string& source) {
    auto it = t.find(key);
    if (it == t.end() || it->is_null()) return dflt;
    return field<T>(t, key, source);
}

}  // namespace

absl::StatusOr<ModelConfig> config_from_hf_json(const nlohmann::json& j, const std::string& source) {
    if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
    const nlohmann::json& t = j.contains("text_config") && j["text_config"].is_object() ? j["text_config"] : j;
    std::string mt = t.value("model_type", j.value("model_type", std::string()));
    if (mt != "qwen3_5" && mt != "qwen3_5_text" && mt != "qwen3_5_moe" && mt != "qwen3_5_moe_text")
        return absl::InvalidArgumentError(absl::StrCat(source, ": model_type '", mt,
                                                       "' is not a Qwen3.5 text model (qwen3_5[_moe][_text])"));
    ModelConfig c;
    DG_ASSIGN_OR_RETURN(c.vocab_size, field<int64_t>(t, "vocab_size", source));
    DG_ASSIGN_OR_RETURN(c.hidden, field<int64_t>(t, "hidden_size", source));
    DG_ASSIGN_OR_RETURN(c.n_layers, field<int64_t>(t, "num_hidden_layers", source));
    DG_ASSIGN_OR_RETURN(c.n_heads, field<int64_t>(t, "num_attention_heads", source));
    DG_ASSIGN_OR_RETURN(c.n_kv_heads, field<int64_t>(t, "num_key_value_heads", source));
    DG_ASSIGN_OR_RETURN(c.head_dim, field_or<int64_t>(t, "head_dim", 256, source));
    DG_ASSIGN_OR_RETURN(double eps, field_or<double>(t, "rms_norm_eps", 1e-6, source));
    c.rms_eps = float(eps);
    DG_ASSIGN_OR_RETURN(c.max_context, field_or<int64_t>(t, "max_position_embeddings", 262144, source));
    DG_ASSIGN_OR_RETURN(c.conv_kernel, field_or<int64_t>(t, "linear_conv_kernel_dim", 4, source));
    DG_ASSIGN_OR_RETURN(c.lin_k_heads, field_or<int64_t>(t, "linear_num_key_heads", 16, source));
    DG_ASSIGN_OR_RETURN(c.lin_v_heads, field_or<int64_t>(t, "linear_num_value_heads", 32, source));
    DG_ASSIGN_OR_RETURN(c.lin_k_dim, field_or<int64_t>(t, "linear_key_head_dim", 128, source));
    DG_ASSIGN_OR_RETURN(c.lin_v_dim, field_or<int64_t>(t, "linear_value_head_dim", 128, source));
    if (t.value("hidden_act", std::string("silu")) != "silu")
        return absl::InvalidArgumentError(absl::StrCat(source, ": hidden_act must be silu"));
    if (t.value("attention_bias", false))
        return absl::InvalidArgumentError(absl::StrCat(source, ": attention_bias=true is not a Qwen3.5 model"));

    if (c.n_layers <= 0 || c.n_layers > 1024)
        return absl::InvalidArgumentError(absl::StrCat(source, ": num_hidden_layers out of range"));
    if (t.contains("layer_types") && !t["layer_types"].is_null()) {
        DG_ASSIGN_OR_RETURN(auto lt, field<std::vector<std::string>>(t, "layer_types", source));
        if (int64_t(lt.size()) < c.n_layers)
            return absl::InvalidArgumentError(absl::StrCat(source, ": layer_types has ", lt.size(),
                                                           " entries for ", c.n_layers, " layers"));
        for (int64_t i = 0; i < c.n_layers; ++i) {
            if (lt[i] != "linear_attention" && lt[i] != "full_attention")
                return absl::InvalidArgumentError(absl::StrCat(source, ": layer_types[", i, "] = '", lt[i], "'"));
            c.is_attention.push_back(lt[i] == "full_attention");
        }
    } else {
        DG_ASSIGN_OR_RETURN(int64_t interval, field_or<int64_t>(t, "full_attention_interval", 4, source));
        if (interval <= 0) return absl::InvalidArgumentError(absl::StrCat(source, ": full_attention_interval <= 0"));
        for (int64_t i = 0; i < c.n_layers; ++i) c.is_attention.push_back((i + 1) % interval == 0);
    }

    nlohmann::json rp = nlohmann::json::object();
    if (t.contains("rope_parameters") && t["rope_parameters"].is_object()) rp = t["rope_parameters"];
    else if (t.contains("rope_scaling") && t["rope_scaling"].is_object()) rp = t["rope_scaling"];
    std::string rope_type = rp.value("rope_type", rp.value("type", std::string("default")));
    if (rope_type != "default")
        return absl::InvalidArgumentError(absl::StrCat(source, ": rope_type '", rope_type, "' is not supported"));
    DG_ASSIGN_OR_RETURN(double theta, field_or<double>(t, "rope_theta", 10000.0, source));
    DG_ASSIGN_OR_RETURN(double prf, field_or<double>(t, "partial_rotary_factor", 0.25, source));
    DG_ASSIGN_OR_RETURN(theta, field_or<double>(rp, "rope_theta", theta, source));
    DG_ASSIGN_OR_RETURN(prf, field_or<double>(rp, "partial_rotary_factor", prf, source));
    c.rope_theta = float(theta);
    c.rotary_dim = int64_t(double(c.head_dim) * prf);

    DG_ASSIGN_OR_RETURN(c.n_experts, field_or<int64_t>(t, "num_experts", 0, source));
    bool moe_type = mt.find("moe") != std::string::npos;
    if (moe_type != (c.n_experts > 0))
        return absl::InvalidArgumentError(absl::StrCat(source, ": model_type '", mt, "' but num_experts = ", c.n_experts));
    if (c.is_moe()) {
        c.arch = "qwen35moe";
        DG_ASSIGN_OR_RETURN(c.n_experts_used, field<int64_t>(t, "num_experts_per_tok", source));
        DG_ASSIGN_OR_RETURN(c.expert_intermediate, field<int64_t>(t, "moe_intermediate_size", source));
        DG_ASSIGN_OR_RETURN(c.shared_intermediate, field<int64_t>(t, "shared_expert_intermediate_size", source));
    } else {
        c.arch = "qwen35";
        DG_ASSIGN_OR_RETURN(c.intermediate, field<int64_t>(t, "intermediate_size", source));
    }
    c.tied_embeddings = t.value("tie_word_embeddings", false) || j.value("tie_word_embeddings", false);
    for (const auto* src : {&t, &j}) {
        auto it = src->find("eos_token_id");
        if (it == src->end() || !c.eos_ids.empty()) continue;
        if (it->is_number_integer()) c.eos_ids.push_back(it->get<int32_t>());
        else if (it->is_array())
            for (const auto& e : *it)
                if (e.is_number_integer()) c.eos_ids.push_back(e.get<int32_t>());
    }
    DG_RETURN_IF_ERROR(c.validate(source));
    return c;
}

absl::StatusOr<ModelConfig> config_from_hf_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
    return config_from_hf_json(j, path);
}

absl::StatusOr<ModelConfig> config_from_gguf(const GgufFile& f) {
    const std::string& src = f.path();
    DG_ASSIGN_OR_RETURN(std::string arch, f.get_string("general.architecture"));
    if (arch != "qwen35" && arch != "qwen35moe")
        return absl::InvalidArgumentError(absl::StrCat(src, ": general.architecture '", arch,
                                                       "' is not qwen35 or qwen35moe"));
    ModelConfig c;
    c.arch = arch;
    auto key = [&](const char* k) { return absl::StrCat(arch, ".", k); };
    auto req = [&](const char* k) -> absl::StatusOr<int64_t> {
        auto v = f.get_int(key(k));
        if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat(src, ": metadata '", key(k), "': ", v.status().message()));
        return *v;
    };
    auto opt = [&](const char* k, int64_t dflt) -> absl::StatusOr<int64_t> {
        if (!f.find(key(k))) return dflt;
        return req(k);
    };
    DG_ASSIGN_OR_RETURN(int64_t blocks, req("block_count"));
    DG_ASSIGN_OR_RETURN(int64_t nextn, opt("nextn_predict_layers", 0));
    c.n_layers = blocks - nextn;
    DG_ASSIGN_OR_RETURN(c.hidden, req("embedding_length"));
    DG_ASSIGN_OR_RETURN(c.max_context, opt("context_length", 262144));
    DG_ASSIGN_OR_RETURN(c.n_heads, req("attention.head_count"));
    DG_ASSIGN_OR_RETURN(c.n_kv_heads, req("attention.head_count_kv"));
    DG_ASSIGN_OR_RETURN(c.head_dim, req("attention.key_length"));
    DG_ASSIGN_OR_RETURN(c.rotary_dim, req("rope.dimension_count"));
    if (f.find(key("rope.freq_base"))) {
        DG_ASSIGN_OR_RETURN(double theta, f.get_float(key("rope.freq_base")));
        c.rope_theta = float(theta);
    }
    if (f.find(key("attention.layer_norm_rms_epsilon"))) {
        DG_ASSIGN_OR_RETURN(double eps, f.get_float(key("attention.layer_norm_rms_epsilon")));
        c.rms_eps = float(eps);
    }
    DG_ASSIGN_OR_RETURN(c.conv_kernel, req("ssm.conv_kernel"));
    DG_ASSIGN_OR_RETURN(c.lin_k_dim, req("ssm.state_size"));
    DG_ASSIGN_OR_RETURN(c.lin_k_heads, req("ssm.group_count"));
    DG_ASSIGN_OR_RETURN(c.lin_v_heads, req("ssm.time_step_rank"));
    DG_ASSIGN_OR_RETURN(int64_t inner, req("ssm.inner_size"));
    if (c.lin_v_heads <= 0 || inner % c.lin_v_heads)
        return absl::InvalidArgumentError(absl::StrCat(src, ": ", key("ssm.inner_size"), " is not a multiple of ",
                                                       key("ssm.time_step_rank")));
    c.lin_v_dim = inner / c.lin_v_heads;
    DG_ASSIGN_OR_RETURN(int64_t interval, opt("full_attention_interval", 4));
    if (interval <= 0) return absl::InvalidArgumentError(absl::StrCat(src, ": full_attention_interval <= 0"));
    if (c.n_layers <= 0 || c.n_layers > 1024)
        return absl::InvalidArgumentError(absl::StrCat(src, ": block_count out of range"));
    for (int64_t i = 0; i < c.n_layers; ++i) c.is_attention.push_back((i + 1) % interval == 0);
    if (arch == "qwen35moe") {
        DG_ASSIGN_OR_RETURN(c.n_experts, req("expert_count"));
        DG_ASSIGN_OR_RETURN(c.n_experts_used, req("expert_used_count"));
        DG_ASSIGN_OR_RETURN(c.expert_intermediate, req("expert_feed_forward_length"));
        DG_ASSIGN_OR_RETURN(c.shared_intermediate, req("expert_shared_feed_forward_length"));
    } else {
        DG_ASSIGN_OR_RETURN(c.intermediate, req("feed_forward_length"));
    }
    const GgufTensor* emb = f.find_tensor("token_embd.weight");
    if (!emb || emb->ne.size() != 2)
        return absl::InvalidArgumentError(absl::StrCat(src, ": tensor 'token_embd.weight' missing or not 2-D"));
    c.vocab_size = emb->ne[1];
    c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
    if (f.find("tokenizer.ggml.eos_token_id")) {
        DG_ASSIGN_OR_RETURN(int64_t eos, f.get_int("tokenizer.ggml.eos_token_id"));
        c.eos_ids.push_back(int32_t(eos));
    }
    DG_RETURN_IF_ERROR(c.validate(src));
    return c;
}

nlohmann::json config_to_hf_json(const ModelConfig& c) {
    nlohmann::json j;
    bool moe = c.is_moe();
    j["architectures"] = {moe ? "Qwen3_5MoeForCausalLM" : "Qwen3_5ForCausalLM"};
    j["model_type"] = moe ? "qwen3_5_moe_text" : "qwen3_5_text";
    j["vocab_size"] = c.vocab_size;
    j["hidden_size"] = c.hidden;
    j["num_hidden_layers"] = c.n_layers;
    j["num_attention_heads"] = c.n_heads;
    j["num_key_value_heads"] = c.n_kv_heads;
    j["head_dim"] = c.head_dim;
    j["hidden_act"] = "silu";
    j["max_position_embeddings"] = c.max_context;
    j["rms_norm_eps"] = c.rms_eps;
    j["tie_word_embeddings"] = c.tied_embeddings;
    j["attention_bias"] = false;
    j["attn_output_gate"] = true;
    j["linear_conv_kernel_dim"] = c.conv_kernel;
    j["linear_key_head_dim"] = c.lin_k_dim;
    j["linear_value_head_dim"] = c.lin_v_dim;
    j["linear_num_key_heads"] = c.lin_k_heads;
    j["linear_num_value_heads"] = c.lin_v_heads;
    std::vector<std::string> lt;
    for (bool a : c.is_attention) lt.push_back(a ? "full_attention" : "linear_attention");
    j["layer_types"] = lt;
    j["full_attention_interval"] = 4;
    const int64_t half = c.rotary_dim / 2, s0 = (half + 2) / 3, s1 = (half + 1) / 3;  // [11, 11, 10] for 64
    j["rope_parameters"] = {{"rope_type", "default"},
                            {"rope_theta", c.rope_theta},
                            {"partial_rotary_factor", c.head_dim ? double(c.rotary_dim) / double(c.head_dim) : 0.25},
                            {"mrope_section", {s0, s1, half - s0 - s1}},
                            {"mrope_interleaved", true}};
    j["mamba_ssm_dtype"] = "float32";
    j["mtp_num_hidden_layers"] = 0;
    if (!c.eos_ids.empty()) j["eos_token_id"] = c.eos_ids.size() == 1 ? nlohmann::json(c.eos_ids[0]) : nlohmann::json(c.eos_ids);
    if (moe) {
        j["num_experts"] = c.n_experts;
        j["num_experts_per_tok"] = c.n_experts_used;
        j["moe_intermediate_size"] = c.expert_intermediate;
        j["shared_expert_intermediate_size"] = c.shared_intermediate;
    } else {
        j["intermediate_size"] = c.intermediate;
    }
    return j;
}

}  // namespace dg
