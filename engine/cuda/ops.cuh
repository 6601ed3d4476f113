// Launchers of the CUDA ops (one .cu per op family: elementwise, matmul, gdn, attention). Pointers are
// device memory; `Matrix::data` is the device copy made by CudaBackend::prepare_weights.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <span>
#include <vector>

#include "engine/backend.h"
#include "engine/cuda/matmul.cuh"
#include "engine/sampling.h"

namespace dg::cuda {

// A sequence's slice as the kernels see it (StepBatch's SeqSlice with the block table on the device).
struct DevSeq {
    int32_t begin, len, pos0, state_slot;
    const int32_t* blocks;  // device
};

void embed(const int32_t* tokens_dev, int32_t n, const Matrix& table, float* x, cudaStream_t s);
void rmsnorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y, cudaStream_t s);
void add(float* y, const float* x, int64_t n, cudaStream_t s);
// The step between two sub-layers in one launch: x += r (r may be null: no add), y = rmsnorm(x) · w, and
// with q8 (dim % 32 == 0) y's q8 activation blocks for the GEMV, as quantize_act_q8(y) makes them. Bit
// for bit add, then rmsnorm, then quantize_act_q8. y may alias x.
void add_rmsnorm(float* x, const float* r, const float* w, int64_t rows, int64_t dim, float eps, float* y,
                 const ActQ8* q8, cudaStream_t s);
// out = SiLU(gate) · up; with q8 (count % 32 == 0) also out's q8 blocks, as quantize_act_q8 of out's rows
// makes them for any row width that is a multiple of 32 (the down projection's input).
void swiglu(const float* gate, const float* up, int64_t count, float* out, cudaStream_t s, const ActQ8* q8 = nullptr);
void copy_rows(const float* x, const int32_t* rows_dev, int32_t n_rows, int64_t dim, float* y, cudaStream_t s);
// MoE combine: y[t] += sum_j weights[t][j] * x[src[t][j]] for t < n_rows, j < k, in j order; src < 0
// skips a slot. src_dev / weights_dev: [n_rows][k]. Deterministic (no atomics).
void gather_add_rows(const float* x, const int32_t* src_dev, const float* weights_dev, int32_t n_rows, int32_t k,
                     int64_t dim, float* y, cudaStream_t s);
// y[t, :] *= sigmoid(g[t]) (MoE shared-expert gate).
void scale_rows_sigmoid(float* y, const float* g, int32_t n, int64_t dim, cudaStream_t s);

// matmul: engine/cuda/matmul.cuh (the Matmul dispatcher and its GEMV / GEMM / exact kernels).

struct GdnLayerState {
    float* base;          // slot 0 of this layer's region
    int64_t slot_stride;  // floats between slots
    int64_t conv_floats;  // (K-1) * conv_dim, then S: Hv * dk * dv
};

// One GDN layer call (engine/cuda/gdn*.cu, docs/cuda.md). All pointers are device memory. Value head h
// reads key head h % Hk (tiled order, engine/weights.h).
struct GdnLayerArgs {
    GdnDims d;
    const float* conv_w;   // [conv_dim][K]
    const float* dt_bias;  // [Hv]
    const float* ssm_a;    // [Hv] = -exp(A_log)
    const float* norm_w;   // [dv]
    float eps;             // gated RMSNorm epsilon
    float* qkv;            // [n][conv_dim] pre-conv rows: the fast kernels only read it (the reference
                           // convolves it in place)
    const float* z;        // [n][Hv*dv]
    const float* b;        // [n][Hv]
    const float* a;        // [n][Hv]
    float* o;              // [n][Hv*dv] out, ready for out_proj
    GdnLayerState st;
    // When o_q8.q is set: o's q8 activation blocks too (the out projection's GEMV input), written by the
    // decode kernel as quantize_act_q8(o) would make them. Decode sequences only, dv % 32 == 0.
    ActQ8 o_q8{};
};

// Scratch of the fast path, sized by the two functions below for n_decode decode sequences.
// `arrivals` must be all zero on entry; the kernels leave it zero (allocate and zero it once).
struct GdnWorkspace {
    float* partial;      // gdn_workspace_floats
    uint32_t* arrivals;  // gdn_arrival_words
};
int64_t gdn_workspace_floats(int32_t n_decode, const GdnDims& d);
int64_t gdn_arrival_words(int32_t n_decode, const GdnDims& d);

