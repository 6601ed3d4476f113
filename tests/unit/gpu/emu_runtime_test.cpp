// The CUDA emulation's runtime (engine/cuda/emu/) on its own: barriers, warp collectives, launch
// limits, memory checks, deadlock reports, streams and graphs, schedule perturbation. Only in the
// emulation build (-DDELTAGATE_CUDA_EMU=ON); kernels here are plain CUDA, compiled as C++.
#include <gtest/gtest.h>

#ifndef DG_CUDA_EMU

TEST(CudaEmu, NeedsTheEmulationBuild) { GTEST_SKIP() << "configure with -DDELTAGATE_CUDA_EMU=ON"; }

#else

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "engine/cuda/emu/emu.h"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.cuh"

namespace dg::cuda_fixture_nosync {  // tests/cmake/cuda_emu.cmake: gdn_decode.cu with one barrier removed
void fixture_gdn_decode(const cuda::GdnLayerArgs& a, const cuda::DevSeq* seqs_dev, int32_t n_seqs,
                        const cuda::GdnWorkspace& ws, int cols, cudaStream_t s);
}

namespace dg {
namespace {

#define CK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr << ": " << cudaGetErrorName(cudaGetLastError())

template <typename T>
struct Dev {
    T* p = nullptr;
    size_t n = 0;
    explicit Dev(size_t count) : n(count) { EXPECT_EQ(cudaMalloc(&p, n * sizeof(T)), cudaSuccess); }
    explicit Dev(const std::vector<T>& h) : Dev(h.size()) { put(h); }
    ~Dev() { cudaFree(p); }
    void put(const std::vector<T>& h) { EXPECT_EQ(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess); }
    std::vector<T> get() const {
        std::vector<T> h(n);
        EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
        return h;
    }
};

// Restores the default schedule after a test that changes it.
struct ScheduleGuard {
    ~ScheduleGuard() { emu::set_schedule({}); }
};

// ---- barriers and warp collectives -------------------------------------------------------------------

// Half the block returns before the barrier; the rest must still pass it (exited threads count as arrived).
__global__ void exit_then_barrier(int* out) {
    __shared__ int slot[256];
    if (threadIdx.x % 2) return;
    slot[threadIdx.x] = int(threadIdx.x);
    __syncthreads();
    out[threadIdx.x] = slot[(threadIdx.x + 2) % blockDim.x];
}

TEST(CudaEmu, BarrierCountsExitedThreads) {
    Dev<int> out(std::vector<int>(256, -1));
    CK(DG_LAUNCH(exit_then_barrier, 1, 256, 0, nullptr, out.p));
    const auto h = out.get();
    for (int i = 0; i < 256; i += 2) EXPECT_EQ(h[i], (i + 2) % 256);
    for (int i = 1; i < 256; i += 2) EXPECT_EQ(h[i], -1);
}

// Every shuffle kind at width 32 and 16, in warp 1 only (the block's other warps never shuffle).
__global__ void shuffles(int* out) {
    const int lane = threadIdx.x % 32;
    if (threadIdx.x / 32 != 1) return;
    int* o = out + lane * 8;
    o[0] = __shfl_xor_sync(0xffffffffu, lane, 5);
    o[1] = __shfl_up_sync(0xffffffffu, lane, 3);
    o[2] = __shfl_down_sync(0xffffffffu, lane, 3);
    o[3] = __shfl_sync(0xffffffffu, lane * 10, 7);
    o[4] = __shfl_xor_sync(0xffffffffu, lane, 8, 16);
    o[5] = __shfl_down_sync(0xffffffffu, lane, 3, 16);
    o[6] = int(__ballot_sync(0xffffffffu, lane % 3 == 0));
    o[7] = __all_sync(0xffffffffu, lane < 32) + 2 * __any_sync(0xffffffffu, lane == 31);
}

TEST(CudaEmu, WarpShufflesAndVotes) {
    Dev<int> out(32 * 8);
    CK(DG_LAUNCH(shuffles, 1, 128, 0, nullptr, out.p));
    const auto h = out.get();
    unsigned ballot = 0;
    for (int l = 0; l < 32; l += 3) ballot |= 1u << l;
    for (int l = 0; l < 32; ++l) {
        const int* o = h.data() + l * 8;
        EXPECT_EQ(o[0], l ^ 5);
        EXPECT_EQ(o[1], l >= 3 ? l - 3 : l);
        EXPECT_EQ(o[2], l + 3 < 32 ? l + 3 : l);
        EXPECT_EQ(o[3], 70);
        EXPECT_EQ(o[4], l ^ 8);
        EXPECT_EQ(o[5], l % 16 + 3 < 16 ? l + 3 : l);
        EXPECT_EQ(unsigned(o[6]), ballot);
        EXPECT_EQ(o[7], 3);
    }
}

// Blocks on several OS threads: atomics are real ones.
__global__ void count_up(unsigned* n, float* f) {
    atomicAdd(n, 1u);
    if (threadIdx.x == 0) atomicAdd(f, 0.5f);
}

TEST(CudaEmu, AtomicsAcrossBlocks) {
    Dev<unsigned> n(std::vector<unsigned>{0});
    Dev<float> f(std::vector<float>{0.f});
    CK(DG_LAUNCH(count_up, 200, 64, 0, nullptr, n.p, f.p));
    EXPECT_EQ(n.get()[0], 200u * 64u);
    EXPECT_EQ(f.get()[0], 100.f);
}

// ---- launch limits ---------------------------------------------------------------------------------------

__global__ void dyn_smem_fill(float* out, int n) {
    DG_DYNAMIC_SHARED(float, sm);
    for (int i = threadIdx.x; i < n; i += blockDim.x) sm[i] = float(i);
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = sm[n - 1 - i];
}

TEST(CudaEmu, LaunchLimitsOfARealDevice) {
    Dev<float> out(64 * 1024);
    EXPECT_EQ(DG_LAUNCH(dyn_smem_fill, 1, 1025, 0, nullptr, out.p, 1), cudaErrorInvalidConfiguration);
    EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // not sticky
    EXPECT_EQ(DG_LAUNCH(dyn_smem_fill, dim3(1, 65536), 32, 0, nullptr, out.p, 1), cudaErrorInvalidConfiguration);
    const int n = 60 * 1024 / 4;  // 60 KiB: over the default 48 KiB
    EXPECT_EQ(DG_LAUNCH(dyn_smem_fill, 1, 256, n * 4, nullptr, out.p, n), cudaErrorInvalidConfiguration);
    cudaGetLastError();
    CK(cudaFuncSetAttribute(dyn_smem_fill, cudaFuncAttributeMaxDynamicSharedMemorySize, n * 4));
    CK(DG_LAUNCH(dyn_smem_fill, 1, 256, n * 4, nullptr, out.p, n));
    const auto h = out.get();
    for (int i = 0; i < n; ++i) ASSERT_EQ(h[i], float(n - 1 - i));
    EXPECT_EQ(cudaFuncSetAttribute(dyn_smem_fill, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 * 1024),
              cudaErrorInvalidValue);
    cudaGetLastError();
}

// ---- memory checks ---------------------------------------------------------------------------------------

TEST(CudaEmu, NewMemoryIsNaNAndCopiesAreBoundsChecked) {
    Dev<float> d(1000);
    for (float v : d.get()) ASSERT_TRUE(std::isnan(v));
    std::vector<float> h(1001, 1.f);
    EXPECT_EQ(cudaMemcpy(d.p, h.data(), 1001 * 4, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
    EXPECT_EQ(cudaMemcpy(h.data(), d.p + 1, 1000 * 4, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
    EXPECT_EQ(cudaMemcpy(d.p, h.data(), 1000 * 4, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);  // wrong way
    EXPECT_EQ(cudaMemset(d.p + 999, 0, 8), cudaErrorInvalidValue);
    cudaGetLastError();
    size_t free_b = 0, total = 0;
    CK(cudaMemGetInfo(&free_b, &total));
    EXPECT_EQ(int64_t(total), emu::device_memory_bytes());
    float* big = nullptr;
    EXPECT_EQ(cudaMalloc(&big, total + 1), cudaErrorMemoryAllocation);
    cudaGetLastError();
}

__global__ void write_at(float* p, int i) { p[i] = 1.f; }

// One float past the end lands in the red zone: reported after the kernel, as a GPU reports an
// illegal address (sticky until the device is reset).
TEST(CudaEmu, RedZoneCatchesAnOverrun) {
    Dev<float> d(1000);  // 4000 bytes: the red zone runs to 4096
    CK(DG_LAUNCH(write_at, 1, 1, 0, nullptr, d.p, 999));
    EXPECT_EQ(DG_LAUNCH(write_at, 1, 1, 0, nullptr, d.p, 1000), cudaErrorIllegalAddress);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaErrorIllegalAddress);
    CK(cudaDeviceReset());
    CK(DG_LAUNCH(write_at, 1, 1, 0, nullptr, d.p, 0));
}

TEST(CudaEmuDeathTest, GuardPageCatchesAFarOverrun) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            float* p = nullptr;
            cudaMalloc(&p, 4096);
            (void)DG_LAUNCH(write_at, 1, 1, 0, nullptr, p, 4096 / 4 + 64);
        },
        "kernel write_at, block \\(0,0,0\\), thread \\(0,0,0\\): invalid memory access .* past the end of the "
        "4096-byte device allocation");
}

// Lane 0 waits in __syncthreads while its warp's other lanes wait in a full-mask shuffle: neither can
// complete. The report names the kernel and where each group of threads waits.
__global__ void deadlock_kernel(int* out) {
    if (threadIdx.x == 0) __syncthreads();
    else out[threadIdx.x] = __shfl_sync(0xffffffffu, int(threadIdx.x), 0);
}

TEST(CudaEmuDeathTest, DeadlockIsReported) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH(
        {
            int* p = nullptr;
            cudaMalloc(&p, 64 * 4);
            (void)DG_LAUNCH(deadlock_kernel, 1, 64, 0, nullptr, p);
        },
        "DEADLOCK in kernel deadlock_kernel(.|\n)*waits in __shfl_sync at .*emu_runtime_test.cpp");
}

// ---- streams, events, graphs -----------------------------------------------------------------------------

__global__ void axpb(float* x, float a, float b, int n) {
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) x[i] = a * x[i] + b;
}

TEST(CudaEmu, GraphCaptureRecordsThenReplaysInOrder) {
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    const int n = 300;
    Dev<float> d(n);
    std::vector<float> host(n, 1.f);
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CK(cudaMemcpyAsync(d.p, host.data(), n * 4, cudaMemcpyHostToDevice, s));
    CK(DG_LAUNCH(axpb, 3, 128, 0, s, d.p, 2.f, 1.f, n));
    CK(DG_LAUNCH(axpb, 3, 128, 0, s, d.p, 3.f, 0.f, n));
    // A synchronous copy while a global-mode capture is open is an error, as on a GPU.
    float one = 0;
    EXPECT_EQ(cudaMemcpy(&one, d.p, 4, cudaMemcpyDeviceToHost), cudaErrorStreamCaptureImplicit);
    EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureImplicit);
    cudaGraph_t g;
    CK(cudaStreamEndCapture(s, &g));
    for (float v : d.get()) ASSERT_TRUE(std::isnan(v));  // nothing ran during the capture
    cudaGraphExec_t exec;
    CK(cudaGraphInstantiate(&exec, g, 0));
    emu::reset_counters();
    CK(cudaGraphLaunch(exec, s));
    CK(cudaStreamSynchronize(s));
    for (float v : d.get()) ASSERT_EQ(v, 9.f);  // (1 * 2 + 1) * 3
    host.assign(n, 2.f);                        // the graph's copy reads the host buffer at replay
    CK(cudaGraphLaunch(exec, s));
    for (float v : d.get()) ASSERT_EQ(v, 15.f);
    const emu::Counters c = emu::counters();
    EXPECT_EQ(c.graph_launches, 2);
    EXPECT_EQ(c.kernel_launches, 4);
    EXPECT_EQ(c.async_copies, 2);
    EXPECT_EQ(c.host_syncs, 1 + 2);  // the stream sync and the two get() copies
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    CK(cudaEventRecord(a, s));
    CK(cudaGraphLaunch(exec, s));
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float ms = -1;
    CK(cudaEventElapsedTime(&ms, a, b));
    EXPECT_GE(ms, 0.f);
    cudaEventDestroy(a), cudaEventDestroy(b);
    cudaGraphExecDestroy(exec), cudaGraphDestroy(g), cudaStreamDestroy(s);
}

