// The worker's memory planner (engine/memory_plan.h): real 27B and 35B-A3B shapes on an 80 GiB device,
// every expected figure worked out here from the model's dimensions (not read back from the planner),
// flags that oversubscribe, too little memory, the utilization fraction, the CPU (host RAM) target, and
// a property test that a successful plan never exceeds its budget.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "engine/memory_plan.h"
#include "engine/model_source.h"

namespace dg {
namespace {

// DG_PRINT_PLAN=1 prints the tables (the figures quoted in docs/worker.md).
void maybe_print(const MemoryPlan& p) {
    if (std::getenv("DG_PRINT_PLAN")) std::printf("%s\n", p.table().c_str());
}

constexpr int64_t kGiB = int64_t(1) << 30;
constexpr int64_t kMiB = int64_t(1) << 20;

ModelConfig preset(const std::string& name) {
    auto c = preset_config(name);
    EXPECT_TRUE(c.ok()) << c.status();
    return *c;
}

// An H100-like 80 GiB device with half a GiB taken by the CUDA context; f16 KV, 16-token blocks,
// 256-token steps, 8 running + 8 spare slots, full 262,144-token context.
MemoryPlanInput h100(const ModelConfig& c, int64_t weights_bytes) {
    MemoryPlanInput in;
    in.config = c;
    in.target = MemoryTarget::kCudaDevice;
    in.device_total_bytes = 80 * kGiB;
    in.device_free_bytes = 80 * kGiB - kGiB / 2;
    in.utilization = 0.9;
    in.weights_bytes = weights_bytes;
    in.reserve_bytes = 512 * kMiB;
    in.kv_type = DType::F16;
    in.block_tokens = 16;
    in.token_budget = 256;
    in.max_running = 8;
    in.spare_slots = 8;
    in.kv_blocks = 0;  // from memory
    return in;
}

// Budget of h100(): floor(0.9 × 80 GiB) = 77,309,411,328 bytes (< 79.5 GiB free).
constexpr int64_t kH100Budget = 77309411328;

// Attention's decode partials (floats) for d decode sequences: d × Hq × splits × (hd + 2), the split
// count min(64, ceil(512 blocks / (d × Hkv))) (groups of at most 8 heads, as every preset's).
int64_t decode_partials(int64_t d, int64_t Hq, int64_t Hkv, int64_t hd) {
    const int64_t splits = std::min<int64_t>(64, (512 + d * Hkv - 1) / (d * Hkv));
    return d * Hq * splits * (hd + 2);
}
// The device sampler's bytes per sampled row at Qwen3.5's vocabulary (248,320, next power of two 262,144)
// and context L: f32 penalised logits, u64 sort keys over 2^18, f64 probabilities, 8-byte penalty
// entries for up to min(L, V) distinct history tokens, 256 bytes of descriptor and result.
int64_t sampler_row(int64_t L) { return 4 * 248320 + 8 * 262144 + 8 * 248320 + 8 * std::min<int64_t>(L, 248320) + 256; }

// The CUDA workspace of the 27B shape, written out from its dimensions (H 5,120, V 248,320, Hq 24,
// Hkv 4, hd 256, Hv 48, dv 128, conv_dim 10,240, I 17,408) for n-token steps, `mr` running sequences,
// context L and 16-token blocks: docs/worker.md "Memory plan". No term grows with L × n any more (the
// attention kernels keep no score buffer); the growable buffers count twice.
int64_t workspace_27b_cuda(int64_t n, int64_t mr, int64_t L) {
    const int64_t per_token = 3 * 5120 + std::max<int64_t>(10240, 2 * 24 * 256) + std::max<int64_t>(48 * 128, 4 * 256) +
                              4 * 256 + 2 * 48 + std::max<int64_t>(48 * 128, 24 * 256) + 2 * 17408;
    const int64_t rows = std::min(mr, n);
    int64_t partials = 0;
    for (int64_t d = 1; d <= rows; ++d) partials = std::max(partials, decode_partials(d, 24, 4, 256));
    const int64_t scratch_floats = 2 * n * 48;
    const int64_t ids = n + std::max(n, rows) + 6 * rows + mr * ((L + 15) / 16);
    return 4 * n * per_token + 4 * rows * (5120 + 248320) + 2 * 4 * (scratch_floats + ids) + 2 * 4 * partials +
           2 * rows * sampler_row(L);
}

TEST(MemoryPlan, BlockAndSlotBytesOf27B) {
    const ModelConfig c = preset("27b");
    // 16 attention layers × (K + V) × 16 tokens × 4 KV heads × 256 f16 values (512 B) = 1 MiB.
    EXPECT_EQ(*kv_block_bytes(c, DType::F16, 16), 16 * 2 * 16 * 4 * 512);
    EXPECT_EQ(*kv_block_bytes(c, DType::F16, 16), kMiB);
    // q8_0: 256 values = 8 blocks of 34 bytes; q4_0: 8 blocks of 18 bytes (docs/performance-anchors: 34/18 KiB per token).
    EXPECT_EQ(*kv_block_bytes(c, DType::Q8_0, 16), 16 * 2 * 16 * 4 * 272);
    EXPECT_EQ(*kv_block_bytes(c, DType::Q4_0, 16), 16 * 2 * 16 * 4 * 144);
    // 48 GDN layers × (3 × conv_dim 10,240 + 48 heads × 128 × 128) fp32 = 156,893,184 B (149.6 MiB).
    EXPECT_EQ(state_slot_bytes(c), int64_t(48) * (3 * 10240 + 48 * 128 * 128) * 4);
    EXPECT_EQ(state_slot_bytes(c), 156893184);
    EXPECT_EQ(state_slot_bytes(c), c.state_bytes_per_seq());
}

TEST(MemoryPlan, BlockAndSlotBytesOf35BA3B) {
    const ModelConfig c = preset("35b-a3b");
    // 10 attention layers × 2 × 16 tokens × 2 KV heads × 512 B.
    EXPECT_EQ(*kv_block_bytes(c, DType::F16, 16), 10 * 2 * 16 * 2 * 512);
    // 30 GDN layers × (3 × conv_dim 8,192 + 32 × 128 × 128) × 4.
    EXPECT_EQ(state_slot_bytes(c), int64_t(30) * (3 * 8192 + 32 * 128 * 128) * 4);
    EXPECT_EQ(state_slot_bytes(c), 65863680);
}

TEST(MemoryPlan, WorkspaceOf27BOnCuda) {
    const ModelConfig c = preset("27b");
    const WorkspaceEstimate w = estimate_workspace(c, MemoryTarget::kCudaDevice, 256, 8, 262144, 16);
    // Per token: 3H 15,360 + max(conv 10,240, 2·Hq·hd 12,288) + max(Hv·dv 6,144, Hkv·hd 1,024) + 1,024
    //            + 2·Hv 96 + max(6,144, Hq·hd 6,144) + 2·I 34,816 = 75,872 floats.
    EXPECT_EQ(w.activations, int64_t(4) * 256 * (15360 + 12288 + 6144 + 1024 + 96 + 6144 + 34816));
    // 8 logit rows × (H 5,120 + V 248,320).
    EXPECT_EQ(w.logits, int64_t(4) * 8 * (5120 + 248320));
    // 2× (GDN 2·256·48 + ids 256 + 256 + 8 descriptors × 6 + 8 × 16,384 blocks) × 4 B.
    EXPECT_EQ(w.backend_scratch, int64_t(8) * (2 * 256 * 48 + 256 + 256 + 6 * 8 + 8 * 16384));
    // Decode partials: largest at 7 sequences (ceil(512 / 28) = 19 splits): 7 × 24 × 19 × 258 floats, 2×.
    EXPECT_EQ(w.attention, int64_t(8) * 7 * 24 * 19 * 258);
    for (int64_t d = 1; d <= 8; ++d) EXPECT_LE(decode_partials(d, 24, 4, 256), 7 * 24 * 19 * 258) << d;
    // The sampler: 8 rows of 4·V + 8·2^18 + 8·V + 8·V + 256 bytes (7,063,808), 2×.
    EXPECT_EQ(w.sampler, int64_t(2) * 8 * 7063808);
    EXPECT_EQ(w.total(), 206661888);  // 197.1 MiB: the v0 kernel's 12 GiB of scores are gone
    EXPECT_EQ(w.total(), w.activations + w.logits + w.backend_scratch + w.attention + w.sampler);
    // Nothing but the block tables and the sampler's penalty entries grows with the context.
    EXPECT_EQ(w.total() - estimate_workspace(c, MemoryTarget::kCudaDevice, 256, 8, 32768, 16).total(),
              8 * 8 * (16384 - 2048) + 2 * 8 * 8 * (248320 - 32768));
    EXPECT_EQ(w.total(), workspace_27b_cuda(256, 8, 262144));
    EXPECT_EQ(estimate_workspace(c, MemoryTarget::kCudaDevice, 1024, 64, 32768, 16).total(),
              workspace_27b_cuda(1024, 64, 32768));
}

TEST(MemoryPlan, Qwen27BQ4KMOn80GiB) {
    const ModelConfig c = preset("27b");
    // 27B Q4_K_M: 16.2 GB (make-model --preset 27b --type q4_k_m, docs/PERFORMANCE.md).
    const int64_t weights = 16200000000;
    auto p = plan_memory(h100(c, weights));
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->budget_bytes, kH100Budget);
    EXPECT_FALSE(p->budget_limited_by_free);
    const int64_t workspace = 206661888, reserve = 512 * kMiB, state = 16 * int64_t(156893184);
    EXPECT_EQ(p->workspace.total(), workspace);
    EXPECT_EQ(p->state_bytes(), state);
    // KV gets the rest: (77,309,411,328 − 16.2e9 − workspace − reserve − state) / 1 MiB = 55,175 blocks
    // (43,001 while the v0 attention kernel's score buffer took 12 GiB).
    const int64_t left = kH100Budget - weights - workspace - reserve - state;
    EXPECT_EQ(left, 57855587584);
    EXPECT_EQ(p->kv_blocks, left / kMiB);
    EXPECT_EQ(p->kv_blocks, 55175);
    EXPECT_TRUE(p->kv_sized_from_memory);
    EXPECT_EQ(p->kv_tokens(), 55175 * 16);  // 882,800 tokens: 3.4 sequences of the full 262,144 context
    EXPECT_GE(p->kv_tokens(), 262144);
    EXPECT_LE(p->planned_bytes(), p->budget_bytes);
    EXPECT_LT(p->budget_bytes - p->planned_bytes(), kMiB);  // less than one block unused
    EXPECT_EQ(p->free_after_bytes(), 80 * kGiB - kGiB / 2 - p->planned_bytes());
    maybe_print(*p);
    const std::string t = p->table();
    EXPECT_NE(t.find("KV pool"), std::string::npos) << t;
    EXPECT_NE(t.find("55175 × 1.00 MiB"), std::string::npos) << t;
    for (const char* line : {"  activations", "  logits", "  attention", "  sampler", "  scratch"})
        EXPECT_NE(t.find(line), std::string::npos) << line << "\n" << t;
    EXPECT_NE(t.find("16 × 149.6"), std::string::npos) << t;
}

TEST(MemoryPlan, Qwen35BA3BQ4KMOn80GiB) {
    const ModelConfig c = preset("35b-a3b");
    // 35B-A3B Q4_K_M: about 21.0 GB (34.7e9 parameters at ~4.85 bits).
    const int64_t weights = 21000000000;
    auto p = plan_memory(h100(c, weights));
    ASSERT_TRUE(p.ok()) << p.status();
    // Per token: 3H 6,144 + max(8,192, 8,192) + max(4,096, 512) + 512 + 64 + max(4,096, 4,096) + 2·512.
    const int64_t activations = int64_t(4) * 256 * (6144 + 8192 + 4096 + 512 + 64 + 4096 + 1024);
    const int64_t logits = int64_t(4) * 8 * (2048 + 248320);
    // GDN 2·256·32; MoE router 256·256 + shared/expert 2·256·512 + x/y 2·256·2048 + 2·256.
    const int64_t floats = 2 * 256 * 32 + 256 * 256 + 2 * 256 * 512 + 2 * 256 * 2048 + 2 * 256;
    const int64_t scratch = 8 * (floats + 256 + 256 + 6 * 8 + 8 * 16384);
    // Decode partials (Hkv 2): 4 sequences × 64 splits and 8 × 32 give 256 (sequence, split) pairs, but
    // 5 sequences × ceil(512 / 10) = 52 splits give 260, the largest: 5 × 16 heads × 52 × 258 floats, 2×.
    EXPECT_EQ(decode_partials(4, 16, 2, 256), int64_t(4) * 16 * 64 * 258);
    EXPECT_EQ(decode_partials(8, 16, 2, 256), int64_t(8) * 16 * 32 * 258);
    for (int64_t d = 1; d <= 8; ++d) EXPECT_LE(decode_partials(d, 16, 2, 256), 5 * 16 * 52 * 258) << d;
    const int64_t attention = 8 * int64_t(5) * 16 * 52 * 258, sampler = 2 * 8 * sampler_row(262144);
    EXPECT_EQ(p->workspace.activations, activations);
    EXPECT_EQ(p->workspace.logits, logits);
    EXPECT_EQ(p->workspace.backend_scratch, scratch);
    EXPECT_EQ(p->workspace.attention, attention);
    EXPECT_EQ(p->workspace.sampler, sampler);
    const int64_t workspace = activations + logits + scratch + attention + sampler;
    EXPECT_EQ(workspace, 166524288);  // 158.8 MiB (8.04 GiB with the v0 score buffer)
    const int64_t state = 16 * int64_t(65863680);
    const int64_t block = 10 * 2 * 16 * 2 * 512;
    const int64_t left = kH100Budget - weights - workspace - 512 * kMiB - state;
    EXPECT_EQ(p->kv_blocks, left / block);
    maybe_print(*p);
    EXPECT_EQ(p->kv_blocks, 166480);   // 2,663,680 tokens: 10.2 full-context sequences, 50.8 GiB
    EXPECT_LE(p->planned_bytes(), p->budget_bytes);
    EXPECT_LT(p->budget_bytes - p->planned_bytes(), block);
}

TEST(MemoryPlan, UtilizationFractionIsHonoured) {
    const ModelConfig c = preset("27b");
    MemoryPlanInput in = h100(c, 16200000000);
    in.utilization = 0.75;
    auto p = plan_memory(in);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->budget_bytes, 60 * kGiB);
    EXPECT_EQ(p->kv_blocks, (60 * kGiB - 16200000000 - 206661888 - 512 * kMiB - 16 * int64_t(156893184)) / kMiB);
    EXPECT_EQ(p->kv_blocks, 42887);
    EXPECT_LE(p->planned_bytes(), 60 * kGiB);
    EXPECT_LT(p->kv_blocks, plan_memory(h100(c, 16200000000))->kv_blocks);
    // At 0.4 (32 GiB) the 27B's full 262,144-token context (16 GiB of KV) no longer fits: 14,215 blocks
    // are left, 16,392 needed (at 0.5 it fits now, 22,407 blocks, with the score buffer gone).
    in.utilization = 0.4;
    p = plan_memory(in);
    ASSERT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted) << p.status();
    EXPECT_NE(p.status().message().find("the KV pool gets 14215 blocks"), std::string::npos) << p.status();
    EXPECT_NE(p.status().message().find("raise --gpu-memory-utilization (0.40)"), std::string::npos) << p.status();

    // Less free memory than the fraction asks for: the free memory is the budget.
    in.utilization = 0.9;
    in.device_free_bytes = 70 * kGiB;
    p = plan_memory(in);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->budget_bytes, 70 * kGiB);
    EXPECT_TRUE(p->budget_limited_by_free);
    EXPECT_LE(p->planned_bytes(), 70 * kGiB);
    EXPECT_NE(p->table().find("limited by free memory"), std::string::npos);

    for (double bad : {0.0, -0.1, 1.01}) {
        in.utilization = bad;
        auto q = plan_memory(in);
        EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument) << bad;
        EXPECT_NE(q.status().message().find("--gpu-memory-utilization"), std::string::npos) << q.status();
    }
}

