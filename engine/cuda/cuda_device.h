// CUDA device discovery (the part of the CUDA backend that exists so far; kernels follow in issue 6).
#pragma once

#include <string>

namespace dg::cuda {

int device_count();                 // 0 when no driver/device, never throws
std::string device_name(int index); // "" when unavailable

}  // namespace dg::cuda
