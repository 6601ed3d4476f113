// The host side of the CUDA emulation: errors, the device's properties, memory API, copies, streams,
// events, graphs, and kernel launch over a pool of OS threads (docs/cuda.md, "Emulation").
#include <cuda_runtime.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/cuda/emu/block_runner.h"
#include "engine/cuda/emu/device_memory.h"
#include "engine/cuda/emu/emu.h"

// What cudaGraphExecUpdate compares: a node's type and, for kernels, the function (CUDA refuses an
// update that changes either; parameters, grid and copy addresses may change).
struct GraphNodeKey {
    cudaGraphNodeType type;
    const void* func;  // kernels only
    bool operator==(const GraphNodeKey&) const = default;
};
struct CUgraph_st {
    std::vector<std::function<cudaError_t()>> ops;  // in issue order: a valid topological order
    std::vector<GraphNodeKey> nodes;                 // ops[i]'s type
    std::vector<std::string> params;                 // ops[i]'s name and parameters (NodeParams)
    bool invalidated = false;
};
struct CUgraphExec_st {
    std::vector<std::function<cudaError_t()>> ops;
    std::vector<GraphNodeKey> nodes;
    std::vector<std::string> params;
};
struct CUstream_st {
    CUgraph_st* capture = nullptr;  // graph being captured into, or null
    bool capture_origin = false;    // BeginCapture was called on this stream
    cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
};
struct CUevent_st {
    std::chrono::steady_clock::time_point at{};
    bool recorded = false;
    CUgraph_st* capture = nullptr;  // recorded while its stream was capturing
};

