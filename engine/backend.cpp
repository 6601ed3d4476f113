// Backend selection: the one place the backends meet. A CUDA request without CUDA is an error, never a
// silent fall back to the CPU.
#include "engine/backend.h"

#include "absl/strings/str_cat.h"

#ifdef DELTAGATE_HAVE_CUDA
#include "engine/cuda/cuda_device.h"
#endif

namespace dg {

std::unique_ptr<Backend> make_cpu_backend(bool exact);  // engine/cpu/cpu_backend.cpp

absl::StatusOr<BackendKind> backend_kind_from_name(const std::string& name) {
    if (name == "cpu") return BackendKind::kCpu;
    if (name == "cpu-exact") return BackendKind::kCpuExact;
    if (name == "cuda") return BackendKind::kCuda;
    if (name == "cuda-exact") return BackendKind::kCudaExact;
    return absl::InvalidArgumentError(absl::StrCat("unknown backend '", name, "' (cpu, cpu-exact, cuda or cuda-exact)"));
}

bool cuda_available() {
#ifdef DELTAGATE_HAVE_CUDA
    return cuda::device_count() > 0;
#else
    return false;
#endif
}

bool cuda_emulated() {
#ifdef DG_CUDA_EMU
    return true;
#else
    return false;
#endif
}

BackendKind default_backend_kind() { return cuda_available() && !cuda_emulated() ? BackendKind::kCuda : BackendKind::kCpu; }

absl::StatusOr<std::unique_ptr<Backend>> make_backend(BackendKind kind) {
    if (kind == BackendKind::kCpu || kind == BackendKind::kCpuExact) return make_cpu_backend(kind == BackendKind::kCpuExact);
#ifndef DELTAGATE_HAVE_CUDA
    return absl::FailedPreconditionError("backend cuda: this build of deltagate has no CUDA support (nvcc was not found)");
#else
    if (!cuda_available()) return absl::FailedPreconditionError("backend cuda: no CUDA device is visible");
    return cuda::make_cuda_backend(kind == BackendKind::kCudaExact);
#endif
}

}  // namespace dg
