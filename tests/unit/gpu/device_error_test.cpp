// CUDA errors reach the caller as a Status for the step, never as an abort: a recoverable one (out of
// device memory mid-step) fails that step and the backend keeps serving; a sticky one (an illegal
// address) marks the device lost. Needs the emulation, which can make a device fail on demand.
#include <gtest/gtest.h>

#ifdef DG_CUDA_EMU

#include <cuda_runtime.h>

#include <algorithm>
#include <numeric>

#include "engine/cuda/emu/emu.h"
#include "engine/runner.h"
#include "tests/unit/engine/fixtures.h"

namespace dg {
namespace {

int32_t argmax(const std::vector<float>& v) { return int32_t(std::max_element(v.begin(), v.end()) - v.begin()); }

struct DeviceSizeGuard {
    int64_t saved = emu::device_memory_bytes();
    ~DeviceSizeGuard() { emu::set_device_memory_bytes(saved); }
};

TEST(CudaDeviceErrors, OutOfMemoryMidStepFailsTheStepOnly) {
    DeviceSizeGuard guard;
    const std::string path = testing::fixture_dir("dense") + "/hf";
    auto gpu = Runner::open(path, BackendKind::kCuda);
    auto cpu = Runner::open(path, BackendKind::kCpuExact);
    ASSERT_TRUE(gpu.ok() && cpu.ok()) << gpu.status() << cpu.status();
    std::vector<int32_t> prompt(120);
    std::iota(prompt.begin(), prompt.end(), 3);
    // A prefill sizes the activations; then the device is full, so the first decode step's scratch
    // (attention's split partials and GDN's decode workspace, which a prefill does not use) cannot be
    // allocated inside the step.
    auto s = (*gpu)->new_sequence();
    ASSERT_TRUE(s.ok());
    const std::vector<int32_t> first(prompt.begin(), prompt.begin() + 60), second(prompt.begin() + 60, prompt.begin() + 61);
    ASSERT_TRUE((*gpu)->feed(*s, first, false).ok());
    size_t free_b = 0, total = 0;
    ASSERT_EQ(cudaMemGetInfo(&free_b, &total), cudaSuccess);
    emu::set_device_memory_bytes(int64_t(total - free_b));
    auto l = (*gpu)->feed(*s, second, false);
    ASSERT_FALSE(l.ok());
    EXPECT_EQ(l.status().code(), absl::StatusCode::kInternal) << l.status();
    EXPECT_NE(l.status().message().find("cudaErrorMemoryAllocation"), std::string::npos) << l.status();
    EXPECT_FALSE((*gpu)->model().backend().device_lost());
    (*gpu)->release(*s);
    // Room again: the same backend serves, and agrees with the CPU.
    emu::set_device_memory_bytes(guard.saved);
    auto s2 = (*gpu)->new_sequence();
    auto c2 = (*cpu)->new_sequence();
    auto lg = (*gpu)->feed(*s2, prompt, false);
    auto lc = (*cpu)->feed(*c2, prompt, false);
    ASSERT_TRUE(lg.ok() && lc.ok()) << lg.status() << lc.status();
    EXPECT_EQ(argmax(*lg), argmax(*lc));
}

TEST(CudaDeviceErrors, StickyErrorMarksTheDeviceLost) {
    const std::string path = testing::fixture_dir("dense") + "/hf";
    auto gpu = Runner::open(path, BackendKind::kCuda);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    Backend& be = (*gpu)->model().backend();
    // Corrupt a device allocation's red zone, as an out-of-bounds kernel write would: the next kernel's
    // check reports an illegal address, which a GPU context does not survive.
    auto p = be.alloc_f32(1000);
    ASSERT_TRUE(p.ok());
    (*p)[1000] = 1.f;  // emulated device memory is host memory; byte 4000 is in the red zone
    auto s = (*gpu)->new_sequence();
    auto l = (*gpu)->feed(*s, std::vector<int32_t>{1, 2, 3}, false);
    ASSERT_FALSE(l.ok());
    EXPECT_EQ(l.status().code(), absl::StatusCode::kUnavailable) << l.status();
    EXPECT_TRUE(be.device_lost());
    auto again = (*gpu)->feed(*s, std::vector<int32_t>{4}, false);  // every later step fails fast
    EXPECT_EQ(again.status().code(), absl::StatusCode::kUnavailable);
    ASSERT_EQ(cudaDeviceReset(), cudaSuccess);  // the emulated device, for the tests that follow
}

}  // namespace
}  // namespace dg

#else

TEST(CudaDeviceErrors, NeedsTheEmulation) { GTEST_SKIP() << "configure with -DDELTAGATE_CUDA_EMU=ON"; }

#endif
