// What the fused GDN decode kernel and the chunked prefill kernel both read: the layer's pointers and
// shapes as kernel-parameter-sized ints, filled once from GdnLayerArgs. Each kernel's argument struct
// derives from it and adds its own geometry.
#pragma once

#include "engine/cuda/ops.cuh"

namespace dg::cuda {

struct GdnKernelCommon {
    const DevSeq* seqs;  // this kernel's sequences (decode: len 1; prefill: len > 1)
    const float* qkv;    // [n][C] pre-conv, read only
    const float* z;
    const float* b;
    const float* a;
    const float* conv_w;
    const float* dt_bias;
    const float* ssm_a;
    const float* norm_w;
    float* o;
    float eps;
    int Hk, Hv, dk, dv, K;
    int64_t C;
    GdnLayerState st;
    int tiles;  // dv tiles per head = gridDim.x
};

inline void fill_gdn_kernel_common(const GdnLayerArgs& a, const DevSeq* seqs_dev, int cols, GdnKernelCommon* p) {
    const GdnDims& d = a.d;
    p->seqs = seqs_dev;
    p->qkv = a.qkv, p->z = a.z, p->b = a.b, p->a = a.a;
    p->conv_w = a.conv_w, p->dt_bias = a.dt_bias, p->ssm_a = a.ssm_a, p->norm_w = a.norm_w;
    p->o = a.o;
    p->eps = a.eps;
    p->Hk = int(d.Hk), p->Hv = int(d.Hv), p->dk = int(d.dk), p->dv = int(d.dv), p->K = int(d.K);
    p->C = d.conv_dim;
    p->st = a.st;
    p->tiles = int((d.dv + cols - 1) / cols);
}

}  // namespace dg::cuda
