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
// As parallel_for, for work whose cost follows the index (a matmul's rows by their bytes): one contiguous
// range per thread, which the thread walks from the front in shrinking claims (half of what is left each
// time: one forward stream); a thread done with its own takes half of what is left of the fullest range,
// from its back, until nothing is left. fn gets [b, e) on multiples of `grain` (but the last, n). No thread
// waits for a slower one longer than the slower one's current claim, where static halves wait for the
// whole difference.
// The decode and prefill matmuls use it (matmul_fast.cpp, gemm.cpp). Why one stream per thread: a matmul
// split into several chunks per thread, handed out in turn (parallel_for_balanced), restarts each thread's
// prefetch streams at every chunk and lost to static halves on the 2-core VM; static halves left a thread
// idle for 6-12% of a decode step (docs/PERFORMANCE.md, issue 12 fourth and eleventh parts).
void parallel_for_stealing(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);

}  // namespace dg::cpu
