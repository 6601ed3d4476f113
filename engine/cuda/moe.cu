// MoE routing and the routed experts on the device, so a MoE layer never waits for the host: the router
// softmax, top-k and renormalisation (engine/moe_routing.h's arithmetic, operation for operation), the
// grouping of (token, slot) entries by expert with device-side counts and offsets, and a grouped matmul
// that reads each selected expert's weights through a device table of per-expert pointers. Experts no
// token chose cost one empty block row each and read no weights. docs/cuda.md "The step".
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.cuh"
#include "engine/status.h"

namespace dg::cuda {
namespace {

// One thread per token: the CPU's order of operations (a sequential softmax sum over experts in index
// order, top-k by repeated maximum with ties to the lower index as the reference's stable sort, the
// renormaliser summed in descending-probability order), so the emulation's choices and weights are the
// CPU backend's bit for bit. The slots are then written in ascending expert order: the combine adds a
// token's experts in that order, as the CPU does. Work per token is E * k: tiny next to the router.
__global__ void route_kernel(float* logits, int32_t n, int64_t E, int k, int32_t* sel, float* wts, int32_t* src) {
    const int32_t t = int32_t(blockIdx.x * blockDim.x + threadIdx.x);
    if (t >= n) return;
    float* p = logits + int64_t(t) * E;
    float mx = p[0];
    for (int64_t e = 1; e < E; ++e) mx = fmaxf(mx, p[e]);
    float sum = 0.f;
    for (int64_t e = 0; e < E; ++e) sum += p[e] = expf(p[e] - mx);
    for (int64_t e = 0; e < E; ++e) p[e] /= sum;
    int32_t pick[kMaxMoeTopK];
    float prob[kMaxMoeTopK];
    for (int j = 0; j < k; ++j) {
        int32_t best = -1;
        for (int64_t e = 0; e < E; ++e) {
            bool taken = false;
            for (int i = 0; i < j; ++i) taken |= pick[i] == int32_t(e);
            if (!taken && (best < 0 || p[e] > p[best])) best = int32_t(e);
        }
        pick[j] = best, prob[j] = p[best];
    }
    float norm = 0.f;
    for (int j = 0; j < k; ++j) norm += prob[j];
    for (int j = 1; j < k; ++j)  // insertion sort by expert index
        for (int i = j; i > 0 && pick[i - 1] > pick[i]; --i) {
            const int32_t e = pick[i];
            pick[i] = pick[i - 1], pick[i - 1] = e;
            const float q = prob[i];
            prob[i] = prob[i - 1], prob[i - 1] = q;
        }
    for (int j = 0; j < k; ++j) {
        const int64_t slot = int64_t(t) * k + j;
        sel[slot] = pick[j];
        wts[slot] = prob[j] / norm;
        src[slot] = int32_t(slot);  // expert outputs are written at the entry's own row
    }
}

// One block: per expert, how many entries chose it, where its run starts, and the run itself (entries
// in ascending order, so the grouped matmul's tiles never depend on thread timing).
__global__ void group_kernel(const int32_t* sel, int32_t n_entries, int64_t E, int32_t* counts, int32_t* offsets,
                             int32_t* list) {
    for (int64_t e = threadIdx.x; e < E; e += blockDim.x) {
        int32_t c = 0;
        for (int32_t i = 0; i < n_entries; ++i) c += sel[i] == int32_t(e);
        counts[e] = c;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int32_t off = 0;
        for (int64_t e = 0; e < E; ++e) offsets[e] = off, off += counts[e];
    }
    __syncthreads();
    for (int64_t e = threadIdx.x; e < E; e += blockDim.x) {
        int32_t o = offsets[e];
        for (int32_t i = 0; i < n_entries; ++i)
            if (sel[i] == int32_t(e)) list[o++] = i;
    }
}

constexpr int kTokenTile = 8, kWarpsPerBlock = 4;

// Block (row tile, expert e): y[entry][r] = x[entry / x_div] · W_e[r] for each entry of e's run, in tiles
// of up to 8 entries; one warp per output row, lanes striding the input as engine/cuda/matmul.cu's v0
// kernel does, so each output has that kernel's summation order and bits.
__global__ void expert_matmul_kernel(const float* x, int32_t x_div, const uint8_t* const* w, DType type,
                                     uint64_t row_bytes, int64_t in, int64_t out, const int32_t* counts,
                                     const int32_t* offsets, const int32_t* list, float* y) {
    const int64_t e = blockIdx.y;
    const int32_t cnt = counts[e];
    const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
    if (cnt == 0 || r >= out) return;
    const int lane = threadIdx.x % kWarp;
    const uint8_t* row = w[e] + uint64_t(r) * row_bytes;
    const int32_t* run = list + offsets[e];
    for (int32_t t0 = 0; t0 < cnt; t0 += kTokenTile) {
        const int tile = min(kTokenTile, cnt - t0);
        const float* xs[kTokenTile];
        for (int t = 0; t < tile; ++t) xs[t] = x + int64_t(run[t0 + t] / x_div) * in;
        float acc[kTokenTile] = {};
        for (int64_t i = lane; i < in; i += kWarp) {
            const float wi = dq_elem(type, row, i);
            for (int t = 0; t < tile; ++t) acc[t] += wi * xs[t][i];
        }
        for (int t = 0; t < tile; ++t) {
            const float v = warp_sum(acc[t]);
            if (lane == 0) y[int64_t(run[t0 + t]) * out + r] = v;
        }
    }
}

}  // namespace

void moe_route(float* logits, int32_t n, int64_t E, int32_t k, const MoeRouting& r, cudaStream_t s) {
    DG_CHECK(k >= 1 && k <= kMaxMoeTopK && k <= E, "MoE top-k %d: needs 1 <= k <= min(%d, experts %d)", int(k),
             int(kMaxMoeTopK), int(E));
    if (n == 0) return;
    DG_CUDA_CHECK(DG_LAUNCH(route_kernel, unsigned((n + 63) / 64), 64, 0, s, logits, n, E, int(k), r.sel, r.weights, r.src));
    DG_CUDA_CHECK(DG_LAUNCH(group_kernel, 1, 256, 0, s, r.sel, n * k, E, r.counts, r.offsets, r.list));
}

void moe_expert_matmul(const float* x, bool x_rows_are_tokens, int32_t k, const ExpertMatrices& W, const MoeRouting& r,
                       float* y, cudaStream_t s) {
    const dim3 grid(unsigned((W.rows + kWarpsPerBlock - 1) / kWarpsPerBlock), unsigned(W.n_experts));
    DG_CUDA_CHECK(DG_LAUNCH(expert_matmul_kernel, grid, kWarpsPerBlock * kWarp, 0, s, x, x_rows_are_tokens ? k : 1, W.data,
                            W.type, W.row_bytes, W.cols, W.rows, r.counts, r.offsets, r.list, y));
}

}  // namespace dg::cuda
