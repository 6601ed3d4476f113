// The worker's memory plan end to end (in-process, cpu backend, host RAM as the device): GetInfo's
// MemoryPlan, the deltagate_worker_memory_bytes gauges, a KV pool sized from the budget, and a start
// that fails (naming the flag) when explicit sizes would oversubscribe.
#include <gtest/gtest.h>

#include "engine/memory_plan.h"
#include "tests/unit/worker/prom_parser.h"
#include "tests/unit/worker/worker_test_util.h"

namespace dg::worker::testing {
namespace {

pb::WorkerInfo get_info(Worker& w) {
    grpc::ClientContext ctx;
    pb::WorkerInfo info;
    EXPECT_TRUE(w.stub->GetInfo(&ctx, pb::GetInfoRequest(), &info).ok());
    return info;
}

// A utilization that gives this host a budget of about `bytes`.
double fraction_for(int64_t bytes) {
    auto host = host_memory();
    EXPECT_TRUE(host.ok()) << host.status();
    return double(bytes) / double(host->total_bytes);
}

TEST(Memory, DefaultsAreCheckedAndReported) {
    WorkerOptions o = test_options();  // 256 blocks, 4 running + 8 spare
    o.memory.print = false;
    Worker w(o);
    ASSERT_TRUE(w.server);
    const pb::WorkerInfo info = get_info(w);
    const pb::MemoryPlan& m = info.memory();
    EXPECT_EQ(info.kv_blocks(), 256);
    EXPECT_EQ(info.max_running(), 4);
    EXPECT_EQ(m.state_slots(), 12);
    EXPECT_FALSE(m.kv_sized_from_memory());
    EXPECT_EQ(m.kv_bytes(), 256 * m.kv_block_bytes());
    EXPECT_GT(m.weights_bytes(), 0);
    EXPECT_GT(m.workspace_bytes(), 0);
    EXPECT_GT(m.state_slot_bytes(), 0);
    EXPECT_LE(m.budget_bytes(), m.device_free_bytes());
    EXPECT_LE(m.planned_bytes(), m.budget_bytes());
    EXPECT_EQ(m.planned_bytes(), m.weights_bytes() + m.workspace_bytes() + m.reserve_bytes() +
                                     o.sched.host_cache_bytes + m.state_slots() * m.state_slot_bytes() + m.kv_bytes());
    EXPECT_DOUBLE_EQ(m.utilization(), 0.9);

    const Scrape s = parse_prometheus(w.server->registry().render());
    ASSERT_EQ(s.error, "");
    EXPECT_EQ(s.type.at("deltagate_worker_memory_bytes"), "gauge");
    EXPECT_EQ(s.get("deltagate_worker_memory_bytes", {{"kind", "weights"}}), double(m.weights_bytes()));
    EXPECT_EQ(s.get("deltagate_worker_memory_bytes", {{"kind", "kv"}}), double(m.kv_bytes()));
    EXPECT_EQ(s.get("deltagate_worker_memory_bytes", {{"kind", "state"}}), double(m.state_slots() * m.state_slot_bytes()));
    EXPECT_EQ(s.get("deltagate_worker_memory_bytes", {{"kind", "workspace"}}), double(m.workspace_bytes()));
    EXPECT_EQ(s.get("deltagate_worker_memory_budget_bytes"), double(m.budget_bytes()));
}

TEST(Memory, KvPoolSizedFromTheBudget) {
    WorkerOptions o = test_options();
    o.memory.print = false;
    o.memory.kv_from_memory = true;
    o.sched.host_cache_bytes = 0;
    o.memory.utilization = fraction_for(int64_t(400) << 20);  // ~400 MiB: weights, workspace, reserve, then KV
    Worker w(o);
    ASSERT_TRUE(w.server);
    const pb::WorkerInfo info = get_info(w);
    const pb::MemoryPlan& m = info.memory();
    EXPECT_TRUE(m.kv_sized_from_memory());
    EXPECT_GT(info.kv_blocks(), 256);
    EXPECT_EQ(m.kv_bytes(), int64_t(info.kv_blocks()) * m.kv_block_bytes());
    EXPECT_LE(m.planned_bytes(), m.budget_bytes());
    EXPECT_LT(m.budget_bytes() - m.planned_bytes(), m.kv_block_bytes());
    // The pool the scheduler got is the planned one, and it serves.
    ASSERT_TRUE(w.on_engine([&](sched::EngineLoop& l) {
        EXPECT_EQ(l.digest().kv_blocks_total, info.kv_blocks());
        return absl::OkStatus();
    }).ok());
    EXPECT_TRUE(w.generate(greedy(iota_prompt(20), 4)).status.ok());
}

TEST(Memory, ExplicitSizesThatOversubscribeFailTheStart) {
    WorkerOptions o = test_options();
    o.memory.print = false;
    o.memory.utilization = fraction_for(int64_t(560) << 20);
    o.cache.n_blocks = 1 << 20;  // 8 GiB of f32 KV for the fixture
    o.memory.kv_blocks_flag = true;
    auto w = WorkerServer::start(o);
    ASSERT_EQ(w.status().code(), absl::StatusCode::kResourceExhausted) << w.status();
    EXPECT_NE(w.status().message().find("--kv-blocks 1048576 needs"), std::string::npos) << w.status();

    o.cache.n_blocks = 256;
    o.memory.kv_blocks_flag = false;
    o.sched.max_running = 4000;
    o.memory.max_running_flag = true;
    w = WorkerServer::start(o);
    ASSERT_EQ(w.status().code(), absl::StatusCode::kResourceExhausted) << w.status();
    EXPECT_NE(w.status().message().find("--max-running 4000"), std::string::npos) << w.status();
}

}  // namespace
}  // namespace dg::worker::testing
