// Everything `deltagate worker` is configured with (flags in services/cli/cmd_worker.cpp) and what the
// in-process tests set directly.
#pragma once

#include <cstdint>
#include <string>

#include "engine/backend.h"
#include "scheduler/engine_loop.h"

namespace dg::worker {

// Memory planning at start (engine/memory_plan.h, docs/worker.md "Memory plan"): the sizes themselves
// live in `cache` and `sched`; these say how to plan them.
struct MemoryOptions {
    double utilization = 0.9;          // --gpu-memory-utilization: fraction of the device's total memory (host RAM's for cpu)
    // true: KV blocks = all that the budget leaves (`cache.n_blocks` is ignored). The CLI sets it for
    // cuda without --kv-blocks, and for cpu when --gpu-memory-utilization is given without --kv-blocks.
    bool kv_from_memory = false;
    // Which sizes came from flags (error messages name them).
    bool utilization_flag = false, kv_blocks_flag = false, max_running_flag = false, spare_slots_flag = false;
    bool print = true;                 // the plan table on stderr at start
};

struct WorkerOptions {
    std::string model_path;
    BackendKind backend = BackendKind::kCpu;
    std::string listen = "127.0.0.1:0";   // gRPC host:port (0 = ephemeral)
    std::string metrics_listen;           // HTTP host:port for /metrics; empty = no HTTP server
    std::string worker_id;                // reported in GetInfo/LoadReport; empty = the listen address
    // The shared token every call must carry as "authorization: Bearer <token>" (--auth-token-file);
    // empty = open to anyone who reaches the port (a warning at start). grpc.health.v1 and reflection
    // stay open either way (docs/reliability.md "Worker authentication").
    std::string auth_token;
    sched::CacheOptions cache;
    sched::SchedulerOptions sched;
    MemoryOptions memory;
    // SIGTERM drain: running requests get this long to finish, then are handed off (ended with
    // UNAVAILABLE, so the front migrates them mid-stream) and the worker exits.
    int32_t drain_ms = 20000;
    // Also refuse (RESOURCE_EXHAUSTED) a request whose expected wait for a running slot is longer than this
    // (services/common/retry_after.h; 0 = off): keeps admitted requests' time to first token near the unloaded one.
    int32_t max_queue_wait_ms = 0;
    int32_t max_queue = 256;              // waiting sequences before RESOURCE_EXHAUSTED (0 = unbounded)
    int32_t load_publish_ms = 10;         // the engine recomputes the load digest at most this often
    int32_t default_watch_interval_ms = 100;  // WatchLoad with interval_ms = 0
    bool vllm_metric_names = false;       // also export vllm:num_requests_{running,waiting}, vllm:kv_cache_usage_perc
};

}  // namespace dg::worker