TEST(MemoryPlan, ExplicitKvBlocksThatOversubscribeAreAnError) {
    const ModelConfig c = preset("27b");
    MemoryPlanInput in = h100(c, 16200000000);
    in.kv_blocks = 55175;  // exactly what fits
    in.kv_blocks_flag = true;
    auto p = plan_memory(in);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->kv_blocks, 55175);
    EXPECT_FALSE(p->kv_sized_from_memory);

    in.kv_blocks = 55176;  // one more: over the budget, never clipped
    p = plan_memory(in);
    ASSERT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted) << p.status();
    const std::string m(p.status().message());
    EXPECT_NE(m.find("--kv-blocks 55176"), std::string::npos) << m;
    EXPECT_NE(m.find("at most 55175 blocks fit"), std::string::npos) << m;
    EXPECT_NE(m.find("--gpu-memory-utilization"), std::string::npos) << m;
}

TEST(MemoryPlan, ExplicitMaxRunningThatOversubscribesIsAnError) {
    const ModelConfig c = preset("27b");
    MemoryPlanInput in = h100(c, 16200000000);
    // With 360 running sequences (256 logit rows, 256 sampler rows) the workspace is 4,013,965,312 B,
    // which leaves room for 360 slots of 156,893,184 B after weights and reserve, not 368.
    const int64_t ws360 = workspace_27b_cuda(256, 360, 262144);
    ASSERT_EQ(ws360, 4013965312);
    const int64_t left = kH100Budget - 16200000000 - ws360 - 512 * kMiB;
    ASSERT_EQ(left / 156893184, 360);
    in.max_running = 360;
    in.spare_slots = 8;
    in.max_running_flag = true;
    auto p = plan_memory(in);
    ASSERT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted) << p.status();
    const std::string m(p.status().message());
    EXPECT_NE(m.find("--max-running 360"), std::string::npos) << m;
    EXPECT_NE(m.find("--spare-slots 8 (default)"), std::string::npos) << m;
    EXPECT_NE(m.find("at most 360 slots fit"), std::string::npos) << m;

    // 292 slots fit but leave (budget − weights − workspace − reserve − 292 slots) / 1 MiB = 10,256
    // blocks, too few for one full-context sequence (16,384 + 292 blocks).
    in.max_running = 292;
    in.spare_slots = 0;
    EXPECT_EQ((kH100Budget - 16200000000 - workspace_27b_cuda(256, 292, 262144) - 512 * kMiB - 292 * int64_t(156893184)) / kMiB,
              10256);
    p = plan_memory(in);
    ASSERT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted) << p.status();
    EXPECT_NE(p.status().message().find("the KV pool gets 10256 blocks"), std::string::npos) << p.status();
    EXPECT_NE(p.status().message().find("--max-seq-len 262144"), std::string::npos) << p.status();
    // ... which a shorter context fixes.
    in.max_seq_len = 8192;
    p = plan_memory(in);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->kv_blocks,
              (kH100Budget - 16200000000 - workspace_27b_cuda(256, 292, 8192) - 512 * kMiB - 292 * int64_t(156893184)) / kMiB);
    EXPECT_GE(p->kv_blocks, 8192 / 16 + 292);
    EXPECT_LE(p->planned_bytes(), p->budget_bytes);
}

