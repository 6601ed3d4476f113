// Sampling on the device: the twin of the host sampler (engine/sampling.cpp, the oracle): penalties, then
// greedy (temperature 0) or temperature -> top-k -> top-p -> min-p -> the Philox draw, and the raw logits'
// log-softmax for requested logprobs. Only the chosen tokens (and logprobs) go back to the host.
//
// Bit-identical token choices with the host. Both sides compute the definition in engine/sample_mass.h:
// the order is a sort of one 64-bit key per token (sample_order_key: the logit's bits made monotonic, then
// the complement of the id), so ties break by lower id exactly as the host's; each kept candidate's
// weight is an integer (sample_weight: det_exp, the same bits on both sides, times 2^42, truncated), so
// the totals, the top-p prefix and the draw's running sums are integer sums that no summation order
// changes. The host finds them with a radix descent and sorts nothing; this kernel sorts the keys (a
// bitonic sort) and finds the prefix crossings with block-wide integer sums (block_first_above).
//
// Logprobs are of the raw logits (before penalties and temperature), as compute_logprobs: the max and
// the sum of exp(l - max) are block reductions (a different summation order from the host's, so the
// values agree to rounding, not bit for bit); the top-n are chosen exactly (same order, same ties).
//
// One block per sampled row. Cost per row: O(P log² P) for the bitonic sort (P = vocab rounded up to a
// power of two) when temperature > 0, and O(V / 256) per thread for each weight pass. A radix select for
// top-k is the next step.
#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/ops.cuh"
#include "engine/sample_mass.h"