namespace dg::emu {
namespace {

// ---- configuration and counters ---------------------------------------------------------------------

int64_t env_int(const char* name, int64_t dflt) {
    const char* v = std::getenv(name);
    return v && *v ? std::atoll(v) : dflt;
}

Schedule schedule_from_env() {
    Schedule s;
    const char* v = std::getenv("DG_CUDA_EMU_SCHEDULE");
    if (!v) return s;
    std::string str(v);
    if (str.rfind("reverse", 0) == 0) s.order = Order::kReverse;
    if (str.rfind("random", 0) == 0) {
        s.order = Order::kRandom;
        if (auto c = str.find(':'); c != std::string::npos) s.seed = std::strtoull(str.c_str() + c + 1, nullptr, 10);
    }
    return s;
}

std::mutex cfg_mu;
Schedule g_sched = schedule_from_env();
int g_threads = int(env_int("DG_CUDA_EMU_THREADS", std::max(1u, std::thread::hardware_concurrency())));
int64_t g_device_bytes = env_int("DG_CUDA_EMU_DEVICE_MB", 1024) << 20;
const int g_sms = int(env_int("DG_CUDA_EMU_SMS", 132));

struct AtomicCounters {
    std::atomic<int64_t> kernel_launches{0}, graph_launches{0}, h2d{0}, d2h{0}, d2d{0}, async{0}, memsets{0},
        syncs{0}, blocks{0}, threads{0}, bytes_d2h{0}, graph_instantiations{0}, graph_updates{0};
} g_count;

// ---- errors -----------------------------------------------------------------------------------------

thread_local cudaError_t t_last = cudaSuccess;
std::atomic<int> g_sticky{cudaSuccess};  // a fault (red zone, guard page): the "context" is corrupt

cudaError_t ret(cudaError_t e) {
    if (e != cudaSuccess) t_last = e;
    return e;
}
cudaError_t sticky() { return cudaError_t(g_sticky.load()); }
void report(const std::string& msg) { std::fprintf(stderr, "deltagate cuda-emu: %s\n", msg.c_str()); }

// ---- streams and capture ----------------------------------------------------------------------------

std::mutex api_mu;  // streams, events, graphs, function attributes
CUstream_st g_legacy_stream;
std::unordered_map<const void*, int> g_func_smem;  // cudaFuncAttributeMaxDynamicSharedMemorySize
int g_global_captures = 0;                        // streams capturing in global mode
thread_local int t_local_captures = 0;            // captures this thread began in thread-local mode

// Potentially unsafe calls (synchronous copies, memsets, allocations) are refused while any thread
// captures in global mode, or while this thread captures in thread-local mode (CUDA's rules; relaxed
// captures refuse nothing).
bool unsafe_calls_refused() { return g_global_captures > 0 || t_local_captures > 0; }

CUstream_st* resolve(cudaStream_t s) { return s ? s : &g_legacy_stream; }

// A synchronous call while some stream captures in global mode is illegal in CUDA: it invalidates the
// capture (cudaErrorStreamCaptureImplicit). Counted as a host synchronisation otherwise.
cudaError_t host_sync_point() {
    std::lock_guard<std::mutex> l(api_mu);
    if (unsafe_calls_refused()) return cudaErrorStreamCaptureImplicit;
    ++g_count.syncs;
    return cudaSuccess;
}

// A graph node's name and parameters: a kernel's name, grid, block, shared memory and argument bytes; a
// copy's addresses, size and kind. The name comes first, up to a '\0'.
// Values appended field by field: a struct's padding bytes are indeterminate.
template <typename... V>
std::string node_params(const char* name, const V&... values) {
    std::string p(name);
    p.push_back('\0');
    (p.append(reinterpret_cast<const char*>(&values), sizeof(values)), ...);
    return p;
}
std::vector<std::string> g_last_update_changes;  // last_graph_update_changes(), under api_mu

// Runs `op` now, or appends it (as a node of type `node` with the parameters `params` makes, built only
// then) to the graph the stream captures into.
cudaError_t issue(cudaStream_t s, GraphNodeKey node, std::function<cudaError_t()> op,
                  const std::function<std::string()>& params = {}) {
    {
        std::lock_guard<std::mutex> l(api_mu);
        CUstream_st* st = resolve(s);
        if (st->capture) {
            st->capture->ops.push_back(std::move(op));
            st->capture->nodes.push_back(node);
            st->capture->params.push_back(params ? params() : std::string());
            return cudaSuccess;
        }
    }
    return op();
}

// ---- kernel execution -------------------------------------------------------------------------------

// Runs blocks 0..n-1 (indices into the schedule's order) on the pool; the caller takes part.
class Pool {
public:
    void run(int64_t n, const std::function<void(int64_t)>& fn) {
        const int want = std::max(1, threads());
        if (want <= 1 || n <= 1) {
            for (int64_t i = 0; i < n; ++i) fn(i);
            return;
        }
        grow(want - 1);
        std::atomic<int64_t> next{0};
        std::function<void()> work = [&] {
            for (int64_t i; (i = next.fetch_add(1)) < n;) fn(i);
        };
        {
            std::lock_guard<std::mutex> l(mu_);
            job_ = &work;
            active_ = int(workers_.size());
            ++gen_;
        }
        cv_.notify_all();
        work();
        std::unique_lock<std::mutex> l(mu_);
        done_.wait(l, [&] { return active_ == 0; });
        job_ = nullptr;
    }

private:
    void grow(int n) {
        while (int(workers_.size()) < n)
            workers_.emplace_back([this] {
                uint64_t seen = 0;
                for (;;) {
                    std::function<void()>* job;
                    {
                        std::unique_lock<std::mutex> l(mu_);
                        cv_.wait(l, [&] { return gen_ != seen; });
                        seen = gen_;
                        job = job_;
                    }
                    (*job)();
                    std::lock_guard<std::mutex> l(mu_);
                    if (--active_ == 0) done_.notify_all();
                }
            });
    }
    std::mutex mu_;
    std::condition_variable cv_, done_;
    std::vector<std::thread> workers_;  // detached at exit: they wait on cv_ forever
    std::function<void()>* job_ = nullptr;
    uint64_t gen_ = 0;
    int active_ = 0;
};

Pool& pool() {
    static auto* p = new Pool();
    return *p;
}

// A fault inside a kernel (guard page, stack overflow): name the kernel, the block, the thread and the
// nearest allocation, then let the default action end the process.
void on_fault(int sig, siginfo_t* info, void*) {
    BlockRunner& r = BlockRunner::for_this_thread();
    const uintptr_t a = uintptr_t(info->si_addr);
    char buf[512];
    if (r.in_kernel()) {
        const uint3 t = r.current_thread();
        const std::string near = describe_address(a);
        std::snprintf(buf, sizeof buf,
                      "deltagate cuda-emu: kernel %s, block (%u,%u,%u), thread (%u,%u,%u): invalid %s at %p%s%s\n",
                      r.spec()->name, blockIdx.x, blockIdx.y, blockIdx.z, t.x, t.y, t.z,
                      sig == SIGSEGV ? "memory access" : "bus access", info->si_addr, near.empty() ? "" : ": ",
                      near.c_str());
        if (write(2, buf, strlen(buf)) < 0) {}
    }
    signal(sig, SIG_DFL);  // returning re-executes the access under the default action
}

void install_fault_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction sa {};
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, nullptr);
        sigaction(SIGBUS, &sa, nullptr);
    });
    // An alternate signal stack per OS thread that runs blocks, so a fiber's stack overflow is reported.
    thread_local bool alt = false;
    if (!alt) {
        stack_t ss{};
        ss.ss_size = 64 * 1024;
        ss.ss_sp = std::malloc(ss.ss_size);
        sigaltstack(&ss, nullptr);
        alt = true;
    }
}

