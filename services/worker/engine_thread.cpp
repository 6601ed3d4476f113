#include "services/worker/engine_thread.h"

#include <chrono>
#include <cstdio>
#include <future>

namespace dg::worker {

EngineThread::EngineThread(std::unique_ptr<sched::EngineLoop> loop, std::function<void(sched::EngineLoop&)> after_work)
    : loop_(std::move(loop)), after_work_(std::move(after_work)) {
    thread_ = std::thread([this] { run(); });
}

EngineThread::~EngineThread() { stop(); }

void EngineThread::post(Task t) {
    {
        std::lock_guard lock(mu_);
        if (stop_) return;
        tasks_.push_back(std::move(t));
    }
    cv_.notify_one();
}

absl::Status EngineThread::run_sync(std::function<absl::Status(sched::EngineLoop&)> fn) {
    auto done = std::make_shared<std::promise<absl::Status>>();
    std::future<absl::Status> f = done->get_future();
    {
        std::lock_guard lock(mu_);
        if (stop_) return absl::UnavailableError("worker: the engine thread has stopped");
        tasks_.push_back([fn = std::move(fn), done](sched::EngineLoop& l) { done->set_value(fn(l)); });
    }
    cv_.notify_one();
    return f.get();
}

void EngineThread::stop() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
}

void EngineThread::set_step_budget(int64_t n) {
    {
        std::lock_guard lock(mu_);
        step_budget_ = n;
    }
    cv_.notify_one();
}

void EngineThread::run() {
    bool stalled = false;  // requests wait but nothing could run last round
    for (;;) {
        std::deque<Task> tasks;
        bool may_step = false;
        {
            std::unique_lock lock(mu_);
            auto ready = [&] { return stop_ || !tasks_.empty() || (!loop_->idle() && step_budget_ != 0 && !stalled); };
            if (stalled) {
                // Waiting requests that cannot be admitted yet: wake again soon to expire deadlines.
                cv_.wait_for(lock, std::chrono::milliseconds(5), ready);
            } else {
                cv_.wait(lock, ready);
            }
            if (stop_) return;
            tasks.swap(tasks_);
        }
        for (Task& t : tasks) t(*loop_);
        stalled = false;
        {
            std::lock_guard lock(mu_);
            may_step = step_budget_ != 0 && !loop_->idle();
            if (may_step && step_budget_ > 0) --step_budget_;
        }
        if (may_step) {
            absl::StatusOr<bool> ran = loop_->step();
            if (!ran.ok()) std::fprintf(stderr, "worker: engine step failed: %s\n", std::string(ran.status().message()).c_str());
            else stalled = !*ran && !loop_->idle();
        }
        if (after_work_) after_work_(*loop_);
    }
}

}  // namespace dg::worker
