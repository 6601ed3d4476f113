#include "engine/cuda/emu/block_runner.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace dg::emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;  // reserved, not committed (MAP_NORESERVE); kernels use a few KB
thread_local BlockRunner* tls_runner = nullptr;

const char* op_name(WarpOp op) {
    switch (op) {
        case WarpOp::kShflIdx: return "__shfl_sync";
        case WarpOp::kShflUp: return "__shfl_up_sync";
        case WarpOp::kShflDown: return "__shfl_down_sync";
        case WarpOp::kShflXor: return "__shfl_xor_sync";
        case WarpOp::kSync: return "__syncwarp";
        case WarpOp::kBallot: return "__ballot_sync";
        case WarpOp::kAny: return "__any_sync";
        case WarpOp::kAll: return "__all_sync";
    }
    return "?";
}

std::string where_str(const std::source_location& w) {
    const char* f = w.file_name();
    if (const char* p = std::strstr(f, "engine/")) f = p;
    return std::string(f) + ":" + std::to_string(w.line());
}

}  // namespace

BlockRunner& BlockRunner::for_this_thread() {
    if (!tls_runner) tls_runner = new BlockRunner();  // one per OS thread, for the process's life
    return *tls_runner;
}

BlockRunner::BlockRunner() {
    // Dynamic shared memory sits at the END of its region, against a PROT_NONE page: a block that
    // indexes past what it asked for faults at once.
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const size_t usable = (kMaxSharedOptin + page - 1) / page * page;
    smem_region_bytes_ = usable + page;
    smem_region_ = mmap(nullptr, smem_region_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (smem_region_ == MAP_FAILED) {
        std::fprintf(stderr, "deltagate cuda-emu: cannot map shared memory\n");
        std::abort();
    }
    mprotect(static_cast<char*>(smem_region_) + usable, page, PROT_NONE);
}

uint3 BlockRunner::current_thread() const { return current_ >= 0 ? threads_[current_].idx : uint3{0, 0, 0}; }

void BlockRunner::fiber_main() {
    BlockRunner& r = *tls_runner;
    (*r.body_)();
    r.on_exit();
    r.switch_away();  // an exited thread is never resumed
    std::abort();
}


void BlockRunner::run(const LaunchSpec& spec, const std::function<void()>& body, uint3 block, const Schedule& sched) {
    const dim3 bd = spec.block;
    n_ = int(bd.x * bd.y * bd.z);
    spec_ = &spec;
    body_ = &body;
    block_ = block;
    blockIdx = block;
    blockDim = bd;
    gridDim = spec.grid;
    const size_t smem = (spec.smem + 15) / 16 * 16;
    smem_ = static_cast<char*>(smem_region_) + (smem_region_bytes_ - size_t(sysconf(_SC_PAGESIZE))) - smem;
    std::memset(smem_, 0xFF, smem);  // NaN in every float: reads of unwritten shared memory show

    while (int(stacks_.size()) < n_) stacks_.push_back(std::make_unique<FiberStack>(kStackBytes));
    threads_.assign(size_t(n_), Thread{});
    const int n_warps = (n_ + 31) / 32;
    warps_.resize(size_t(n_warps));
    for (int w = 0; w < n_warps; ++w) {
        warps_[w].arrived = 0;
        const int lanes = std::min(32, n_ - 32 * w);
        warps_[w].exists = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1);
    }
    for (int i = 0; i < n_; ++i) {
        threads_[i].idx = uint3{unsigned(i) % bd.x, (unsigned(i) / bd.x) % bd.y, unsigned(i) / (bd.x * bd.y)};
        threads_[i].sp = stacks_[i]->prepare(&fiber_main);
    }
    order_.resize(size_t(n_));
    for (int i = 0; i < n_; ++i) order_[i] = i;
    if (sched.order == Order::kReverse) std::reverse(order_.begin(), order_.end());
    at_barrier_ = exited_ = 0;
    running_ = true;
    sched_ = &sched;
    rng_.seed(sched.seed * 0x9E3779B97F4A7C15ull + (uint64_t(block.z) << 42) + (uint64_t(block.y) << 21) + block.x);
    if (sched.order == Order::kRandom) std::shuffle(order_.begin(), order_.end(), rng_);
    cursor_ = -1;
    BlockRunner* saved = tls_runner;
    tls_runner = this;
    // The fibers hand over to each other directly (switch_away); control comes back here only when no
    // thread can run: all exited, or a deadlock.
    const int first = next_ready();
    if (first >= 0) {
        current_ = first;
        threadIdx = threads_[first].idx;
        dg_emu_fiber_switch(&sched_sp_, threads_[first].sp);
    }
    if (exited_ < n_) deadlock("no thread of the block can proceed");
    current_ = -1;
    running_ = false;
    tls_runner = saved;
}

