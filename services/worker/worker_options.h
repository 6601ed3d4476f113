// Everything `deltagate worker` is configured with (flags in services/cli/cmd_worker.cpp) and what the
// in-process tests set directly.
#pragma once

#include <cstdint>
#include <string>

#include "engine/backend.h"
#include "scheduler/engine_loop.h"

namespace dg::worker {

struct WorkerOptions {
    std::string model_path;
    BackendKind backend = BackendKind::kCpu;
    std::string listen = "127.0.0.1:0";   // gRPC host:port (0 = ephemeral)
    std::string metrics_listen;           // HTTP host:port for /metrics; empty = no HTTP server
    std::string worker_id;                // reported in GetInfo/LoadReport; empty = the listen address
    sched::CacheOptions cache;
    sched::SchedulerOptions sched;
    int32_t max_queue = 256;              // waiting sequences before RESOURCE_EXHAUSTED (0 = unbounded)
    int32_t load_publish_ms = 10;         // the engine recomputes the load digest at most this often
    int32_t default_watch_interval_ms = 100;  // WatchLoad with interval_ms = 0
};

}  // namespace dg::worker
