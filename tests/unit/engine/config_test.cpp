// One config type from HF config.json (all four Qwen3.5 model types, flat or nested under text_config,
// legacy flat rope fields) and from GGUF metadata.
#include <gtest/gtest.h>

#include "engine/formats/gguf.h"
#include "engine/model_config.h"
#include "nlohmann/json.hpp"
#include "tests/unit/engine/fixtures.h"

namespace dg {
namespace {

nlohmann::json text_27b() {
    return nlohmann::json{{"model_type", "qwen3_5_text"}, {"vocab_size", 248320}, {"hidden_size", 5120},
                          {"num_hidden_layers", 64}, {"num_attention_heads", 24}, {"num_key_value_heads", 4},
                          {"head_dim", 256}, {"linear_num_key_heads", 16}, {"linear_num_value_heads", 48},
                          {"intermediate_size", 17408},
                          {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 1e7}, {"partial_rotary_factor", 0.25}}}};
}

TEST(ConfigTest, TextConfigOf27B) {
    auto c = config_from_hf_json(text_27b(), "t");
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->arch, "qwen35");
    EXPECT_EQ(c->rotary_dim, 64);
    EXPECT_EQ(c->n_attention_layers(), 16);
    EXPECT_TRUE(c->is_attention[3] && !c->is_attention[4] && c->is_attention[63]);
    EXPECT_EQ(c->conv_dim(), 10240);
    // docs/qwen35-model.md §2.7: a 27B sequence's state is 48 layers x (3 MiB S + 3*10240*4 B conv)
    EXPECT_EQ(c->state_bytes_per_seq(), 48 * (3 * 1024 * 1024 + 3 * 10240 * 4));
}

TEST(ConfigTest, VlmWrapperMoeAndLegacyRopeFields) {
    nlohmann::json t = text_27b();
    t["model_type"] = "qwen3_5_moe_text";
    t.erase("intermediate_size");
    t["num_experts"] = 256, t["num_experts_per_tok"] = 8, t["moe_intermediate_size"] = 512;
    t["shared_expert_intermediate_size"] = 512;
    t.erase("rope_parameters");
    t["rope_theta"] = 5e6, t["partial_rotary_factor"] = 0.5;  // older flat fields
    nlohmann::json top{{"model_type", "qwen3_5_moe"}, {"text_config", t}, {"tie_word_embeddings", true}};
    auto c = config_from_hf_json(top, "vlm");
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->arch, "qwen35moe");
    EXPECT_EQ(c->n_experts_used, 8);
    EXPECT_FLOAT_EQ(c->rope_theta, 5e6f);
    EXPECT_EQ(c->rotary_dim, 128);
    EXPECT_TRUE(c->tied_embeddings);  // the wrapper's flag counts too
}

TEST(ConfigTest, InconsistentConfigsAreClearErrors) {
    nlohmann::json t = text_27b();
    t["num_experts"] = 8;  // experts in a dense model type
    EXPECT_NE(std::string(config_from_hf_json(t, "x").status().message()).find("num_experts"), std::string::npos);
    t = text_27b();
    t["rope_parameters"]["rope_type"] = "yarn";
    EXPECT_NE(std::string(config_from_hf_json(t, "x").status().message()).find("rope_type 'yarn'"), std::string::npos);
    t = text_27b();
    t["layer_types"] = {"linear_attention"};
    EXPECT_NE(std::string(config_from_hf_json(t, "x").status().message()).find("layer_types"), std::string::npos);
    t = text_27b();
    t["linear_num_value_heads"] = 20;  // not a multiple of 16 key heads
    EXPECT_FALSE(config_from_hf_json(t, "x").ok());
}

// The GGUF written by the reference's converter describes the same model as the HF config.
TEST(ConfigTest, GgufAndHfConfigsAgree) {
    for (const char* name : {"dense", "moe", "tied_vlm"}) {
        auto g = GgufFile::open(testing::fixture_dir(name) + "/model-f16.gguf");
        ASSERT_TRUE(g.ok()) << g.status();
        auto a = config_from_gguf(**g);
        auto b = config_from_hf_file(testing::fixture_dir(name) + "/hf/config.json");
        ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
        EXPECT_EQ(a->arch, b->arch);
        EXPECT_EQ(a->is_attention, b->is_attention);
        EXPECT_EQ(a->tied_embeddings, b->tied_embeddings) << name;
        for (auto [x, y] : {std::pair{a->vocab_size, b->vocab_size}, {a->hidden, b->hidden}, {a->n_heads, b->n_heads},
                            {a->n_kv_heads, b->n_kv_heads}, {a->head_dim, b->head_dim}, {a->rotary_dim, b->rotary_dim},
                            {a->lin_k_heads, b->lin_k_heads}, {a->lin_v_heads, b->lin_v_heads},
                            {a->lin_v_dim, b->lin_v_dim}, {a->intermediate, b->intermediate},
                            {a->n_experts, b->n_experts}, {a->expert_intermediate, b->expert_intermediate}})
            EXPECT_EQ(x, y) << name;
        EXPECT_FLOAT_EQ(a->rope_theta, b->rope_theta);
    }
}

}  // namespace
}  // namespace dg