// Columns of the state per thread block; 0 = chosen from the batch and the device. Tests and the
// benchmark force the other geometries: decode 32 | 64 | 128, prefill 16 | 32 | 64 | 128.
struct GdnTiling {
    int decode_cols = 0;
    int prefill_cols = 0;
};
constexpr int64_t kGdnMaxDk = 128;  // the fast kernels need dk <= 128 (every Qwen3.5 size has 128)
inline bool gdn_fast_supported(const GdnDims& d) { return d.dk >= 1 && d.dk <= kGdnMaxDk && d.Hv % d.Hk == 0; }
// Dynamic shared memory of the prefill kernel for a tile of `cols` state columns.
int64_t gdn_prefill_smem_bytes(int cols, int64_t dk);

// The fast path for one layer: seqs_dev / seqs_host are the same descriptors (device and host copies),
// the n_decode sequences with len == 1 first, then n_prefill with len > 1. Decode sequences go through
// the fused decode kernel (one launch), the others through the chunked (64) WY/UT prefill kernel and a
// conv-state update (two launches, three when a head's dv is split over blocks).
void gdn_mixer(const GdnLayerArgs& a, const DevSeq* seqs_dev, const DevSeq* seqs_host, int32_t n_decode,
               int32_t n_prefill, const GdnWorkspace& ws, const GdnTiling& tiling, cudaStream_t s);
// The two halves, for tests and the benchmark. seqs_* hold only that kind of sequence.
void gdn_decode(const GdnLayerArgs& a, const DevSeq* seqs_dev, int32_t n_seqs, const GdnWorkspace& ws,
                int cols, cudaStream_t s);
void gdn_prefill(const GdnLayerArgs& a, const DevSeq* seqs_dev, const DevSeq* seqs_host, int32_t n_seqs, int cols,
                 cudaStream_t s);
int gdn_decode_cols(const GdnLayerArgs& a, int32_t n_seqs, int forced);   // the geometry gdn_decode runs
int gdn_prefill_cols(const GdnDims& d, int32_t n_seqs, int forced);       // the geometry gdn_prefill runs

// The v0 token-by-token kernels (conv in place, scan with S in global memory): the reference the GPU
// tests compare the fast path with. Any sequence lengths, any order. scratch: 2 * n_tokens * Hv floats.
void gdn_mixer_reference(const GdnLayerArgs& a, const DevSeq* seqs_dev, int32_t n_seqs, int32_t n_tokens,
                         float* scratch, cudaStream_t s);

struct KvLayerDev {
    DType type;
    int32_t block_tokens;
    int64_t row_bytes;
    uint8_t* k;
    uint8_t* v;
};
// Attention over the paged KV cache (engine/cuda/attention.cu, docs/cuda.md "Attention"). seqs_dev /
// seqs_host: the same descriptors on the device and the host (`blocks` device block tables in both), the
// n_decode sequences with len == 1 first, then n_prefill with len > 1. Stores every row's K/V in the
// cache, then attends. workspace: attn_workspace_floats(n_decode, Hq, Hkv, hd, splits forced by
// set_attention_tiling) floats (engine/cuda/attention_geometry.h); independent of the context length.
// Launches: two for the decode sequences (split + combine), two for the prefill ones (K/V store + tiled
// attention). head_dim 32..256 in steps of 32 (attn_head_dim_supported), else a DeviceError.
void attention(const DevSeq* seqs_dev, const DevSeq* seqs_host, int32_t n_decode, int32_t n_prefill, const AttnDims& d,
               const float* q_norm, const float* k_norm, float eps, const float* qg, const float* k_in,
               const float* v_in, float* out, const KvLayerDev& kv, float* workspace, cudaStream_t s);
// The decode split count; 0 = chosen from the batch (attn_decode_splits). Tests and the benchmark force
// it to cross split boundaries at small contexts; process-wide, set it back to {} after.
struct AttnTiling {
    int decode_splits = 0;
};
void set_attention_tiling(const AttnTiling& t);
int attention_decode_splits(int32_t n_decode, const AttnDims& d);  // what the next call runs

