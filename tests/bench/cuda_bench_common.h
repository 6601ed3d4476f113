// What the CUDA micro-benchmarks (bench_gdn_cuda, bench_attention_cuda, bench_matmul_cuda) share: a check
// that stops the program on a CUDA error, event timing, and the device's copy bandwidth (the bound their
// GB/s columns are set against). Include only where DELTAGATE_HAVE_CUDA (real CUDA or the emulation).
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define CK(expr)                                                                                          \
    do {                                                                                                  \
        cudaError_t e_ = (expr);                                                                          \
        if (e_ != cudaSuccess) {                                                                          \
            std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
            std::exit(1);                                                                                 \
        }                                                                                                 \
    } while (0)

namespace dg::bench {

// Mean seconds per call of f over `reps` calls between two events, after `warmup` untimed calls.
template <typename F>
double time_it(int reps, F f, int warmup = 1) {
    for (int i = 0; i < warmup; ++i) f();
    CK(cudaDeviceSynchronize());
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0));
    for (int i = 0; i < reps; ++i) f();
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    CK(cudaGetLastError());
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return double(ms) / 1e3 / reps;
}

// Device copy bandwidth: (read + write) bytes per second of a device->device cudaMemcpy of `bytes`.
inline double copy_bytes_per_s(size_t bytes, int reps) {
    void *a = nullptr, *b = nullptr;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemset(a, 1, bytes));
    const double s = time_it(reps, [&] { CK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice)); });
    cudaFree(a);
    cudaFree(b);
    return 2.0 * double(bytes) / s;
}

}  // namespace dg::bench
