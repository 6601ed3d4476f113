// Runs one block of an emulated kernel: its threads as cooperative fibers on the calling OS thread.
// __syncthreads is a counted barrier (exited threads count as arrived); warp collectives are counted
// per-warp barriers with per-lane exchange slots, independent of other warps. When no thread can run
// and some have not exited, the block is deadlocked: the runner prints the kernel, the block and where
// each thread waits, and aborts.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <source_location>
#include <vector>

#include "engine/cuda/emu/emu.h"
#include "engine/cuda/emu/fiber.h"

namespace dg::emu {

class BlockRunner {
public:
    static BlockRunner& for_this_thread();

    void run(const LaunchSpec& spec, const std::function<void()>& body, uint3 block, const Schedule& sched);

    // Called by the device builtins of the running fiber.
    void barrier(std::source_location where);
    uint64_t warp_op(WarpOp op, unsigned mask, uint64_t bits, int arg, int width, std::source_location where);
    unsigned active_mask() const;
    void* dynamic_shared() const { return smem_; }
    bool in_kernel() const { return running_; }
    const LaunchSpec* spec() const { return spec_; }
    uint3 current_thread() const;

private:
    enum class State : uint8_t { kReady, kBarrier, kWarp, kExited };
    struct Thread {
        void* sp = nullptr;
        uint3 idx{};
        State state = State::kReady;
        WarpOp op{};
        std::source_location where;
    };
    struct Warp {
        unsigned arrived = 0, mask = 0, exists = 0;
        WarpOp op{};
        int width = 32;
        std::source_location first;
        uint64_t val[32];
        int arg[32];
        uint64_t res[32];
    };

    BlockRunner();
    [[noreturn]] static void fiber_main();
    int next_ready();
    void switch_away();
    void complete_warp(int w);
    void on_exit();
    [[noreturn]] void deadlock(const char* why) const;
    [[noreturn]] void misuse(const char* what, std::source_location where) const;

    std::vector<std::unique_ptr<FiberStack>> stacks_;
    std::vector<Thread> threads_;
    std::vector<Warp> warps_;
    std::vector<int> order_;
    int cursor_ = -1;  // position in order_ of the pass in progress
    const Schedule* sched_ = nullptr;
    std::mt19937_64 rng_;
    void* sched_sp_ = nullptr;
    int current_ = -1;
    int n_ = 0, at_barrier_ = 0, exited_ = 0;
    bool running_ = false;
    const LaunchSpec* spec_ = nullptr;
    const std::function<void()>* body_ = nullptr;
    uint3 block_{};
    void* smem_ = nullptr;
    void* smem_region_ = nullptr;
    size_t smem_region_bytes_ = 0;
};

// Largest dynamic shared memory a block may use after opting in (the H100/H200 limit).
constexpr size_t kMaxSharedOptin = 232448;
constexpr size_t kDefaultSharedLimit = 48 * 1024;

}  // namespace dg::emu
