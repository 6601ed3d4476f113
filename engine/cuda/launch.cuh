// How engine/cuda/*.cu launch kernels and declare dynamic shared memory, the same source for nvcc and
// for the CPU emulation (engine/cuda/emu/, docs/cuda.md): no <<<...>>> and no `extern __shared__` in
// the kernels' files, and no #ifdef inside kernels.
//
//   DG_LAUNCH(kernel, grid, block, smem_bytes, stream, args...) -> cudaError_t of the launch
//   DG_DYNAMIC_SHARED(float, sm);   // float* sm: the block's dynamic shared memory
//
// A template kernel goes in parentheses: DG_LAUNCH((k<4, 2>), ...). Launchers check the result with
// DG_CUDA_CHECK (engine/cuda/cuda_common.cuh).
#pragma once

#include <cuda_runtime.h>

#include <utility>

#if defined(DG_CUDA_EMU)

#define DG_LAUNCH(kernel, grid, block, smem, stream, ...) \
    ::dg::emu::launch(#kernel, kernel, grid, block, smem, stream, ##__VA_ARGS__)
#define DG_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::dg::emu::dynamic_shared())

#else

namespace dg::cuda {
template <typename... P, typename... A>
cudaError_t launch_on_device(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                             A&&... args) {
    kernel<<<grid, block, smem, stream>>>(std::forward<A>(args)...);
    return cudaGetLastError();
}
}  // namespace dg::cuda

#define DG_LAUNCH(kernel, grid, block, smem, stream, ...) \
    ::dg::cuda::launch_on_device(kernel, grid, block, smem, stream, ##__VA_ARGS__)
#define DG_DYNAMIC_SHARED(T, name) extern __shared__ T name[]

#endif