// The next ready thread after the cursor in this pass's order; at the end of a pass a new one starts
// (re-drawn in random order). -1 when no thread is ready.
int BlockRunner::next_ready() {
    for (int k = cursor_ + 1; k < n_; ++k)
        if (threads_[order_[k]].state == State::kReady) return order_[cursor_ = k];
    if (sched_->order == Order::kRandom) std::shuffle(order_.begin(), order_.end(), rng_);
    for (int k = 0; k < n_; ++k)
        if (threads_[order_[k]].state == State::kReady) return order_[cursor_ = k];
    return -1;
}

// The running thread has blocked or exited: run the next ready one, or return to run() when none is.
void BlockRunner::switch_away() {
    const int me = current_;
    const int next = next_ready();
    if (next == me) return;  // it released itself (last to arrive): carry on
    if (next < 0) {
        dg_emu_fiber_switch(&threads_[me].sp, sched_sp_);
        return;
    }
    current_ = next;
    threadIdx = threads_[next].idx;
    dg_emu_fiber_switch(&threads_[me].sp, threads_[next].sp);
    // Resumed: whoever switched here set current_ and threadIdx for this thread.
}

void BlockRunner::barrier(std::source_location where) {
    Thread& t = threads_[current_];
    t.state = State::kBarrier;
    t.where = where;
    if (++at_barrier_ + exited_ == n_) {
        for (Thread& u : threads_)
            if (u.state == State::kBarrier) u.state = State::kReady;
        at_barrier_ = 0;
    }
    switch_away();
}

void BlockRunner::on_exit() {
    Thread& t = threads_[current_];
    t.state = State::kExited;
    ++exited_;
    if (at_barrier_ > 0 && at_barrier_ + exited_ == n_) {
        for (Thread& u : threads_)
            if (u.state == State::kBarrier) u.state = State::kReady;
        at_barrier_ = 0;
    }
}

uint64_t BlockRunner::warp_op(WarpOp op, unsigned mask, uint64_t bits, int arg, int width, std::source_location where) {
    const int lane = current_ % 32, w = current_ / 32;
    Warp& wp = warps_[w];
    if (!(mask & (1u << lane))) misuse("the calling lane is not in the mask", where);
    if (mask & ~wp.exists) misuse("the mask names lanes the block does not have", where);
    if (width < 1 || width > 32 || (width & (width - 1))) misuse("width must be a power of two <= 32", where);
    if (wp.arrived == 0) {
        wp.op = op, wp.mask = mask, wp.width = width, wp.first = where;
    } else if (wp.op != op || wp.mask != mask || wp.width != width) {
        misuse((std::string("lanes of one warp meet in different collectives (first: ") + op_name(wp.op) + " at " +
                where_str(wp.first) + ")").c_str(),
               where);
    }
    wp.val[lane] = bits;
    wp.arg[lane] = arg;
    wp.arrived |= 1u << lane;
    Thread& t = threads_[current_];
    t.state = State::kWarp;
    t.op = op;
    t.where = where;
    if (wp.arrived == wp.mask) complete_warp(w);
    switch_away();
    return warps_[w].res[lane];  // read before this lane can arrive at the next collective
}