TEST(MemoryPlan, TooLittleMemoryIsAClearError) {
    const ModelConfig c = preset("27b");
    // A 16 GiB device cannot hold 16.2 GB of weights at any utilization.
    MemoryPlanInput in = h100(c, 16200000000);
    in.device_total_bytes = in.device_free_bytes = 16 * kGiB;
    auto p = plan_memory(in);
    ASSERT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_NE(p.status().message().find("the weights alone"), std::string::npos) << p.status();

    // A 24 GiB device holds the weights and the workspace, but not the 16 GiB of KV a 262,144-token
    // context needs (3,565 blocks are left, 16,392 needed) ...
    in.device_total_bytes = in.device_free_bytes = 24 * kGiB;
    p = plan_memory(in);
    ASSERT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_NE(p.status().message().find("the KV pool gets 3565 blocks"), std::string::npos) << p.status();
    EXPECT_NE(p.status().message().find("--max-seq-len"), std::string::npos) << p.status();
    // ... and a workspace that does not fit names --token-budget: 8,192-token steps at 16 GiB.
    MemoryPlanInput big = in;
    big.token_budget = 8192;
    big.max_running = 256;
    big.device_total_bytes = big.device_free_bytes = 18 * kGiB;
    p = plan_memory(big);
    ASSERT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_NE(p.status().message().find("--token-budget"), std::string::npos) << p.status();
    // ... and with a 32K context there is room, but not for one 32K sequence next to 16 slots.
    in.max_seq_len = 32768;
    p = plan_memory(in);
    ASSERT_TRUE(p.ok()) << p.status();  // 21.6 GiB budget: 15.1 weights, 0.2 workspace, 0.5 reserve, 2.3 state
    EXPECT_EQ(p->kv_blocks, (int64_t(0.9 * double(24 * kGiB)) - 16200000000 - workspace_27b_cuda(256, 8, 32768) -
                             512 * kMiB - 16 * int64_t(156893184)) / kMiB);
    EXPECT_EQ(p->kv_blocks, 3592);  // 57,472 tokens: one 32K sequence and 0.75 more
    EXPECT_GE(p->kv_blocks, 32768 / 16 + 8);
    EXPECT_LE(p->planned_bytes(), p->budget_bytes);

    // Another process holds most of the device: the free memory, not the fraction, is the limit.
    in.device_free_bytes = 10 * kGiB;
    p = plan_memory(in);
    ASSERT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_NE(p.status().message().find("free 10.00 GiB"), std::string::npos) << p.status();
}

