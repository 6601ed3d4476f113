// The CUDA emulation's controls and counters, for tests and tools (engine/cuda/emu/, docs/cuda.md).
// Only the emulation build has these symbols; code that must build both ways tests DG_CUDA_EMU.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dg::emu {

// The order in which a block's threads run between two barriers, and blocks run within a grid.
// forward: ascending index; reverse: descending; random: a seeded permutation, re-drawn after every
// barrier. Two orders must give bit-identical results: a difference is a missing barrier or a race.
enum class Order { kForward, kReverse, kRandom };
struct Schedule {
    Order order = Order::kForward;
    uint64_t seed = 0;
};
void set_schedule(const Schedule& s);
Schedule schedule();
std::string order_name(Order o);

// Worker OS threads that run blocks (default: the machine's cores; DG_CUDA_EMU_THREADS overrides).
void set_threads(int n);
int threads();

// What the emulated device did, since the last reset: for tests that count launches, copies and host
// synchronisations per decode step.
struct Counters {
    int64_t kernel_launches = 0;  // kernels executed (a graph's kernels included)
    int64_t graph_launches = 0;
    int64_t copies_h2d = 0, copies_d2h = 0, copies_d2d = 0;  // cudaMemcpy* executed
    int64_t async_copies = 0;     // of which cudaMemcpyAsync
    int64_t memsets = 0;
    int64_t host_syncs = 0;       // cudaDeviceSynchronize / StreamSynchronize / EventSynchronize, sync memcpy
    int64_t blocks = 0, threads = 0;
    int64_t bytes_d2h = 0;        // bytes of the device->host copies (what leaves the device)
    int64_t graph_instantiations = 0, graph_updates = 0;  // cudaGraphInstantiate, successful cudaGraphExecUpdate
};
Counters counters();
void reset_counters();

// The nodes whose parameters (a kernel's grid, block, shared memory and argument bytes; a copy's
// addresses, size and kind) the last successful cudaGraphExecUpdate changed, by kernel name
// ("cudaMemcpyAsync" for copies), in node order: what a replay of the executable graph as it stood
// (without re-capture) would have got wrong for that step.
std::vector<std::string> last_graph_update_changes();

// The emulated device's memory in bytes (cudaMemGetInfo's total): DG_CUDA_EMU_DEVICE_MB, default 1024.
int64_t device_memory_bytes();
// Below what is allocated, every further cudaMalloc fails (tests use it to run out of memory mid-step).
void set_device_memory_bytes(int64_t bytes);

}  // namespace dg::emu
