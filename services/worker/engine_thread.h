// The one thread that owns an EngineLoop (which is not thread-safe). Everything else talks to the loop
// by posting tasks: they run between steps, in order. The thread steps while there is work and sleeps
// on a condition variable when the loop is idle, so an idle worker costs nothing.
//
// Nothing here ever blocks on a client: tasks and the loop's event callbacks only queue data for the
// gRPC reactors (services/worker/generate_stream.h).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/status/status.h"
#include "scheduler/engine_loop.h"

namespace dg::worker {

class EngineThread {
public:
    using Task = std::function<void(sched::EngineLoop&)>;

    // `after_work` runs on the engine thread after every round (tasks and/or a step), e.g. to publish
    // the load digest.
    EngineThread(std::unique_ptr<sched::EngineLoop> loop, std::function<void(sched::EngineLoop&)> after_work);
    ~EngineThread();  // stop()

    // Queues `t` to run on the engine thread. After stop(), tasks are dropped.
    void post(Task t);
    // Runs `fn` on the engine thread and waits for it (tests, operators; never from a gRPC reaction).
    absl::Status run_sync(std::function<absl::Status(sched::EngineLoop&)> fn);
    // Stops the thread after the current round; the loop is not stepped again.
    void stop();

    // Test hook: allow only `n` more steps (tasks still run); -1 = unlimited (the default).
    void set_step_budget(int64_t n);

private:
    void run();

    std::unique_ptr<sched::EngineLoop> loop_;
    std::function<void(sched::EngineLoop&)> after_work_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<Task> tasks_;
    bool stop_ = false;
    int64_t step_budget_ = -1;
    std::thread thread_;
};

}  // namespace dg::worker