// ---- schedule perturbation -------------------------------------------------------------------------------

// A GDN decode problem at Qwen3.5's head size (dk = 128, so the q/k L2 norm reads values that other
// warps wrote) with random inputs and states.
struct DecodeProblem {
    GdnDims d{1, 2, 128, 32, 4, 2 * 128 + 2 * 32};
    int32_t n_seqs = 3;
    std::vector<float> conv_w, dt_bias, ssm_a, norm_w, qkv, z, b, a, states;
    int64_t slot_floats() const { return (d.K - 1) * d.conv_dim + d.Hv * d.dk * d.dv; }
    explicit DecodeProblem(uint32_t seed) {
        std::mt19937 rng(seed);
        std::normal_distribution<float> nd;
        auto fill = [&](std::vector<float>& v, size_t n, float sc) {
            v.resize(n);
            for (float& x : v) x = sc * nd(rng);
        };
        fill(conv_w, d.conv_dim * d.K, 0.5f), fill(dt_bias, d.Hv, 1.f), fill(ssm_a, d.Hv, 1.f);
        for (float& x : ssm_a) x = -std::exp(x);
        fill(norm_w, d.dv, 1.f), fill(qkv, n_seqs * d.conv_dim, 1.f), fill(z, n_seqs * d.Hv * d.dv, 1.f);
        fill(b, n_seqs * d.Hv, 1.f), fill(a, n_seqs * d.Hv, 1.f), fill(states, n_seqs * slot_floats(), 0.3f);
    }
};

