// CUDA device discovery and the CUDA backend's factory (the only CUDA symbols the engine sees).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace dg {
class Backend;
}

namespace dg::cuda {

// exact: the `cuda-exact` backend (fp32 oracle matmul only); else `cuda` (engine/cuda/cuda_backend.cu)
std::unique_ptr<Backend> make_cuda_backend(bool exact);

int device_count();                 // 0 when no driver/device, never throws
std::string device_name(int index); // "" when unavailable
int current_device();               // cudaGetDevice, 0 when unavailable
// cudaMemGetInfo on the current device (creates its context if needed): bytes free and total.
// false when no driver/device, never throws.
bool mem_info(int64_t* free_bytes, int64_t* total_bytes);

}  // namespace dg::cuda
