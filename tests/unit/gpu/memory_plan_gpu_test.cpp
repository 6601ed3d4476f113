// The memory plan against a real device (skips without one): cudaMemGetInfo through device_memory(),
// and a plan followed by the allocations it planned plus a full-context run in token-budget steps,
// measuring that the device memory actually used stays within the planned bytes.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "engine/backend.h"
#include "engine/memory_plan.h"
#include "engine/model.h"
#include "engine/model_export.h"
#include "engine/model_source.h"
#include "engine/weights.h"

namespace dg {
namespace {

#define SKIP_WITHOUT_GPU() \
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

TEST(CudaMemoryPlan, QueriesTheDevice) {
    SKIP_WITHOUT_GPU();
    auto m = device_memory(MemoryTarget::kCudaDevice);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_GT(m->total_bytes, 0);
    EXPECT_GT(m->free_bytes, 0);
    EXPECT_LE(m->free_bytes, m->total_bytes);
    EXPECT_FALSE(m->name.empty());
    std::printf("%s: total %s, free %s\n", m->name.c_str(), format_bytes(m->total_bytes).c_str(),
                format_bytes(m->free_bytes).c_str());
}

TEST(CudaMemoryPlan, UsedMemoryStaysWithinThePlan) {
    SKIP_WITHOUT_GPU();
    // The `tiny` preset (real head sizes) as a q8_0 GGUF.
    const std::string path = (std::filesystem::temp_directory_path() / "dg_memory_plan_tiny.gguf").string();
    auto cfg = preset_config("tiny");
    ASSERT_TRUE(cfg.ok());
    GgufExportOptions eo;
    eo.type = "q8_0";
    ASSERT_TRUE(export_gguf(random_model(*cfg, 7), path, eo).ok());

    auto before = device_memory(MemoryTarget::kCudaDevice);  // creates the context first
    ASSERT_TRUE(before.ok()) << before.status();
    auto weights = load_model(path);
    ASSERT_TRUE(weights.ok()) << weights.status();
    ModelConfig c = (*weights)->config;
#ifdef DG_CUDA_EMU
    // The CPU emulation's device is small (DG_CUDA_EMU_DEVICE_MB) and slow: plan for a 512-token context
    // (two chunks of the token budget), so the same code paths (plan, pools, a chunk attending to all
    // earlier positions) run in CI. 1K took 200-340 s of the CI's 2 cores, most of it emulated matmuls.
    c.max_context = 512;
#endif

    MemoryPlanInput in;
    in.config = c;
    in.target = MemoryTarget::kCudaDevice;
    in.device_total_bytes = before->total_bytes;
    in.weights_bytes = int64_t((*weights)->total_bytes());
    in.reserve_bytes = default_reserve_bytes(MemoryTarget::kCudaDevice);
    in.token_budget = 256;
    in.max_running = 8;
    in.spare_slots = 8;
    in.utilization = 1.0;
    // Pretend only this much is free, so the KV pool (sized from memory) is about 1 GiB.
    const WorkspaceEstimate ws = estimate_workspace(c, in.target, in.token_budget, in.max_running, int32_t(c.max_context), 16);
    in.device_free_bytes = std::min(before->free_bytes, in.weights_bytes + ws.total() + in.reserve_bytes +
                                                            16 * state_slot_bytes(c) + (int64_t(1) << 30));
    auto plan = plan_memory(in);
    ASSERT_TRUE(plan.ok()) << plan.status();
    std::printf("%s\n", plan->table().c_str());

    auto be = make_backend(BackendKind::kCuda);
    ASSERT_TRUE(be.ok()) << be.status();
    CacheLayout layout{plan->kv_type, plan->block_tokens, plan->kv_blocks, plan->state_slots()};
    auto model = Model::create(std::move(*weights), std::move(*be), layout);
    ASSERT_TRUE(model.ok()) << model.status();

    // One sequence through the whole context in steps of the token budget (the last chunk attends to
    // every position: the attention kernels must need no memory that grows with it), the largest
    // activations, then decode steps at full context (attention's split partials).
    std::vector<int32_t> blocks(plan->kv_blocks);
    for (int32_t i = 0; i < plan->kv_blocks; ++i) blocks[i] = i;
    ASSERT_GE(int64_t(blocks.size()) * plan->block_tokens, c.max_context);
    std::vector<float> logits;
    for (int32_t pos = 0; pos < c.max_context; pos += in.token_budget) {
        StepBatch b;
        const int32_t len = int32_t(std::min<int64_t>(in.token_budget, c.max_context - pos));
        for (int32_t t = 0; t < len; ++t) b.tokens.push_back((pos + t) % int32_t(c.vocab_size));
        b.seqs.push_back(SeqSlice{0, len, pos, 0, blocks.data(), int32_t(blocks.size()), false});
        ASSERT_TRUE((*model)->forward(b, &logits).ok());
    }
    for (int32_t i = 0; i < 2; ++i) {
        const int32_t pos = int32_t(c.max_context) - 2 + i;
        StepBatch b;
        b.tokens.push_back(i + 1);
        b.seqs.push_back(SeqSlice{0, 1, pos, 0, blocks.data(), int32_t(blocks.size()), false});
        ASSERT_TRUE((*model)->forward(b, &logits).ok());
    }
    auto after = device_memory(MemoryTarget::kCudaDevice);
    ASSERT_TRUE(after.ok());
    const int64_t used = before->free_bytes - after->free_bytes;
    std::printf("used %s of planned %s (weights + workspace + reserve + state + KV)\n", format_bytes(used).c_str(),
                format_bytes(plan->planned_bytes()).c_str());
    EXPECT_LE(used, plan->planned_bytes());
    std::filesystem::remove(path);
}

}  // namespace
}  // namespace dg