enum class Which { kReal, kNoSyncFixture };

std::vector<float> run_decode(const DecodeProblem& pr, Which which) {
    Dev<float> conv_w(pr.conv_w), dt_bias(pr.dt_bias), ssm_a(pr.ssm_a), norm_w(pr.norm_w), qkv(pr.qkv), z(pr.z),
        b(pr.b), a(pr.a), states(pr.states), o(size_t(pr.n_seqs) * pr.d.Hv * pr.d.dv);
    std::vector<cuda::DevSeq> seqs;
    for (int32_t i = 0; i < pr.n_seqs; ++i) seqs.push_back(cuda::DevSeq{i, 1, 5, i, nullptr});
    Dev<cuda::DevSeq> dseqs(seqs);
    Dev<float> partial(size_t(cuda::gdn_workspace_floats(pr.n_seqs, pr.d)));
    Dev<uint32_t> arrivals(std::vector<uint32_t>(size_t(cuda::gdn_arrival_words(pr.n_seqs, pr.d)), 0u));
    const cuda::GdnLayerArgs args{pr.d, conv_w.p, dt_bias.p, ssm_a.p, norm_w.p, 1e-6f, qkv.p, z.p, b.p, a.p, o.p,
                                  cuda::GdnLayerState{states.p, pr.slot_floats(), (pr.d.K - 1) * pr.d.conv_dim}};
    const cuda::GdnWorkspace ws{partial.p, arrivals.p};
    if (which == Which::kReal) cuda::gdn_decode(args, dseqs.p, pr.n_seqs, ws, 32, nullptr);
    else cuda_fixture_nosync::fixture_gdn_decode(args, dseqs.p, pr.n_seqs, ws, 32, nullptr);
    std::vector<float> out = o.get();
    const std::vector<float> st = states.get();
    out.insert(out.end(), st.begin(), st.end());
    return out;
}

