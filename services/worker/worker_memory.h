// The worker's memory plan at start (engine/memory_plan.h; docs/worker.md "Memory plan"): measure the
// device before the weights are loaded, plan once they are (before the caches are allocated), size the
// options from the plan, and report it (stderr table, GetInfo, /metrics).
//
// WorkerServer::start calls, in order:
//     measure_memory(opt)                 before load_model
//     plan_worker_memory(weights, before, &opt)   after load_model, before EngineLoop::create
//     report_memory_plan(plan, opt, registry, &info)  after EngineLoop::create
#pragma once

#include "absl/status/statusor.h"
#include "deltagate/worker/v1/worker.pb.h"
#include "engine/memory_plan.h"
#include "engine/weights.h"
#include "services/common/metrics.h"
#include "services/worker/worker_options.h"

namespace dg::worker {

MemoryTarget memory_target(BackendKind backend);

// The device's (or, for cpu, host RAM's) free and total memory now.
absl::StatusOr<DeviceMemory> measure_memory(const WorkerOptions& opt);

// Plans from the loaded weights and the memory measured before loading; on success writes the sizes
// into opt->cache.n_blocks, opt->sched.max_running and opt->sched.spare_slots and prints the table to
// stderr (opt->memory.print). Errors (ResourceExhausted, InvalidArgument) name the flag to change.
absl::StatusOr<MemoryPlan> plan_worker_memory(const ModelWeights& weights, const DeviceMemory& before,
                                              WorkerOptions* opt);

// Once the caches exist: prints the measured free memory (next to the predicted), sets
// deltagate_worker_memory_bytes{kind} and fills WorkerInfo.memory.
void report_memory_plan(const MemoryPlan& plan, const WorkerOptions& opt, metrics::Registry& registry,
                        ::deltagate::worker::v1::WorkerInfo* info);

}  // namespace dg::worker
