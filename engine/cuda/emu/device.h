// Device-side builtins of the CUDA emulation: the thread/block indices, barriers, warp collectives,
// atomics, fences, cache-hinted loads and math intrinsics that engine/cuda/*.cu use, as plain C++.
// Included by the emulated <cuda_runtime.h>; kernels compile unchanged (docs/cuda.md, "Emulation").
//
// Execution model: each block's threads are fibers on one OS thread (engine/cuda/emu/block_runner.*);
// they switch only at barriers and warp collectives, so code between two barriers runs as one
// uninterrupted segment per thread, in an order the schedule mode chooses (forward, reverse, random).
#pragma once

#include <math.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <type_traits>

// ---- qualifiers -------------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
// Static shared memory: one instance per OS thread, and an OS thread runs one block at a time, so all
// fibers of a block see the same variable (dynamic shared memory: DG_DYNAMIC_SHARED, engine/cuda/launch.cuh).
#define __shared__ static thread_local

// ---- vector types -----------------------------------------------------------------------------------
struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// The running fiber's coordinates: set by the block runner before it resumes a fiber.
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

namespace dg::emu {

enum class WarpOp : uint8_t { kShflIdx, kShflUp, kShflDown, kShflXor, kSync, kBallot, kAny, kAll };

// Block barrier: returns when every thread of the block has arrived or exited.
void block_barrier(std::source_location where);
// Warp collective over `mask`: returns this lane's result (the source lane's bits for shuffles, the
// ballot for votes) once every lane of the mask has arrived.
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t bits, int arg, int width, std::source_location where);
unsigned active_mask();
void* dynamic_shared();  // this block's dynamic shared memory (NaN-filled at block start)

template <typename T>
uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type wider than 8 bytes");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <typename T>
T from_bits(uint64_t b) {
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}

}  // namespace dg::emu

// ---- barriers and warp collectives ------------------------------------------------------------------
inline void __syncthreads(std::source_location w = std::source_location::current()) { dg::emu::block_barrier(w); }
inline void __syncwarp(unsigned mask = 0xffffffffu, std::source_location w = std::source_location::current()) {
    dg::emu::warp_collective(dg::emu::WarpOp::kSync, mask, 0, 0, 32, w);
}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32, std::source_location w = std::source_location::current()) {
    return dg::emu::from_bits<T>(dg::emu::warp_collective(dg::emu::WarpOp::kShflIdx, mask, dg::emu::to_bits(v), src, width, w));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32, std::source_location w = std::source_location::current()) {
    return dg::emu::from_bits<T>(dg::emu::warp_collective(dg::emu::WarpOp::kShflUp, mask, dg::emu::to_bits(v), int(d), width, w));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32, std::source_location w = std::source_location::current()) {
    return dg::emu::from_bits<T>(dg::emu::warp_collective(dg::emu::WarpOp::kShflDown, mask, dg::emu::to_bits(v), int(d), width, w));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32, std::source_location w = std::source_location::current()) {
    return dg::emu::from_bits<T>(dg::emu::warp_collective(dg::emu::WarpOp::kShflXor, mask, dg::emu::to_bits(v), lm, width, w));
}
inline unsigned __ballot_sync(unsigned mask, int p, std::source_location w = std::source_location::current()) {
    return unsigned(dg::emu::warp_collective(dg::emu::WarpOp::kBallot, mask, p != 0, 0, 32, w));
}
inline int __any_sync(unsigned mask, int p, std::source_location w = std::source_location::current()) {
    return int(dg::emu::warp_collective(dg::emu::WarpOp::kAny, mask, p != 0, 0, 32, w));
}
inline int __all_sync(unsigned mask, int p, std::source_location w = std::source_location::current()) {
    return int(dg::emu::warp_collective(dg::emu::WarpOp::kAll, mask, p != 0, 0, 32, w));
}
inline unsigned __activemask() { return dg::emu::active_mask(); }

// ---- fences, atomics, cache-hinted loads ------------------------------------------------------------
// Blocks run concurrently on a thread pool, so fences and atomics are real ones.
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }

template <typename T>
T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
template <typename T>
T atomicSub(T* p, T v) { return std::atomic_ref<T>(*p).fetch_sub(v); }
template <typename T>
T atomicExch(T* p, T v) { return std::atomic_ref<T>(*p).exchange(v); }
template <typename T>
T atomicCAS(T* p, T cmp, T v) {
    std::atomic_ref<T>(*p).compare_exchange_strong(cmp, v);
    return cmp;
}
template <typename T>
T atomicMax(T* p, T v) {
    std::atomic_ref<T> a(*p);
    T old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {}
    return old;
}
template <typename T>
T atomicMin(T* p, T v) {
    std::atomic_ref<T> a(*p);
    T old = a.load();
    while (v < old && !a.compare_exchange_weak(old, v)) {}
    return old;
}
inline unsigned atomicInc(unsigned* p, unsigned limit) {
    std::atomic_ref<unsigned> a(*p);
    unsigned old = a.load();
    while (!a.compare_exchange_weak(old, old >= limit ? 0u : old + 1)) {}
    return old;
}

template <typename T> T __ldg(const T* p) { return *p; }
template <typename T> T __ldcg(const T* p) { return *p; }
template <typename T> T __ldca(const T* p) { return *p; }
template <typename T> T __ldcs(const T* p) { return *p; }
template <typename T> T __ldlu(const T* p) { return *p; }
template <typename T> T __ldcv(const T* p) { return *p; }
template <typename T> void __stcg(T* p, T v) { *p = v; }
template <typename T> void __stcs(T* p, T v) { *p = v; }
template <typename T> void __stwb(T* p, T v) { *p = v; }

// ---- integer and float intrinsics -------------------------------------------------------------------
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }

inline float __uint_as_float(uint32_t u) { return dg::emu::from_bits<float>(u); }
inline uint32_t __float_as_uint(float f) { return uint32_t(dg::emu::to_bits(f)); }
inline float __int_as_float(int32_t i) { return dg::emu::from_bits<float>(uint32_t(i)); }
inline int32_t __float_as_int(float f) { return int32_t(uint32_t(dg::emu::to_bits(f))); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
inline int __clz(int v) { return v ? __builtin_clz(unsigned(v)) : 32; }
inline int __ffs(int v) { return __builtin_ffs(v); }

inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
// Explicitly rounded arithmetic (never fused into an FMA by nvcc): on the host, plain IEEE operations
// (the host build targets x86-64-v2, which has no FMA to contract into).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline int __float2int_rn(float x) { return int(nearbyintf(x)); }
inline int __float2int_rz(float x) { return int(x); }
// Four-way byte dot product with a 32-bit accumulate (sm_61+): the bytes of a and b as signed (int
// overload) or unsigned (unsigned overload) 8-bit values, products summed into c modulo 2^32 as the
// hardware's IDP4A does.
inline int __dp4a(int a, int b, int c) {
    uint32_t acc = uint32_t(c);
    for (int i = 0; i < 4; ++i) acc += uint32_t(int32_t(int8_t(uint32_t(a) >> (8 * i))) * int32_t(int8_t(uint32_t(b) >> (8 * i))));
    return int(acc);
}
inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
    for (int i = 0; i < 4; ++i) c += ((a >> (8 * i)) & 0xFFu) * ((b >> (8 * i)) & 0xFFu);
    return c;
}