TEST(MemoryPlan, HostRamTargetKeepsDefaultsAndCountsTheHostCache) {
    const ModelConfig c = preset("tiny");
    MemoryPlanInput in;
    in.config = c;
    in.target = MemoryTarget::kHostRam;
    in.device_total_bytes = 24 * kGiB;
    in.device_free_bytes = 20 * kGiB;
    in.weights_bytes = 40 * kMiB;
    in.reserve_bytes = 256 * kMiB;
    in.host_cache_bytes = 256 * kMiB;
    in.kv_blocks = 1024;  // the CPU default
    auto p = plan_memory(in);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->kv_blocks, 1024);
    EXPECT_FALSE(p->kv_sized_from_memory);
    EXPECT_EQ(p->host_cache_bytes, 256 * kMiB);
    // tiny: 2 attention layers × 2 × 16 × 2 KV heads × 512 B; 6 GDN layers × (3 × 3,584 + 12 × 128 × 128) × 4.
    EXPECT_EQ(p->kv_block_bytes, 2 * 2 * 16 * 2 * 512);
    EXPECT_EQ(p->state_slot_bytes, int64_t(6) * (3 * (2 * 4 * 128 + 12 * 128) + 12 * 128 * 128) * 4);
    // CPU scratch: the larger of attention's dequantised K/V (2 · 2 · 32,768 · 256) and GDN
    // (2 · 256 · 12 + 256 · 2,560), plus 8 logits rows copied to the host.
    EXPECT_EQ(p->workspace.backend_scratch, int64_t(4) * 2 * 2 * 32768 * 256 + 4 * 8 * 1024);
    EXPECT_EQ(p->planned_bytes(), 40 * kMiB + p->workspace.total() + 256 * kMiB + 256 * kMiB +
                                      16 * p->state_slot_bytes + 1024 * p->kv_block_bytes);

    // The host cache comes out of the same budget: one that does not fit names --host-cache.
    in.host_cache_bytes = 20 * kGiB;
    p = plan_memory(in);
    ASSERT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_NE(p.status().message().find("--host-cache"), std::string::npos) << p.status();

    // On a GPU the host cache is checked against the host's available RAM instead.
    MemoryPlanInput g = h100(preset("27b"), 16200000000);
    g.host_cache_bytes = 64 * kGiB;
    g.host_available_bytes = 32 * kGiB;
    p = plan_memory(g);
    ASSERT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_NE(p.status().message().find("--host-cache"), std::string::npos) << p.status();
    g.host_available_bytes = 100 * kGiB;
    EXPECT_TRUE(plan_memory(g).ok());
}

