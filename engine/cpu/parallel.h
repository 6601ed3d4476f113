// A small persistent thread pool for the CPU backend: parallel_for over an index range, blocking until
// every chunk is done. Threads default to the hardware's; DG_CPU_THREADS overrides (1 = everything
// inline on the calling thread).
//
// Dispatch is cheap enough for the hundreds of small ops of a decode step: the caller publishes a job
// with one atomic store and takes chunks itself; workers claim the rest with a compare-and-swap. A worker
// spins for a short while after its last chunk (kSpinMicros in parallel.cpp) and then sleeps on a futex,
// so an idle process uses no CPU. Chunks nobody has started are run by the caller, so a worker that the
// OS has descheduled never stalls a call.
#pragma once

#include <cstdint>
#include <functional>

namespace dg::cpu {

// Calls fn(begin, end) over disjoint chunks covering [0, n), at most one chunk per thread, each of at
// least min_chunk indices (except when n < min_chunk: then one chunk). Runs inline when that leaves one
// chunk, when one thread is configured, and when called from inside a chunk (nested calls are allowed
// and run serially on the calling thread). Calls from different threads are serialised. An exception
// thrown by fn is rethrown to the caller after every chunk has finished (the first one, if several).
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);
int num_threads();

// As parallel_for, but in up to `per_thread` chunks per thread, handed out in order to whichever thread is
// free: a thread that finishes its chunk early takes the next one instead of waiting for the slower
// half. Each chunk stays one contiguous range (so a matmul's threads still stream long runs of rows).
void parallel_for_balanced(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int per_thread,
                           int64_t min_chunk = 1);
// The decode matmuls' chunks per thread (matmul_fast.cpp): kMatmulChunksPerThread, or DG_CPU_MATMUL_CHUNKS
// (1-64) to measure another split. 1, a static split into one contiguous half per thread as ggml's: on the
// 2-core VM (docs/PERFORMANCE.md, issue 12 fourth part) 1 beat 4 in 5 of 6 alternating bf16 pairs (+1-7%)
// and both q8_0 pairs (+9%), once the mixer's serial time had shrunk; with 4, each thread jumps between
// chunks and restarts its prefetch streams (and prefetches past its chunk into the other thread's rows).
// An earlier A/B (4 vs 1, before the fast recurrent form) had been within the spread.
constexpr int kMatmulChunksPerThread = 1;
int matmul_chunks_per_thread();

}  // namespace dg::cpu
