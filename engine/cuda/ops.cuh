// Launchers of the CUDA ops (one .cu per op family: elementwise, matmul, gdn, attention). Pointers are
// device memory; `Matrix::data` is the device copy made by CudaBackend::prepare_weights.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "engine/backend.h"

namespace dg::cuda {

// A sequence's slice as the kernels see it (StepBatch's SeqSlice with the block table on the device).
struct DevSeq {
    int32_t begin, len, pos0, state_slot;
    const int32_t* blocks;  // device
};

void embed(const int32_t* tokens_dev, int32_t n, const Matrix& table, float* x, cudaStream_t s);
void rmsnorm(const float* x, const float* w, int64_t rows, int64_t dim, float eps, float* y, cudaStream_t s);
void add(float* y, const float* x, int64_t n, cudaStream_t s);
void swiglu(const float* gate, const float* up, int64_t count, float* out, cudaStream_t s);
void copy_rows(const float* x, const int32_t* rows_dev, int32_t n_rows, int64_t dim, float* y, cudaStream_t s);
// y[r] += w[r] * x[r] rows (MoE scatter), rows_dev/weights_dev index the destination rows.
void scatter_add_rows(const float* x, const int32_t* rows_dev, const float* weights_dev, int32_t n_rows, int64_t dim,
                      float* y, cudaStream_t s);
// y[t, :] *= sigmoid(g[t]) (MoE shared-expert gate).
void scale_rows_sigmoid(float* y, const float* g, int32_t n, int64_t dim, cudaStream_t s);

void matmul(const float* x, int32_t n, const Matrix& W, float* y, cudaStream_t s);

struct GdnLayerState {
    float* base;          // slot 0 of this layer's region
    int64_t slot_stride;  // floats between slots
    int64_t conv_floats;  // (K-1) * conv_dim, then S: Hv * dk * dv
};
void gdn_mixer(const DevSeq* seqs_dev, int32_t n_seqs, int32_t n_tokens, const GdnDims& d,
               const float* conv_w, const float* dt_bias, const float* ssm_a, const float* norm_w, float eps,
               float* qkv, const float* z, const float* b, const float* a, float* o, float* scratch,
               const GdnLayerState& st, cudaStream_t s);

struct KvLayerDev {
    DType type;
    int32_t block_tokens;
    int64_t row_bytes;
    uint8_t* k;
    uint8_t* v;
};
// seqs: host slices whose `blocks` point at device block tables; scores: at least len * Hq * (pos0 + len)
// floats for the longest sequence.
void attention(const SeqSlice* seqs, int32_t n_seqs, const AttnDims& d, const float* q_norm, const float* k_norm,
               float eps, const float* qg, const float* k_in, const float* v_in, float* out, const KvLayerDev& kv,
               float* scores, cudaStream_t s);

}  // namespace dg::cuda
