// CUDA device discovery and the CUDA backend's factory (the only CUDA symbols the engine sees).
#pragma once

#include <memory>
#include <string>

namespace dg {
class Backend;
}

namespace dg::cuda {

std::unique_ptr<Backend> make_cuda_backend();  // engine/cuda/cuda_backend.cu

int device_count();                 // 0 when no driver/device, never throws
std::string device_name(int index); // "" when unavailable

}  // namespace dg::cuda
