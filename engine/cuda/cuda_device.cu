#include <cuda_runtime.h>

#include "engine/cuda/cuda_device.h"

namespace dg::cuda {

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error so later calls start clean
        return 0;
    }
    return n;
}

std::string device_name(int index) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, index) != cudaSuccess) return "";
    return p.name;
}

}  // namespace dg::cuda