std::mutex launch_mu;  // one grid at a time: kernels of one stream run in order

// Fault injection for process-level tests: DG_CUDA_EMU_FAULT_KERNEL=NAME makes the first launch of a
// kernel whose name contains NAME fail with a sticky cudaErrorIllegalAddress, as a GPU fault would.
bool inject_fault(const LaunchSpec& spec) {
    static const char* want = std::getenv("DG_CUDA_EMU_FAULT_KERNEL");
    static std::atomic<bool> done{false};
    if (!want || !*want || done.load() || !std::strstr(spec.name, want)) return false;
    if (done.exchange(true)) return false;
    report(std::string("kernel ") + spec.name + ": injected fault (DG_CUDA_EMU_FAULT_KERNEL), reported as cudaErrorIllegalAddress");
    g_sticky = cudaErrorIllegalAddress;
    return true;
}

cudaError_t execute_launch(const LaunchSpec& spec, const std::function<void()>& body) {
    if (sticky()) return sticky();
    if (inject_fault(spec)) return cudaErrorIllegalAddress;
    std::lock_guard<std::mutex> l(launch_mu);
    const Schedule sched = schedule();
    const int64_t gx = spec.grid.x, gy = spec.grid.y, gz = spec.grid.z, n = gx * gy * gz;
    std::vector<int64_t> order(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    if (sched.order == Order::kReverse) std::reverse(order.begin(), order.end());
    if (sched.order == Order::kRandom) std::shuffle(order.begin(), order.end(), std::mt19937_64(sched.seed + 1));
    pool().run(n, [&](int64_t k) {
        install_fault_handler();
        const int64_t b = order[k];
        BlockRunner::for_this_thread().run(spec, body, uint3{unsigned(b % gx), unsigned(b / gx % gy), unsigned(b / (gx * gy))},
                                           sched);
    });
    ++g_count.kernel_launches;
    g_count.blocks += n;
    g_count.threads += n * int64_t(spec.block.x) * spec.block.y * spec.block.z;
    if (std::string bad = check_red_zones(); !bad.empty()) {
        report(std::string("kernel ") + spec.name + ": " + bad + " (reported as cudaErrorIllegalAddress)");
        g_sticky = cudaErrorIllegalAddress;
        return cudaErrorIllegalAddress;
    }
    return cudaSuccess;
}

// ---- copies -----------------------------------------------------------------------------------------

const char* kind_name(cudaMemcpyKind k) {
    switch (k) {
        case cudaMemcpyHostToHost: return "HostToHost";
        case cudaMemcpyHostToDevice: return "HostToDevice";
        case cudaMemcpyDeviceToHost: return "DeviceToHost";
        case cudaMemcpyDeviceToDevice: return "DeviceToDevice";
        case cudaMemcpyDefault: return "Default";
    }
    return "?";
}

// Checks that a device side of a copy lies inside one allocation.
cudaError_t check_side(const char* api, const char* side, const void* p, size_t bytes) {
    if (find_allocation(p, bytes, nullptr)) return cudaSuccess;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s: %s [%p, +%zu) is not inside one device allocation", api, side, p, bytes);
    report(buf);
    return cudaErrorInvalidValue;
}

cudaError_t do_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, bool async) {
    if (sticky()) return sticky();
    if (bytes == 0) return cudaSuccess;
    if (kind == cudaMemcpyDefault) {
        const bool dd = is_device_pointer(dst), sd = is_device_pointer(src);
        kind = dd ? (sd ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                  : (sd ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    }
    const char* api = async ? "cudaMemcpyAsync" : "cudaMemcpy";
    const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return cudaErrorInvalidMemcpyDirection;
    if (dst_dev) if (cudaError_t e = check_side(api, (std::string(kind_name(kind)) + " destination").c_str(), dst, bytes)) return e;
    if (src_dev) if (cudaError_t e = check_side(api, (std::string(kind_name(kind)) + " source").c_str(), src, bytes)) return e;
    std::memmove(dst, src, bytes);
    if (kind == cudaMemcpyHostToDevice) ++g_count.h2d;
    if (kind == cudaMemcpyDeviceToHost) ++g_count.d2h, g_count.bytes_d2h += int64_t(bytes);
    if (kind == cudaMemcpyDeviceToDevice) ++g_count.d2d;
    if (async) ++g_count.async;
    return cudaSuccess;
}

cudaError_t do_memset(void* p, int v, size_t bytes) {
    if (sticky()) return sticky();
    if (bytes == 0) return cudaSuccess;
    if (cudaError_t e = check_side("cudaMemset", "destination", p, bytes)) return e;
    std::memset(p, v, bytes);
    ++g_count.memsets;
    return cudaSuccess;
}

}  // namespace

// ---- emu.h ----------------------------------------------------------------------------------------------

void set_schedule(const Schedule& s) {
    std::lock_guard<std::mutex> l(cfg_mu);
    g_sched = s;
}
Schedule schedule() {
    std::lock_guard<std::mutex> l(cfg_mu);
    return g_sched;
}
std::string order_name(Order o) { return o == Order::kForward ? "forward" : o == Order::kReverse ? "reverse" : "random"; }
void set_threads(int n) {
    std::lock_guard<std::mutex> l(cfg_mu);
    g_threads = std::max(1, n);
}
int threads() {
    std::lock_guard<std::mutex> l(cfg_mu);
    return g_threads;
}
Counters counters() {
    Counters c;
    c.kernel_launches = g_count.kernel_launches, c.graph_launches = g_count.graph_launches;
    c.copies_h2d = g_count.h2d, c.copies_d2h = g_count.d2h, c.copies_d2d = g_count.d2d, c.async_copies = g_count.async;
    c.memsets = g_count.memsets, c.host_syncs = g_count.syncs, c.blocks = g_count.blocks, c.threads = g_count.threads;
    c.bytes_d2h = g_count.bytes_d2h;
    c.graph_instantiations = g_count.graph_instantiations, c.graph_updates = g_count.graph_updates;
    return c;
}
void reset_counters() {
    for (auto* a : {&g_count.kernel_launches, &g_count.graph_launches, &g_count.h2d, &g_count.d2h, &g_count.d2d,
                    &g_count.async, &g_count.memsets, &g_count.syncs, &g_count.blocks, &g_count.threads,
                    &g_count.bytes_d2h, &g_count.graph_instantiations, &g_count.graph_updates})
        *a = 0;
}
int64_t device_memory_bytes() {
    std::lock_guard<std::mutex> l(cfg_mu);
    return g_device_bytes;
}
void set_device_memory_bytes(int64_t bytes) {
    std::lock_guard<std::mutex> l(cfg_mu);
    g_device_bytes = bytes;
}

cudaError_t submit_launch(const LaunchSpec& spec, std::function<void()> body,
                          const std::function<std::string()>& arg_bytes) {
    if (sticky()) return ret(sticky());
    const dim3 b = spec.block, g = spec.grid;
    const uint64_t threads = uint64_t(b.x) * b.y * b.z;
    auto bad = [&](const char* why) {
        char buf[320];
        std::snprintf(buf, sizeof buf, "launch of %s with grid (%u,%u,%u) block (%u,%u,%u) smem %zu: %s", spec.name, g.x,
                      g.y, g.z, b.x, b.y, b.z, spec.smem, why);
        report(buf);
        return ret(cudaErrorInvalidConfiguration);
    };
    if (!b.x || !b.y || !b.z || !g.x || !g.y || !g.z) return bad("a dimension is 0");
    if (threads > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64) return bad("more than 1024 threads per block");
    if (g.x > 2147483647u || g.y > 65535 || g.z > 65535) return bad("grid dimension over the device's limit");
    size_t limit = kDefaultSharedLimit;
    {
        std::lock_guard<std::mutex> l(api_mu);
        if (auto it = g_func_smem.find(spec.func); it != g_func_smem.end()) limit = std::max(limit, size_t(it->second));
    }
    if (spec.smem > limit)
        return bad(limit == kDefaultSharedLimit
                       ? "dynamic shared memory over 48 KiB without cudaFuncSetAttribute(MaxDynamicSharedMemorySize)"
                       : "dynamic shared memory over the size set with cudaFuncSetAttribute");
    const LaunchSpec copy = spec;
    return ret(issue(spec.stream, {cudaGraphNodeTypeKernel, spec.func},
                     [copy, body = std::move(body)]() { return execute_launch(copy, body); },
                     [&] { return node_params(spec.name, g.x, g.y, g.z, b.x, b.y, b.z, spec.smem) + (arg_bytes ? arg_bytes() : ""); }));
}

std::vector<std::string> last_graph_update_changes() {
    std::lock_guard<std::mutex> l(api_mu);
    return g_last_update_changes;
}

}  // namespace dg::emu