namespace dg::cuda {
namespace {

constexpr int kSampleThreads = 256;

// A tree reduction over the block (blockDim.x == kSampleThreads) with `op`; every thread gets the result.
template <class T, class Op>
__device__ T block_reduce(T v, T* sh, Op op) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = kSampleThreads / 2; s > 0; s >>= 1) {
        if (int(threadIdx.x) < s) sh[threadIdx.x] = op(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    const T r = sh[0];
    __syncthreads();
    return r;
}
__device__ __forceinline__ uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }
__device__ uint64_t block_max_key(uint64_t v, uint64_t* sh) {
    return block_reduce(v, sh, [](uint64_t a, uint64_t b) { return max_u64(a, b); });
}
__device__ uint64_t block_sum_u64(uint64_t v, uint64_t* sh) {
    return block_reduce(v, sh, [](uint64_t a, uint64_t b) { return a + b; });
}
__device__ double block_sum_f64(double v, double* sh) {
    return block_reduce(v, sh, [](double a, double b) { return a + b; });
}

// The first i < n at which the running sum w[0] + ... + w[i] exceeds `mass` (mass < the sum of w[0, n)):
// each thread sums one contiguous segment, one thread finds the segment the crossing lies in, and that
// segment's thread walks it. Integer sums, so the result is the host's (sample_mass.h).
__device__ int64_t block_first_above(const uint64_t* w, int64_t n, uint64_t mass, uint64_t* sh) {
    __shared__ uint64_t s_before;
    __shared__ int s_seg;
    __shared__ int64_t s_index;
    const int64_t seg = (n + kSampleThreads - 1) / kSampleThreads;
    const int64_t b = int64_t(threadIdx.x) * seg, e = b + seg < n ? b + seg : n;
    uint64_t part = 0;
    for (int64_t i = b; i < e; ++i) part += w[i];
    sh[threadIdx.x] = part;
    __syncthreads();
    if (threadIdx.x == 0) {
        uint64_t before = 0;
        int t = 0;
        while (t + 1 < kSampleThreads && before + sh[t] <= mass) before += sh[t++];
        s_before = before;
        s_seg = t;
        s_index = n - 1;
    }
    __syncthreads();
    if (int(threadIdx.x) == s_seg) {
        uint64_t run = s_before;
        for (int64_t i = b; i < e; ++i)
            if ((run += w[i]) > mass) {
                s_index = i;
                break;
            }
    }
    __syncthreads();
    const int64_t r = s_index;
    __syncthreads();
    return r;
}

// apply_penalties for one distinct token: repetition (HF) first, then frequency × count + presence for
// tokens the continuation generated, in float with the host's roundings.
__device__ __forceinline__ float penalised(float l, const SampleRowDev& r, int32_t gen_count) {
    if (r.repetition != 1.f) l = l > 0.f ? __fdiv_rn(l, r.repetition) : __fmul_rn(l, r.repetition);
    if ((r.presence != 0.f || r.frequency != 0.f) && gen_count > 0)
        l = __fsub_rn(l, __fadd_rn(__fmul_rn(r.frequency, float(gen_count)), r.presence));
    return l;
}

// Sorts keys[0, P) descending (P a power of two) with the whole block.
__device__ void bitonic_sort_desc(uint64_t* keys, int64_t P) {
    for (int64_t k = 2; k <= P; k <<= 1) {
        for (int64_t j = k >> 1; j > 0; j >>= 1) {
            for (int64_t i = threadIdx.x; i < P; i += kSampleThreads) {
                const int64_t ixj = i ^ j;
                if (ixj > i) {
                    const uint64_t a = keys[i], b = keys[ixj];
                    const bool desc = (i & k) == 0;
                    if (desc ? a < b : a > b) keys[i] = b, keys[ixj] = a;
                }
            }
            __syncthreads();
        }
    }
}

__global__ void sample_kernel(const float* logits, int64_t V, const SampleRowDev* rows, const SamplePenaltyDev* pens,
                              float* adj_ws, uint64_t* keys_ws, uint64_t* weight_ws, int64_t P, SampleOutDev* out) {
    __shared__ uint64_t red_key[kSampleThreads];
    __shared__ double red_f64[kSampleThreads];
    const SampleRowDev r = rows[blockIdx.x];
    const int tid = threadIdx.x;
    const float* raw = logits + int64_t(r.logit_row) * V;
    const float* src = raw;

    if (r.adj_slot >= 0) {  // penalties: a private copy of the row, adjusted at each distinct history token
        float* adj = adj_ws + int64_t(r.adj_slot) * V;
        for (int64_t i = tid; i < V; i += kSampleThreads) adj[i] = raw[i];
        __syncthreads();
        for (int32_t j = tid; j < r.pen_n; j += kSampleThreads) {
            const SamplePenaltyDev p = pens[r.pen_off + j];
            adj[p.token] = penalised(adj[p.token], r, p.gen_count);
        }
        __syncthreads();
        src = adj;
    }

    int32_t token;
    if (r.temperature == 0.f) {  // greedy: the first maximum
        uint64_t best = 0;
        for (int64_t i = tid; i < V; i += kSampleThreads) best = max_u64(best, sample_order_key(src[i], i));
        token = sample_key_id(block_max_key(best, red_key));
    } else {
        uint64_t* keys = keys_ws + int64_t(r.sort_slot) * P;
        uint64_t* w = weight_ws + int64_t(r.sort_slot) * V;
        for (int64_t i = tid; i < P; i += kSampleThreads) keys[i] = i < V ? sample_order_key(src[i], i) : 0;  // pad sorts last
        __syncthreads();
        bitonic_sort_desc(keys, P);
        const int64_t keep0 = (r.top_k > 0 && r.top_k < V) ? r.top_k : V;
        const float top = src[sample_key_id(keys[0])];
        uint64_t part = 0;
        for (int64_t i = tid; i < keep0; i += kSampleThreads) part += w[i] = sample_weight(src[sample_key_id(keys[i])], top, r.temperature);
        const uint64_t total = block_sum_u64(part, red_key);  // (its closing barrier publishes w)
        if (total == 0) {  // an infinite top logit: the first of the order, as the host (sample_mass.h)
            token = sample_key_id(keys[0]);
        } else {
            int64_t keep = keep0;
            if (r.top_p < 1.f) keep = block_first_above(w, keep0, top_p_target(total, r.top_p) - 1, red_key) + 1;
            part = 0;
            const uint64_t floor_w = r.min_p > 0.f ? min_p_floor(r.min_p) : 0;
            for (int64_t i = tid; i < keep; i += kSampleThreads) {
                if (i > 0 && w[i] < floor_w) w[i] = 0;  // min-p: never the first
                part += w[i];
            }
            const uint64_t kept = block_sum_u64(part, red_key);
            const int64_t at = block_first_above(w, keep, sample_draw_point(kept, r.seed, r.position), red_key);
            token = sample_key_id(keys[at]);
        }
    }

    SampleOutDev* o = out + blockIdx.x;
    if (tid == 0) {
        o->token = token;
        o->logprob = 0.f;
        o->n_top = 0;
    }
    if (!r.want_logprob && r.top_n == 0) return;  // uniform per block
    // Log-softmax of the raw logits.
    uint64_t best = 0;
    for (int64_t i = tid; i < V; i += kSampleThreads) best = max_u64(best, sample_order_key(raw[i], i));
    const uint64_t top_key = block_max_key(best, red_key);
    const double mx = raw[sample_key_id(top_key)];
    double part = 0;
    for (int64_t i = tid; i < V; i += kSampleThreads) part += exp(double(raw[i]) - mx);
    const double lse = mx + log(block_sum_f64(part, red_f64));
    if (tid == 0) o->logprob = float(double(raw[token]) - lse);
    const int32_t n_top = int32_t(r.top_n < V ? r.top_n : V);
    uint64_t prev = top_key;
    for (int32_t n = 0; n < n_top; ++n) {
        uint64_t k = top_key;
        if (n > 0) {  // the best key below the previous one
            uint64_t b = 0;
            for (int64_t i = tid; i < V; i += kSampleThreads) {
                const uint64_t c = sample_order_key(raw[i], i);
                if (c < prev && c > b) b = c;
            }
            k = block_max_key(b, red_key);
        }
        if (tid == 0) {
            o->top_id[n] = sample_key_id(k);
            o->top_lp[n] = float(double(raw[sample_key_id(k)]) - lse);
        }
        prev = k;
    }
    if (tid == 0) o->n_top = n_top;
}

}  // namespace

