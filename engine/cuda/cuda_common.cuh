// Shared by the CUDA op files: error checks that become absl::Status, and element access to weight /
// KV rows stored in any supported DType (GGUF block layouts, docs/qwen35-model.md §7.2).
//
// This is the correctness-first version of the CUDA backend (v0): every op mirrors its CPU twin in
// engine/cpu/ one to one, so the GPU tests can compare op by op. The fast kernels of issue 6 (fused
// GDN, tensor-core GEMM, split-K paged attention, CUDA graphs) replace these one family at a time.
#pragma once

#include <atomic>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "engine/formats/dtype.h"

#define DG_CUDA_CHECK(expr)                                                                        \
    do {                                                                                           \
        cudaError_t dg_err_ = (expr);                                                              \
        if (dg_err_ != cudaSuccess) ::dg::cuda::fail(#expr, __FILE__, __LINE__, dg_err_);          \
    } while (0)

namespace dg::cuda {

// Bumped by every allocation or free of a buffer whose address a step's kernels may take as an
// argument (the backend's scratch and pinned buffers, the model's workspaces, the weights, the matmul's
// workspaces). A decode step's graph is replayed as it stands only at the epoch it was captured at
// (cuda_backend.cu, GraphSig).
inline std::atomic<uint64_t>& buffer_epoch() {
    static std::atomic<uint64_t> epoch{0};
    return epoch;
}

// A failed CUDA call inside an op throws DeviceError with file:line and the CUDA error name. The backend
// catches it at its own entry points (CudaBackend: every Backend method) and turns it into the step's
// error status; nothing above the backend sees an exception.
struct DeviceError : std::runtime_error {
    DeviceError(const std::string& what, cudaError_t e) : std::runtime_error(what), code(e) {}
    cudaError_t code;
};
[[noreturn]] void fail(const char* expr, const char* file, int line, cudaError_t err);

constexpr int kWarp = 32;

__device__ __forceinline__ float load_f16(const uint8_t* p) {
    return __half2float(__ushort_as_half(uint16_t(p[0] | (p[1] << 8))));
}
__device__ __forceinline__ float load_bf16(const uint8_t* p) {
    return __uint_as_float(uint32_t(p[0] | (p[1] << 8)) << 16);
}

__device__ __forceinline__ void scale_min_k4(int j, const uint8_t* s, int* sc, int* mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// Element i of a row stored as `type`.
__device__ __forceinline__ float dq_elem(DType type, const uint8_t* row, int64_t i) {
    switch (type) {
        case DType::F32: return reinterpret_cast<const float*>(row)[i];
        case DType::F16: return load_f16(row + 2 * i);
        case DType::BF16: return load_bf16(row + 2 * i);
        case DType::Q8_0: {
            const uint8_t* b = row + (i / 32) * 34;
            return load_f16(b) * float(int8_t(b[2 + i % 32]));
        }
        case DType::Q4_0: {
            const uint8_t* b = row + (i / 32) * 18;
            const int j = int(i % 32);
            const int q = j < 16 ? (b[2 + j] & 0xF) : (b[2 + j - 16] >> 4);
            return load_f16(b) * float(q - 8);
        }
        case DType::Q4_1: {
            const uint8_t* b = row + (i / 32) * 20;
            const int j = int(i % 32);
            const int q = j < 16 ? (b[4 + j] & 0xF) : (b[4 + j - 16] >> 4);
            return load_f16(b) * float(q) + load_f16(b + 2);
        }
        case DType::Q4_K:
        case DType::Q5_K: {
            const bool five = type == DType::Q5_K;
            const uint8_t* b = row + (i / 256) * (five ? 176 : 144);
            const int j = int(i % 256), c = j / 64, l = j % 64, is = 2 * c + (l >= 32);
            int sc, mn;
            scale_min_k4(is, b + 4, &sc, &mn);
            const uint8_t qs = b[(five ? 48 : 16) + 32 * c + (l % 32)];
            int q = l < 32 ? (qs & 0xF) : (qs >> 4);
            if (five && (b[16 + l % 32] & (1 << is))) q += 16;
            return load_f16(b) * float(sc) * float(q) - load_f16(b + 2) * float(mn);
        }
        case DType::Q6_K: {
            const uint8_t* b = row + (i / 256) * 210;
            const int j = int(i % 256), half = j / 128, jj = j % 128, quarter = jj / 32, l = jj % 32;
            const uint8_t* ql = b + 64 * half;
            const uint8_t* qh = b + 128 + 32 * half;
            const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * half;
            const int lo = (quarter & 1) ? ql[l + 32] : ql[l];
            const int q = ((quarter < 2 ? lo & 0xF : lo >> 4) | (((qh[l] >> (2 * quarter)) & 3) << 4)) - 32;
            return load_f16(b + 208) * float(sc[l / 16 + 2 * quarter]) * float(q);
        }
    }
    return 0.f;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// q8 activation blocks from a warp's values, each lane holding VEC consecutive ones (lane l: the warp's
// elements VEC·l .. VEC·l + VEC - 1), 32/VEC neighbouring lanes per block of 32: q = round(v·127/max|v|)
// with ties to even (std::nearbyint on the CPU: quantize_act_rows), the scale max|v|/127 and the sum of
// the q. Every q8 block the GEMV reads is made here (quantize_act_q8, and the norm, SwiGLU and GDN decode
// kernels that make the blocks of their outputs), so they are bit for bit the CPU fast path's. Every lane
// of the warp must call it (shuffles); lanes with `write` false (their block lies past the row's end)
// store nothing. q32: the warp's first value's int8, d / s: its first block's scale and sum.
template <int VEC>
__device__ __forceinline__ void quantize_q8_blocks_vec(const float (&v)[VEC], int lane, bool write, int8_t* q32,
                                                       float* d, int32_t* s) {
    constexpr int kLanes = kWarp / VEC;  // lanes per block
    float amax = 0.f;
#pragma unroll
    for (int e = 0; e < VEC; ++e) amax = fmaxf(amax, fabsf(v[e]));
#pragma unroll
    for (int o = 1; o < kLanes; o *= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float inv = amax > 0.f ? 127.f / amax : 0.f;
    int sum = 0;
#pragma unroll
    for (int e = 0; e < VEC; ++e) {
        const int qv = __float2int_rn(v[e] * inv);
        if (write) q32[lane * VEC + e] = int8_t(qv);
        sum += qv;
    }
#pragma unroll
    for (int o = 1; o < kLanes; o *= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (write && lane % kLanes == 0) {
        d[lane / kLanes] = amax / 127.f;
        s[lane / kLanes] = sum;
    }
}
// One block from the warp's 32 values, lane l holding element l.
__device__ __forceinline__ void quantize_q8_block(float v, int lane, int8_t* q32, float* d, int32_t* s) {
    const float one[1] = {v};
    quantize_q8_blocks_vec<1>(one, lane, true, q32, d, s);
}
// Sum over the block (blockDim.x a multiple of 32, ≤ 1024); every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* shared32) {
    v = warp_sum(v);
    const int lane = threadIdx.x % kWarp, wid = threadIdx.x / kWarp;
    __syncthreads();
    if (lane == 0) shared32[wid] = v;
    __syncthreads();
    v = lane < int(blockDim.x / kWarp) ? shared32[lane] : 0.f;  // every warp reduces the warp sums
    return warp_sum(v);
}
// Activations of the GDN mixer, with the CPU's formulas (engine/cpu/gdn.cpp): softplus uses torch's
// threshold 20.
__device__ __forceinline__ float silu(float x) { return x / (1.f + expf(-x)); }
__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }
__device__ __forceinline__ float softplus(float x) { return x > 20.f ? x : log1pf(expf(x)); }

__device__ __forceinline__ float block_max(float v, float* shared32) {
    v = warp_max(v);
    const int lane = threadIdx.x % kWarp, wid = threadIdx.x / kWarp;
    __syncthreads();
    if (lane == 0) shared32[wid] = v;
    __syncthreads();
    v = lane < int(blockDim.x / kWarp) ? shared32[lane] : -INFINITY;
    return warp_max(v);
}

// An attribute of the current device (SM count, shared-memory limits), for launch geometry.
inline int device_attribute(cudaDeviceAttr attr) {
    int dev = 0, v = 0;
    DG_CUDA_CHECK(cudaGetDevice(&dev));
    DG_CUDA_CHECK(cudaDeviceGetAttribute(&v, attr, dev));
    return v;
}

}  // namespace dg::cuda