using namespace dg::emu;

// ---- errors and devices ------------------------------------------------------------------------------

cudaError_t cudaGetLastError() {
    const cudaError_t e = sticky() ? sticky() : t_last;
    t_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError() { return sticky() ? sticky() : t_last; }

const char* cudaGetErrorName(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "cudaSuccess";
        case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
        case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
        case cudaErrorInitializationError: return "cudaErrorInitializationError";
        case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
        case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
        case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
        case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
        case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
        case cudaErrorNotReady: return "cudaErrorNotReady";
        case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
        case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
        case cudaErrorNoDevice: return "cudaErrorNoDevice";
        case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
        case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
        case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
        case cudaErrorIllegalState: return "cudaErrorIllegalState";
        case cudaErrorGraphExecUpdateFailure: return "cudaErrorGraphExecUpdateFailure";
        case cudaErrorUnknown: return "cudaErrorUnknown";
    }
    return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorMemoryAllocation: return "out of memory (emulated device)";
        case cudaErrorInvalidConfiguration: return "invalid configuration argument";
        case cudaErrorIllegalAddress: return "an illegal memory access was encountered (emulated device)";
        case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
        default: return cudaGetErrorName(e);
    }
}

cudaError_t cudaGetDeviceCount(int* n) {
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : ret(cudaErrorInvalidDevice); }

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
    if (d != 0) return ret(cudaErrorInvalidDevice);
    *p = cudaDeviceProp{};
    std::snprintf(p->name, sizeof p->name, "deltagate CUDA emulation on the CPU (not a GPU)");
    p->totalGlobalMem = size_t(device_memory_bytes());
    p->sharedMemPerBlock = kDefaultSharedLimit;
    p->sharedMemPerBlockOptin = kMaxSharedOptin;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->major = 9, p->minor = 0;
    p->multiProcessorCount = g_sms;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d) {
    if (d != 0) return ret(cudaErrorInvalidDevice);
    switch (a) {
        case cudaDevAttrMaxThreadsPerBlock: *v = 1024; break;
        case cudaDevAttrMaxBlockDimX: *v = 1024; break;
        case cudaDevAttrMaxGridDimX: *v = 2147483647; break;
        case cudaDevAttrMaxGridDimY: *v = 65535; break;
        case cudaDevAttrMaxSharedMemoryPerBlock: *v = int(kDefaultSharedLimit); break;
        case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = int(kMaxSharedOptin); break;
        case cudaDevAttrWarpSize: *v = 32; break;
        case cudaDevAttrMultiProcessorCount: *v = g_sms; break;
        case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
        case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
        // No meaningful clock or bus: 0 tells bandwidth estimates there is nothing to estimate.
        case cudaDevAttrClockRate:
        case cudaDevAttrMemoryClockRate:
        case cudaDevAttrGlobalMemoryBusWidth:
        case cudaDevAttrL2CacheSize: *v = 0; break;
        default: return ret(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
    if (sticky()) return ret(sticky());
    return ret(host_sync_point());
}
cudaError_t cudaDeviceReset() {
    g_sticky = cudaSuccess;
    t_last = cudaSuccess;
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
    const int64_t total = device_memory_bytes();
    *total_bytes = size_t(total);
    *free_bytes = size_t(std::max<int64_t>(0, total - device_bytes_in_use()));
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
    if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || size_t(value) > kMaxSharedOptin)
        return ret(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> l(api_mu);
    g_func_smem[func] = value;
    return cudaSuccess;
}

// ---- memory ------------------------------------------------------------------------------------------------

cudaError_t cudaMalloc(void** p, size_t bytes) {
    if (sticky()) return ret(sticky());
    if (!p) return ret(cudaErrorInvalidValue);
    {
        std::lock_guard<std::mutex> l(api_mu);
        if (unsafe_calls_refused()) return ret(cudaErrorStreamCaptureUnsupported);
    }
    *p = nullptr;
    if (bytes == 0) return cudaSuccess;
    *p = device_alloc(bytes);
    return *p ? cudaSuccess : ret(cudaErrorMemoryAllocation);
}

cudaError_t cudaFree(void* p) {
    if (!p) return cudaSuccess;
    if (std::string bad = check_red_zones(); !bad.empty()) {
        report("at cudaFree: " + bad + " (reported as cudaErrorIllegalAddress)");
        g_sticky = cudaErrorIllegalAddress;
    }
    if (!device_free(p)) {
        char buf[128];
        std::snprintf(buf, sizeof buf, "cudaFree(%p): not a live device allocation", p);
        report(buf);
        return ret(cudaErrorInvalidDevicePointer);
    }
    return sticky() ? ret(sticky()) : cudaSuccess;
}

cudaError_t cudaMallocHost(void** p, size_t bytes) {
    *p = bytes ? std::aligned_alloc(256, (bytes + 255) / 256 * 256) : nullptr;
    return bytes && !*p ? ret(cudaErrorMemoryAllocation) : cudaSuccess;
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) { return cudaMallocHost(p, bytes); }
cudaError_t cudaFreeHost(void* p) {
    std::free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    if (cudaError_t e = host_sync_point()) return ret(e);
    return ret(do_copy(dst, src, bytes, kind, false));
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
    return ret(issue(s, {cudaGraphNodeTypeMemcpy, nullptr}, [=] { return do_copy(dst, src, bytes, kind, true); },
                     [&] { return node_params("cudaMemcpyAsync", dst, src, bytes, kind); }));
}
cudaError_t cudaMemset(void* p, int v, size_t bytes) {
    if (cudaError_t e = host_sync_point()) return ret(e);
    return ret(do_memset(p, v, bytes));
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t bytes, cudaStream_t s) {
    return ret(issue(s, {cudaGraphNodeTypeMemset, nullptr}, [=] { return do_memset(p, v, bytes); }));
}

// ---- streams, events, graphs -----------------------------------------------------------------------------

cudaError_t cudaStreamCreate(cudaStream_t* s) {
    *s = new CUstream_st();
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { return cudaStreamCreate(s); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (!s) return ret(cudaErrorInvalidResourceHandle);
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    {
        std::lock_guard<std::mutex> l(api_mu);
        if (resolve(s)->capture) return ret(cudaErrorStreamCaptureUnsupported);
    }
    if (sticky()) return ret(sticky());
    return ret(host_sync_point());
}
cudaError_t cudaStreamQuery(cudaStream_t) { return sticky() ? ret(sticky()) : cudaSuccess; }

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
    if (!e) return ret(cudaErrorInvalidResourceHandle);
    std::lock_guard<std::mutex> l(api_mu);
    CUstream_st* st = resolve(s);
    // Waiting on an event recorded in a capture joins this stream to that capture (fork/join capture).
    if (e->capture && !st->capture) st->capture = e->capture;
    return cudaSuccess;  // otherwise: execution is already in issue order
}

cudaError_t cudaEventCreate(cudaEvent_t* e) {
    *e = new CUevent_st();
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    if (!e) return ret(cudaErrorInvalidResourceHandle);
    {
        std::lock_guard<std::mutex> l(api_mu);
        e->capture = resolve(s)->capture;
    }
    return ret(issue(s, {cudaGraphNodeTypeEventRecord, nullptr}, [e] {
        e->at = std::chrono::steady_clock::now();
        e->recorded = true;
        return cudaSuccess;
    }));
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (!e) return ret(cudaErrorInvalidResourceHandle);
    return ret(host_sync_point());
}
cudaError_t cudaEventQuery(cudaEvent_t e) { return e ? cudaSuccess : ret(cudaErrorInvalidResourceHandle); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
    if (!a || !b || !a->recorded || !b->recorded) return ret(cudaErrorInvalidResourceHandle);
    *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    std::lock_guard<std::mutex> l(api_mu);
    if (!s) return ret(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot capture
    if (s->capture) return ret(cudaErrorIllegalState);
    s->capture = new CUgraph_st();
    s->capture_origin = true;
    s->mode = mode;
    if (mode == cudaStreamCaptureModeGlobal) ++g_global_captures;
    if (mode == cudaStreamCaptureModeThreadLocal) ++t_local_captures;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
    std::lock_guard<std::mutex> l(api_mu);
    if (!s || !s->capture || !s->capture_origin) return ret(cudaErrorIllegalState);
    CUgraph_st* graph = s->capture;
    s->capture = nullptr;
    s->capture_origin = false;
    if (s->mode == cudaStreamCaptureModeGlobal) --g_global_captures;
    if (s->mode == cudaStreamCaptureModeThreadLocal && t_local_captures > 0) --t_local_captures;
    // Streams that joined through an event leave the capture with it (a real capture requires them to
    // have joined back into the origin stream; the emulation does not track that).
    if (g_legacy_stream.capture == graph) g_legacy_stream.capture = nullptr;
    *g = graph;
    return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* st) {
    std::lock_guard<std::mutex> l(api_mu);
    *st = resolve(s)->capture ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusNone;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t g, unsigned long long) {
    if (!g) return ret(cudaErrorInvalidValue);
    *exec = new CUgraphExec_st{g->ops, g->nodes, g->params};
    ++g_count.graph_instantiations;
    return cudaSuccess;
}
// CUDA's rules, reduced to what the emulation records: the same nodes in the same order, of the same
// types, kernels of the same functions; then the executable graph takes the new graph's parameters
// (kernel arguments, grids, copy addresses and sizes). Otherwise it fails, leaving `exec` unchanged.
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t exec, cudaGraph_t g, cudaGraphExecUpdateResultInfo* info) {
    if (!exec || !g) return ret(cudaErrorInvalidValue);
    cudaGraphExecUpdateResultInfo r{cudaGraphExecUpdateSuccess, nullptr, nullptr};
    if (g->nodes.size() != exec->nodes.size()) {
        r.result = cudaGraphExecUpdateErrorTopologyChanged;
    } else {
        for (size_t i = 0; i < g->nodes.size() && r.result == cudaGraphExecUpdateSuccess; ++i) {
            if (g->nodes[i].type != exec->nodes[i].type) r.result = cudaGraphExecUpdateErrorNodeTypeChanged;
            else if (g->nodes[i].func != exec->nodes[i].func) r.result = cudaGraphExecUpdateErrorFunctionChanged;
        }
    }
    if (info) *info = r;
    if (r.result != cudaGraphExecUpdateSuccess) return ret(cudaErrorGraphExecUpdateFailure);
    std::vector<std::string> changed;
    for (size_t i = 0; i < g->params.size(); ++i)
        if (g->params[i] != exec->params[i]) changed.push_back(g->params[i].substr(0, g->params[i].find('\0')));
    {
        std::lock_guard<std::mutex> l(api_mu);
        g_last_update_changes = std::move(changed);
    }
    exec->ops = g->ops;
    exec->params = g->params;
    ++g_count.graph_updates;
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    if (!exec) return ret(cudaErrorInvalidValue);
    ++g_count.graph_launches;
    return ret(issue(s, {cudaGraphNodeTypeGraph, nullptr}, [exec] {
        for (auto& op : exec->ops)
            if (cudaError_t e = op()) return e;
        return cudaSuccess;
    }));
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
    delete exec;
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
