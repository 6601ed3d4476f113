#include "services/worker/worker_memory.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "engine/status.h"

namespace dg::worker {

namespace pb = ::deltagate::worker::v1;

MemoryTarget memory_target(BackendKind backend) {
    return is_cuda(backend) ? MemoryTarget::kCudaDevice : MemoryTarget::kHostRam;
}

absl::StatusOr<DeviceMemory> measure_memory(const WorkerOptions& opt) {
    return device_memory(memory_target(opt.backend));
}

absl::StatusOr<MemoryPlan> plan_worker_memory(const ModelWeights& weights, const DeviceMemory& before,
                                              WorkerOptions* opt) {
    const ModelConfig& c = weights.config;
    MemoryPlanInput in;
    in.config = c;
    in.target = memory_target(opt->backend);
    in.device_name = before.name;
    in.device_total_bytes = before.total_bytes;
    in.device_free_bytes = before.free_bytes;
    in.utilization = opt->memory.utilization;
    in.weights_bytes = int64_t(weights.total_bytes());
    in.reserve_bytes = default_reserve_bytes(in.target);
    in.kv_type = opt->cache.kv_type;
    in.block_tokens = opt->cache.block_tokens;
    in.token_budget = opt->sched.token_budget;
    // As EngineLoop::create resolves it.
    in.max_seq_len = int32_t(opt->sched.max_seq_len > 0 ? std::min<int64_t>(opt->sched.max_seq_len, c.max_context)
                                                        : std::min<int64_t>(c.max_context, INT32_MAX));
    in.max_running = opt->sched.max_running;
    in.spare_slots = opt->sched.spare_slots;
    in.kv_blocks = opt->memory.kv_from_memory ? 0 : opt->cache.n_blocks;
    in.host_cache_bytes = opt->sched.host_cache_bytes;
    if (in.target == MemoryTarget::kCudaDevice) {
        if (auto host = host_memory(); host.ok()) in.host_available_bytes = host->free_bytes;
    }
    in.max_running_flag = opt->memory.max_running_flag;
    in.spare_slots_flag = opt->memory.spare_slots_flag;
    in.kv_blocks_flag = opt->memory.kv_blocks_flag;
    in.utilization_flag = opt->memory.utilization_flag;
    DG_ASSIGN_OR_RETURN(MemoryPlan plan, plan_memory(in));

    opt->cache.n_blocks = plan.kv_blocks;
    opt->sched.max_running = plan.max_running;
    opt->sched.spare_slots = plan.spare_slots;
    if (opt->memory.print) {
        std::fprintf(stderr, "deltagate worker: memory plan (%s backend)\n%s\n",
                     is_cuda(opt->backend) ? "cuda" : "cpu", plan.table().c_str());
        std::fflush(stderr);
    }
    return plan;
}

void report_memory_plan(const MemoryPlan& plan, const WorkerOptions& opt, metrics::Registry& registry,
                        pb::WorkerInfo* info) {
    if (opt.memory.print) {
        // The workspace grows on the first steps and the host cache as checkpoints spill, so compare
        // with the free memory the plan expects before those.
        const int64_t expected = plan.device_free_bytes - plan.weights_bytes - plan.state_bytes() - plan.kv_bytes();
        if (auto now = measure_memory(opt); now.ok())
            std::fprintf(stderr, "  %-14s %12s  measured with weights and pools allocated (plan: %s before the workspace)\n",
                         "free now", format_bytes(now->free_bytes).c_str(), format_bytes(expected).c_str());
        std::fflush(stderr);
    }
    const char* help = "Memory the worker planned at start, by use (device memory; host RAM for the cpu backend).";
    const std::pair<const char*, int64_t> kinds[] = {{"weights", plan.weights_bytes},
                                                     {"kv", plan.kv_bytes()},
                                                     {"state", plan.state_bytes()},
                                                     {"workspace", plan.workspace.total()}};
    for (const auto& [kind, bytes] : kinds)
        registry.gauge("deltagate_worker_memory_bytes", help, {{"kind", kind}}).set(double(bytes));
    registry.gauge("deltagate_worker_memory_budget_bytes",
                   "The worker's memory budget: min(--gpu-memory-utilization × total, free at start).")
        .set(double(plan.budget_bytes));

    pb::MemoryPlan* m = info->mutable_memory();
    m->set_device_total_bytes(plan.device_total_bytes);
    m->set_device_free_bytes(plan.device_free_bytes);
    m->set_utilization(plan.utilization);
    m->set_budget_bytes(plan.budget_bytes);
    m->set_weights_bytes(plan.weights_bytes);
    m->set_workspace_bytes(plan.workspace.total());
    m->set_reserve_bytes(plan.reserve_bytes);
    m->set_state_slots(plan.state_slots());
    m->set_state_slot_bytes(plan.state_slot_bytes);
    m->set_kv_block_bytes(plan.kv_block_bytes);
    m->set_kv_bytes(plan.kv_bytes());
    m->set_planned_bytes(plan.planned_bytes());
    m->set_kv_sized_from_memory(plan.kv_sized_from_memory);
}

}  // namespace dg::worker