bool same_bits(const std::vector<float>& x, const std::vector<float>& y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

// y[i] = x[i] * scale[0] + pos[0]: per-step values read from device memory, so a graph captured once
// replays correctly while they change (what the decode step's graphs rely on).
__global__ void scale_shift(const float* x, const float* scale, const int* pos, float* y, int n) {
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) y[i] = x[i] * scale[0] + float(pos[0]);
}
__global__ void negate(float* x, int n) {
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) x[i] = -x[i];
}

// A graph replayed over several "steps" whose metadata (a position and a scale) is refreshed by an
// asynchronous upload from pinned memory inside the graph gives what eager execution gives, step by step.
TEST(CudaEmu, GraphReplayReadsPerStepValuesFromDevice) {
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    const int n = 200;
    std::vector<float> xs(n);
    for (int i = 0; i < n; ++i) xs[i] = float(i) * 0.25f - 7.f;
    Dev<float> x(xs), y(n), meta_f(1);
    Dev<int> meta_i(1);
    struct Meta { float scale; int pos; };
    Meta* pinned = nullptr;
    CK(cudaMallocHost(&pinned, sizeof(Meta)));
    auto record = [&] {
        CK(cudaMemcpyAsync(meta_f.p, &pinned->scale, 4, cudaMemcpyHostToDevice, s));
        CK(cudaMemcpyAsync(meta_i.p, &pinned->pos, 4, cudaMemcpyHostToDevice, s));
        CK(DG_LAUNCH(scale_shift, 2, 128, 0, s, x.p, meta_f.p, meta_i.p, y.p, n));
    };
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    record();
    cudaGraph_t g;
    CK(cudaStreamEndCapture(s, &g));
    cudaGraphExec_t exec;
    CK(cudaGraphInstantiate(&exec, g, 0));
    for (int step = 0; step < 5; ++step) {
        *pinned = Meta{1.5f + float(step), 17 * step + 3};
        record();  // eager
        CK(cudaStreamSynchronize(s));
        const std::vector<float> eager = y.get();
        CK(cudaMemset(y.p, 0, n * 4));
        emu::reset_counters();
        CK(cudaGraphLaunch(exec, s));
        EXPECT_EQ(emu::counters().graph_launches, 1);
        EXPECT_EQ(emu::counters().kernel_launches, 1);
        EXPECT_EQ(emu::counters().host_syncs, 0);
        CK(cudaStreamSynchronize(s));
        const std::vector<float> replay = y.get();
        for (int i = 0; i < n; ++i) ASSERT_EQ(replay[i], xs[i] * pinned->scale + float(pinned->pos)) << step << " " << i;
        ASSERT_EQ(std::memcmp(eager.data(), replay.data(), n * 4), 0) << "step " << step;
    }
    cudaGraphExecDestroy(exec), cudaGraphDestroy(g), cudaFreeHost(pinned), cudaStreamDestroy(s);
}