void BlockRunner::complete_warp(int w) {
    Warp& wp = warps_[w];
    unsigned ballot = 0;
    for (int l = 0; l < 32; ++l)
        if ((wp.mask >> l) & 1u && wp.val[l]) ballot |= 1u << l;
    for (int l = 0; l < 32; ++l) {
        if (!((wp.mask >> l) & 1u)) continue;
        const int seg = l / wp.width * wp.width, in_seg = l % wp.width;
        int src = l;
        switch (wp.op) {
            case WarpOp::kShflIdx: src = seg + ((wp.arg[l] % wp.width) + wp.width) % wp.width; break;
            case WarpOp::kShflUp: src = in_seg - wp.arg[l] >= 0 ? l - wp.arg[l] : l; break;
            case WarpOp::kShflDown: src = in_seg + wp.arg[l] < wp.width ? l + wp.arg[l] : l; break;
            case WarpOp::kShflXor: {
                const int x = l ^ wp.arg[l];
                src = x / wp.width * wp.width == seg ? x : l;
                break;
            }
            default: break;
        }
        switch (wp.op) {
            case WarpOp::kBallot: wp.res[l] = ballot; break;
            case WarpOp::kAny: wp.res[l] = ballot != 0; break;
            case WarpOp::kAll: wp.res[l] = ballot == wp.mask; break;
            case WarpOp::kSync: wp.res[l] = 0; break;
            default:
                // A source lane outside the mask gives an undefined value on a GPU: poison it here.
                wp.res[l] = ((wp.mask >> src) & 1u) ? wp.val[src] : 0x7FBADBAD7FBADBADull;
        }
        threads_[32 * w + l].state = State::kReady;
    }
    wp.arrived = 0;
}

unsigned BlockRunner::active_mask() const {
    const int w = current_ / 32;
    unsigned m = 0;
    for (int l = 0; l < 32 && 32 * w + l < n_; ++l)
        if (threads_[32 * w + l].state != State::kExited) m |= 1u << l;
    return m;
}

void BlockRunner::misuse(const char* what, std::source_location where) const {
    const uint3 t = threads_[current_].idx;
    std::fprintf(stderr,
                 "deltagate cuda-emu: kernel %s, block (%u,%u,%u), thread (%u,%u,%u) at %s: %s\n", spec_->name,
                 block_.x, block_.y, block_.z, t.x, t.y, t.z, where_str(where).c_str(), what);
    std::abort();
}

void BlockRunner::deadlock(const char* why) const {
    std::fprintf(stderr, "deltagate cuda-emu: DEADLOCK in kernel %s, block (%u,%u,%u) of grid (%u,%u,%u), %d threads: %s\n",
                 spec_->name, block_.x, block_.y, block_.z, spec_->grid.x, spec_->grid.y, spec_->grid.z, n_, why);
    // Group the threads by what they wait for, with their first and last linear index.
    std::map<std::string, std::vector<int>> groups;
    for (int i = 0; i < n_; ++i) {
        const Thread& t = threads_[i];
        std::string k;
        switch (t.state) {
            case State::kExited: k = "exited"; break;
            case State::kBarrier: k = "waits in __syncthreads at " + where_str(t.where); break;
            case State::kWarp: {
                const Warp& wp = warps_[i / 32];
                char buf[96];
                std::snprintf(buf, sizeof buf, " (warp %d, mask %08x, arrived %08x)", i / 32, wp.mask, wp.arrived);
                k = std::string("waits in ") + op_name(t.op) + " at " + where_str(t.where) + buf;
                break;
            }
            case State::kReady: k = "ready"; break;
        }
        groups[k].push_back(i);
    }
    for (const auto& [k, ids] : groups)
        std::fprintf(stderr, "  %zu thread(s) [%d..%d] %s\n", ids.size(), ids.front(), ids.back(), k.c_str());
    std::abort();
}

// ---- the device builtins' entry points ------------------------------------------------------------

void block_barrier(std::source_location where) { tls_runner->barrier(where); }
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t bits, int arg, int width, std::source_location where) {
    return tls_runner->warp_op(op, mask, bits, arg, width, where);
}
unsigned active_mask() { return tls_runner->active_mask(); }
void* dynamic_shared() { return tls_runner->dynamic_shared(); }

}  // namespace dg::emu