// --- MoE on the device (engine/cuda/moe.cu): routing, grouping and the routed experts, no host round trip.
constexpr int32_t kMaxMoeTopK = 32;
// Per step, n tokens * k slots = entries; entry t*k + j is token t's j-th expert in ascending expert order.
struct MoeRouting {
    int32_t* sel;      // [n*k] expert of each entry
    float* weights;    // [n*k] its renormalised routing weight
    int32_t* src;      // [n*k] = entry index: the row of its expert output (gather_add_rows' src)
    int32_t* counts;   // [E] entries per expert
    int32_t* offsets;  // [E] start of each expert's run in `list`
    int32_t* list;     // [n*k] entries grouped by expert, ascending within a run
};
// Softmax over the router logits [n][E] (overwritten with the probabilities), top-k, renormalise, group.
void moe_route(float* logits, int32_t n, int64_t E, int32_t k, const MoeRouting& r, cudaStream_t s);
// One weight matrix of every expert of a layer: same type and shape, `data` a device table of E pointers.
struct ExpertMatrices {
    const uint8_t* const* data;
    DType type;
    uint64_t row_bytes;
    int64_t rows, cols, n_experts;
};
// y[entry][rows] = x[row] · W_{sel[entry]}ᵀ for every routed entry; x's row is the entry's token
// (x_rows_are_tokens: x is [n][cols]) or the entry itself (x is [n*k][cols]).
void moe_expert_matmul(const float* x, bool x_rows_are_tokens, int32_t k, const ExpertMatrices& W, const MoeRouting& r,
                       float* y, cudaStream_t s);
// Its serving twin (gemv.cu): the GEMV's per-type kernels over each chosen expert's run, one entry per
// weight read. Quantised experts read x as q8 activation blocks (xq: quantize_act_q8 of x's rows, the CPU
// fast path's numerics), float experts read x itself (fp32 FMA). Every expert's data must be 16-byte
// aligned; the shape must pass moe_expert_gemv_supports (in % 32 for quantised types; in % 8 and rows a
// multiple of 16 bytes for float types).
bool moe_expert_gemv_supports(const ExpertMatrices& W);
void moe_expert_gemv(const ActQ8& xq, const float* x, bool x_rows_are_tokens, int32_t k, const ExpertMatrices& W,
                     const MoeRouting& r, float* y, cudaStream_t s);

// --- sampling on the device (engine/cuda/sampling.cu): the host sampler's twin, one block per row.
struct SampleRowDev {
    int32_t logit_row;
    float temperature;
    int32_t top_k;
    float top_p, min_p;
    float repetition, presence, frequency;
    uint64_t seed, position;
    int32_t want_logprob, top_n;
    int32_t adj_slot;   // row of the penalised-logits workspace, -1 without penalties
    int32_t sort_slot;  // row of the sort/probability workspace, -1 when greedy
    int32_t pen_off, pen_n;  // its entries in the penalty list
};
struct SamplePenaltyDev {
    int32_t token;      // a distinct in-vocabulary token of the history
    int32_t gen_count;  // its occurrences among the generated tokens
};
struct SampleOutDev {
    int32_t token;
    float logprob;
    int32_t n_top;
    int32_t top_id[kMaxTopLogprobs];
    float top_lp[kMaxTopLogprobs];
};
struct SampleWorkspace {
    float* adj;     // [n_adj][vocab]
    uint64_t* keys; // [n_sort][sample_key_stride(vocab)]
    uint64_t* weight;  // [n_sort][vocab]: the sorted candidates' integer weights (engine/sample_mass.h)
};
// The rows' device descriptors and penalty entries, built on the host (apply_penalties' history reduced to
// one entry per distinct token), and how many workspace rows they need.
struct SamplePlan {
    std::vector<SampleRowDev> rows;
    std::vector<SamplePenaltyDev> pens;
    int32_t n_adj = 0, n_sort = 0;
};
SamplePlan plan_sample(std::span<const SampleRow> rows, int64_t vocab);
int64_t sample_key_stride(int64_t vocab);  // vocab rounded up to a power of two
// One launch: out_dev[i] = row i's token (and logprobs). logits: [n_logit_rows][vocab] on the device.
void sample_rows(const float* logits, int64_t vocab, const SampleRowDev* rows_dev, int32_t n_rows,
                 const SamplePenaltyDev* pens_dev, const SampleWorkspace& ws, SampleOutDev* out_dev, cudaStream_t s);

}  // namespace dg::cuda