// A thread-local capture refuses the capturing thread's synchronous calls (as a global one does) and
// leaves other threads alone, as CUDA does.
TEST(CudaEmu, ThreadLocalCaptureRefusesOnlyTheCapturingThread) {
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    Dev<float> d(4);
    float host[4] = {1, 2, 3, 4};
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    EXPECT_EQ(cudaMemcpy(d.p, host, 16, cudaMemcpyHostToDevice), cudaErrorStreamCaptureImplicit);
    EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureImplicit);
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, 64), cudaErrorStreamCaptureUnsupported);
    cudaGetLastError();
    cudaError_t other = cudaErrorUnknown;
    std::thread([&] { other = cudaMemcpy(d.p, host, 16, cudaMemcpyHostToDevice); }).join();
    EXPECT_EQ(other, cudaSuccess);
    cudaGraph_t g;
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaMemcpy(d.p, host, 16, cudaMemcpyHostToDevice));  // allowed again after the capture
    cudaGraphDestroy(g), cudaStreamDestroy(s);
}

// cudaGraphExecUpdate takes a re-captured graph's parameters when the nodes match (same types, same
// kernels, in order) and refuses, leaving the executable graph as it was, when they do not.
TEST(CudaEmu, GraphExecUpdateFollowsCudaRules) {
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    const int n = 64;
    Dev<float> d(n);
    std::vector<float> ones(n, 1.f);
    auto capture = [&](float a, bool extra_kernel, bool other_kernel) {
        cudaGraph_t g = nullptr;
        EXPECT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
        EXPECT_EQ(cudaMemcpyAsync(d.p, ones.data(), n * 4, cudaMemcpyHostToDevice, s), cudaSuccess);
        const cudaError_t launched = other_kernel ? DG_LAUNCH(negate, 1, 64, 0, s, d.p, n)
                                                  : DG_LAUNCH(axpb, 1, 64, 0, s, d.p, a, 0.f, n);
        EXPECT_EQ(launched, cudaSuccess);
        if (extra_kernel) {
            EXPECT_EQ(DG_LAUNCH(axpb, 1, 64, 0, s, d.p, 1.f, 1.f, n), cudaSuccess);
        }
        EXPECT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
        return g;
    };
    cudaGraph_t g1 = capture(2.f, false, false);
    cudaGraphExec_t exec;
    CK(cudaGraphInstantiate(&exec, g1, 0));
    CK(cudaGraphLaunch(exec, s));
    EXPECT_EQ(d.get()[5], 2.f);
    cudaGraph_t g2 = capture(5.f, false, false);  // new kernel argument: updated in place
    cudaGraphExecUpdateResultInfo info{};
    CK(cudaGraphExecUpdate(exec, g2, &info));
    EXPECT_EQ(info.result, cudaGraphExecUpdateSuccess);
    // The audit of replays without re-capture: the update changed the kernel's argument, not the copy.
    EXPECT_EQ(emu::last_graph_update_changes(), std::vector<std::string>{"axpb"});
    cudaGraph_t g2b = capture(5.f, false, false);  // the same parameters: nothing changes
    CK(cudaGraphExecUpdate(exec, g2b, &info));
    EXPECT_TRUE(emu::last_graph_update_changes().empty());
    cudaGraphDestroy(g2b);
    CK(cudaGraphLaunch(exec, s));
    EXPECT_EQ(d.get()[5], 5.f);
    cudaGraph_t g3 = capture(7.f, true, false);  // one more node: refused
    EXPECT_EQ(cudaGraphExecUpdate(exec, g3, &info), cudaErrorGraphExecUpdateFailure);
    EXPECT_EQ(cudaGetLastError(), cudaErrorGraphExecUpdateFailure);
    EXPECT_EQ(info.result, cudaGraphExecUpdateErrorTopologyChanged);
    cudaGraph_t g4 = capture(7.f, false, true);  // another kernel: refused
    EXPECT_EQ(cudaGraphExecUpdate(exec, g4, &info), cudaErrorGraphExecUpdateFailure);
    cudaGetLastError();
    EXPECT_EQ(info.result, cudaGraphExecUpdateErrorFunctionChanged);
    CK(cudaGraphLaunch(exec, s));  // still g2's parameters
    EXPECT_EQ(d.get()[5], 5.f);
    for (cudaGraph_t g : {g1, g2, g3, g4}) cudaGraphDestroy(g);
    cudaGraphExecDestroy(exec), cudaStreamDestroy(s);
}