int64_t sample_key_stride(int64_t vocab) {
    int64_t p = 1;
    while (p < vocab) p <<= 1;
    return p;
}

SamplePlan plan_sample(std::span<const SampleRow> rows, int64_t vocab) {
    SamplePlan plan;
    std::vector<int32_t> seen, gen;
    for (const SampleRow& s : rows) {
        const SamplingParams& p = s.params;
        SampleRowDev d{};
        d.logit_row = s.logit_row;
        d.temperature = p.temperature;
        d.top_k = p.top_k;
        d.top_p = p.top_p;
        d.min_p = p.min_p;
        d.repetition = p.repetition_penalty;
        d.presence = p.presence_penalty;
        d.frequency = p.frequency_penalty;
        d.seed = p.seed;
        d.position = uint64_t(s.position);
        d.want_logprob = s.logprob ? 1 : 0;
        d.top_n = s.top_logprobs;
        d.adj_slot = -1;
        d.sort_slot = p.temperature == 0.f ? -1 : plan.n_sort++;
        d.pen_off = int32_t(plan.pens.size());
        if (has_penalties(p)) {
            // apply_penalties' inputs as one entry per distinct in-vocabulary token of the history:
            // repetition applies to each, frequency/presence to those generated (with their count).
            const int32_t prompt_len = std::clamp<int32_t>(s.prompt_len, 0, int32_t(s.tokens.size()));
            seen.assign(s.tokens.begin(), s.tokens.end());
            std::sort(seen.begin(), seen.end());
            seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
            gen.assign(s.tokens.begin() + prompt_len, s.tokens.end());
            std::sort(gen.begin(), gen.end());
            const bool rep = p.repetition_penalty != 1.f, pf = p.presence_penalty != 0.f || p.frequency_penalty != 0.f;
            size_t g = 0;
            for (int32_t t : seen) {
                int32_t count = 0;
                while (g < gen.size() && gen[g] < t) ++g;
                while (g < gen.size() && gen[g] == t) ++g, ++count;
                if (t < 0 || t >= vocab) continue;
                if (rep || (pf && count > 0)) plan.pens.push_back({t, count});
            }
            d.adj_slot = plan.n_adj++;
        }
        d.pen_n = int32_t(plan.pens.size()) - d.pen_off;
        plan.rows.push_back(d);
    }
    return plan;
}

void sample_rows(const float* logits, int64_t vocab, const SampleRowDev* rows_dev, int32_t n_rows,
                 const SamplePenaltyDev* pens_dev, const SampleWorkspace& ws, SampleOutDev* out_dev, cudaStream_t s) {
    if (n_rows == 0) return;
    DG_CUDA_CHECK(DG_LAUNCH(sample_kernel, dim3(unsigned(n_rows)), dim3(kSampleThreads), 0, s, logits, vocab, rows_dev,
                            pens_dev, ws.adj, ws.keys, ws.weight, sample_key_stride(vocab), out_dev));
}

}  // namespace dg::cuda