// Whatever the inputs, a plan that succeeds never exceeds its budget; a pool sized from memory leaves
// less than one block (or hit the block limit); explicit sizes come back unchanged.
TEST(MemoryPlan, PlannedBytesNeverExceedTheBudget) {
    std::mt19937_64 rng(20261124);
    auto uni = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
    const std::vector<std::string> presets = {"tiny", "tiny-moe", "0.8b", "27b", "35b-a3b"};
    const DType kv_types[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0};
    int ok = 0, exhausted = 0;
    for (int iter = 0; iter < 4000; ++iter) {
        MemoryPlanInput in;
        in.config = preset(presets[uni(0, presets.size() - 1)]);
        if (uni(0, 3) == 0) in.config.max_context = uni(1, 1 << 20);
        in.target = uni(0, 1) ? MemoryTarget::kCudaDevice : MemoryTarget::kHostRam;
        in.device_total_bytes = uni(1, 200 * kGiB);
        in.device_free_bytes = uni(0, in.device_total_bytes);
        in.utilization = std::max(1e-3, std::uniform_real_distribution<double>(0, 1)(rng));
        in.weights_bytes = uni(0, 80 * kGiB);
        in.reserve_bytes = uni(0, kGiB);
        in.kv_type = kv_types[uni(0, 4)];
        in.block_tokens = int32_t(uni(1, 256));
        in.token_budget = int32_t(uni(1, 8192));
        in.max_seq_len = uni(0, 1) ? 0 : int32_t(uni(1, in.config.max_context));
        in.max_running = int32_t(uni(1, 512));
        in.spare_slots = int32_t(uni(0, 512));
        in.kv_blocks = uni(0, 1) ? 0 : int32_t(uni(1, 1 << 20));
        in.host_cache_bytes = uni(0, 8 * kGiB);
        auto p = plan_memory(in);
        if (!p.ok()) {
            ASSERT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted) << p.status();
            ++exhausted;
            continue;
        }
        ++ok;
        const int64_t budget = std::min<int64_t>(int64_t(in.utilization * double(in.device_total_bytes)), in.device_free_bytes);
        ASSERT_LE(p->budget_bytes, budget + 1);
        ASSERT_LE(p->budget_bytes, in.device_free_bytes);
        ASSERT_LE(p->planned_bytes(), p->budget_bytes) << p->table();
        ASSERT_EQ(p->max_running, in.max_running);
        ASSERT_EQ(p->spare_slots, in.spare_slots);
        if (in.kv_blocks > 0) {
            ASSERT_EQ(p->kv_blocks, in.kv_blocks);
        } else if (p->kv_block_bytes > 0) {
            ASSERT_TRUE(p->kv_blocks == kMaxKvBlocks || p->budget_bytes - p->planned_bytes() < p->kv_block_bytes)
                << p->table();
            const int64_t L = in.max_seq_len > 0 ? in.max_seq_len : in.config.max_context;
            ASSERT_GE(int64_t(p->kv_blocks), (L + in.block_tokens - 1) / in.block_tokens + in.max_running);
        }
    }
    EXPECT_GT(ok, 100);
    EXPECT_GT(exhausted, 100);
}

TEST(MemoryPlan, ParsesMeminfo) {
    auto m = parse_meminfo(
        "MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\nBuffers: 1 kB\n");
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->total_bytes, int64_t(24576000) * 1024);
    EXPECT_EQ(m->free_bytes, int64_t(20000000) * 1024);
    EXPECT_FALSE(parse_meminfo("MemTotal: 5 kB\n").ok());
    EXPECT_FALSE(parse_meminfo("MemTotal: x kB\nMemAvailable: 1 kB\n").ok());
    auto host = host_memory();  // the real one
    ASSERT_TRUE(host.ok()) << host.status();
    EXPECT_GT(host->total_bytes, 0);
    EXPECT_LE(host->free_bytes, host->total_bytes);
}

TEST(MemoryPlan, FormatsBytes) {
    EXPECT_EQ(format_bytes(512), "512 B");
    EXPECT_EQ(format_bytes(256 * kMiB), "256.00 MiB");
    EXPECT_EQ(format_bytes(kGiB + kGiB / 2), "1.50 GiB");
}

}  // namespace
}  // namespace dg