// The real fused decode kernel gives the same bits under every order; the fixture copy with the barrier
// after the conv phase removed does not (warp 0 normalises q before warps 1-3 have written it).
TEST(CudaEmu, SchedulePerturbationExposesAMissingBarrier) {
    ScheduleGuard guard;
    const DecodeProblem pr(5);
    std::vector<float> real[3], fixture[3];
    const emu::Schedule orders[3] = {{emu::Order::kForward, 0}, {emu::Order::kReverse, 0}, {emu::Order::kRandom, 7}};
    for (int i = 0; i < 3; ++i) {
        emu::set_schedule(orders[i]);
        real[i] = run_decode(pr, Which::kReal);
        fixture[i] = run_decode(pr, Which::kNoSyncFixture);
    }
    EXPECT_TRUE(same_bits(real[0], real[1])) << "the real kernel differs between forward and reverse order";
    EXPECT_TRUE(same_bits(real[0], real[2])) << "the real kernel differs between forward and random order";
    EXPECT_FALSE(same_bits(fixture[0], fixture[1]) && same_bits(fixture[0], fixture[2]))
        << "removing the barrier went unnoticed";
    for (float v : real[0]) ASSERT_TRUE(std::isfinite(v));
}

// ---- __dp4a and the cuBLAS stand-in ---------------------------------------------------------------------

__global__ void dp4a_kernel(const int* a, const int* b, const int* c, int* out_s, unsigned* out_u, int n) {
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= n) return;
    out_s[i] = __dp4a(a[i], b[i], c[i]);
    out_u[i] = __dp4a(unsigned(a[i]), unsigned(b[i]), unsigned(c[i]));
}

// The signed and unsigned byte dot products against a plain loop over the bytes, extremes included
// (-128 * -128 four times, 255 * 255, and an accumulator that wraps modulo 2^32).
TEST(CudaEmu, Dp4aIsTheByteDotProduct) {
    std::mt19937 rng(5);
    std::vector<int> a, b, c;
    for (int i = 0; i < 500; ++i) a.push_back(int(rng())), b.push_back(int(rng())), c.push_back(int(rng()));
    a.push_back(int(0x80808080u)), b.push_back(int(0x80808080u)), c.push_back(0);
    a.push_back(-1), b.push_back(-1), c.push_back(0x7fffffff);
    const int n = int(a.size());
    Dev<int> da(a), db(b), dc(c), ds(n);
    Dev<unsigned> du(n);
    CK(DG_LAUNCH(dp4a_kernel, (n + 127) / 128, 128, 0, nullptr, da.p, db.p, dc.p, ds.p, du.p, n));
    const auto gs = ds.get();
    const auto gu = du.get();
    for (int i = 0; i < n; ++i) {
        int64_t ws = c[i];
        uint64_t wu = uint32_t(c[i]);
        for (int k = 0; k < 4; ++k) {
            ws += int64_t(int8_t(uint32_t(a[i]) >> (8 * k))) * int8_t(uint32_t(b[i]) >> (8 * k));
            wu += uint64_t((uint32_t(a[i]) >> (8 * k)) & 0xFF) * ((uint32_t(b[i]) >> (8 * k)) & 0xFF);
        }
        EXPECT_EQ(gs[i], int32_t(uint32_t(uint64_t(ws)))) << i;
        EXPECT_EQ(gu[i], uint32_t(wu)) << i;
    }
    EXPECT_EQ(gs[n - 2], 4 * 128 * 128);
}

// cublasGemmEx as deltagate calls it (engine/cuda/gemm.cu: op T × op N, bf16 or f32 in, f32 out, ldc
// wider than m) and the other transposes, against a double loop over the same rounded inputs: fp32
// accumulation of exact products, so the difference is bounded by k ulps of the sum of |products|.
// The serving matmul's GEMM runs inside the decode step's graph (docs/cuda.md "The step"): the stand-in
// issues cublasGemmEx on the handle's stream, so a capture on that stream records it (nothing runs until
// the graph is launched), and a handle on another stream is not captured.
TEST(CudaEmu, CublasGemmExIsCapturedOnItsStream) {
    cublasHandle_t h = nullptr;
    ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    cudaStream_t st = nullptr, other = nullptr;
    CK(cudaStreamCreate(&st));
    CK(cudaStreamCreate(&other));
    // C[2x2] = A[2x3] * B[3x2], column-major, no transposes.
    const std::vector<float> A = {1, 2, 3, 4, 5, 6}, B = {1, 0, 1, 0, 1, 1};
    Dev<float> dA(A), dB(B), dC(std::vector<float>(4, 7.f));
    const float alpha = 1.f, beta = 0.f;
    auto gemm = [&] {
        return cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &alpha, dA.p, CUDA_R_32F, 2, dB.p, CUDA_R_32F, 3, &beta,
                            dC.p, CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    };
    const std::vector<float> want = {1 + 5, 2 + 6, 3 + 5, 4 + 6};
    Dev<float> workspace(1024);  // cudaMalloc: 256-byte aligned
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    ASSERT_EQ(cublasSetStream(h, st), CUBLAS_STATUS_SUCCESS);
    // Under capture the stand-in requires a user workspace (a capture must allocate nothing), and
    // cublasSetStream resets it, as cuBLAS does: set after it.
    EXPECT_EQ(gemm(), CUBLAS_STATUS_NOT_SUPPORTED);
    ASSERT_EQ(cublasSetWorkspace(h, workspace.p, 4096), CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(gemm(), CUBLAS_STATUS_SUCCESS);
    cudaGraph_t g = nullptr;
    CK(cudaStreamEndCapture(st, &g));
    for (float v : dC.get()) ASSERT_EQ(v, 7.f);  // recorded, not run
    cudaGraphExec_t exec = nullptr;
    CK(cudaGraphInstantiate(&exec, g, 0));
    emu::reset_counters();
    CK(cudaGraphLaunch(exec, st));
    CK(cudaStreamSynchronize(st));
    EXPECT_EQ(dC.get(), want);
    EXPECT_EQ(emu::counters().kernel_launches, 1);
    // While `st` captures, a handle set to another stream runs its GEMM there, outside the capture.
    dC.put(std::vector<float>(4, 7.f));
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed));
    ASSERT_EQ(cublasSetStream(h, other), CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(gemm(), CUBLAS_STATUS_SUCCESS);
    cudaGraph_t g2 = nullptr;
    CK(cudaStreamEndCapture(st, &g2));
    CK(cudaStreamSynchronize(other));
    EXPECT_EQ(dC.get(), want);
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(g));
    CK(cudaGraphDestroy(g2));
    EXPECT_EQ(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
    CK(cudaStreamDestroy(st));
    CK(cudaStreamDestroy(other));
}

TEST(CudaEmu, CublasGemmExMatchesAPlainLoop) {
    std::mt19937 rng(9);
    std::normal_distribution<float> nd;
    cublasHandle_t h = nullptr;
    ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    cudaStream_t st = nullptr;
    CK(cudaStreamCreate(&st));
    ASSERT_EQ(cublasSetStream(h, st), CUBLAS_STATUS_SUCCESS);
    const int m = 37, n = 11, k = 70, ldc = 45;
    for (cudaDataType_t type : {CUDA_R_16BF, CUDA_R_32F, CUDA_R_16F})
        for (int ta = 0; ta < 2; ++ta)
            for (int tb = 0; tb < 2; ++tb) {
                // op(A) m x k, op(B) k x n; stored column-major with the leading dimension of the stored shape.
                const int lda = (ta ? k : m) + 3, ldb = (tb ? n : k) + 1;
                const int acols = ta ? m : k, bcols = tb ? k : n;
                std::vector<float> A(size_t(lda) * acols), B(size_t(ldb) * bcols);
                for (float& v : A) v = nd(rng);
                for (float& v : B) v = nd(rng);
                auto round = [&](float v) {
                    if (type == CUDA_R_16BF) return __bfloat162float(__float2bfloat16(v));
                    if (type == CUDA_R_16F) return __half2float(__float2half(v));
                    return v;
                };
                auto store = [&](const std::vector<float>& v) {
                    std::vector<uint8_t> bytes;
                    for (float x : v) {
                        if (type == CUDA_R_32F) {
                            uint8_t b4[4];
                            std::memcpy(b4, &x, 4);
                            bytes.insert(bytes.end(), b4, b4 + 4);
                        } else {
                            const uint16_t u = type == CUDA_R_16BF ? __bfloat16_as_ushort(__float2bfloat16(x))
                                                                   : __half_as_ushort(__float2half(x));
                            bytes.push_back(uint8_t(u & 0xFF)), bytes.push_back(uint8_t(u >> 8));
                        }
                    }
                    return bytes;
                };
                Dev<uint8_t> dA(store(A)), dB(store(B));
                std::vector<float> C(size_t(ldc) * n, 7.f);
                Dev<float> dC(C);
                const float alpha = 1.f, beta = 0.f;
                ASSERT_EQ(cublasGemmEx(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha,
                                       dA.p, type, lda, dB.p, type, ldb, &beta, dC.p, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT),
                          CUBLAS_STATUS_SUCCESS);
                CK(cudaStreamSynchronize(st));
                const auto got = dC.get();
                for (int j = 0; j < n; ++j)
                    for (int i = 0; i < ldc; ++i) {
                        if (i >= m) {  // rows past m of each column are not written
                            ASSERT_EQ(got[size_t(j) * ldc + i], 7.f);
                            continue;
                        }
                        double want = 0, mag = 0;
                        for (int p = 0; p < k; ++p) {
                            const double a = round(ta ? A[size_t(i) * lda + p] : A[size_t(p) * lda + i]);
                            const double b = round(tb ? B[size_t(p) * ldb + j] : B[size_t(j) * ldb + p]);
                            want += a * b, mag += std::fabs(a * b);
                        }
                        EXPECT_NEAR(got[size_t(j) * ldc + i], want, mag * (k + 1) * 6e-8 + 1e-30)
                            << "type " << int(type) << " ta " << ta << " tb " << tb << " at " << i << "," << j;
                    }
            }
    // What the stand-in does not implement is refused, never computed wrongly.
    const float one = 1.f;
    EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_C, CUBLAS_OP_N, 1, 1, 1, &one, nullptr, CUDA_R_32F, 1, nullptr, CUDA_R_32F, 1,
                           &one, nullptr, CUDA_R_32F, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_NOT_SUPPORTED);
    EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 1, 4, &one, nullptr, CUDA_R_32F, 2, nullptr, CUDA_R_32F, 4,
                           &one, nullptr, CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_INVALID_VALUE);  // lda < m
    EXPECT_EQ(cublasDestroy(h), CUBLAS_STATUS_SUCCESS);
    CK(cudaStreamDestroy(st));
}

}  // namespace
}  // namespace dg

#endif  // DG_CUDA_EMU
