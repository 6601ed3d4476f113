// Attention kernel micro-benchmark (issue 15, docs/cuda.md "Attention"): one attention layer over the paged
// KV cache at Qwen3.5 shapes (27B by default).
//  * copy: the device's measured copy bandwidth (cudaMemcpy device to device, bytes read + written per
//    second): the bound decode attention is held to.
//  * decode: one step (split kernel + combine, the new token's K/V stored inside) at batch 1 and 8 for
//    contexts 1K..32K and every KV type: the KV bytes it must read (K and V rows of every cached
//    position, in the cache's type), effective GB/s and the fraction of the measured copy bandwidth.
//  * prefill: one sequence of 512 / 2048 / 8192 tokens from an empty cache (K/V store + tiled kernel):
//    ms per layer, tokens/s and GFLOP/s (4 Hq hd per query-key pair: QK and PV).
// --tiny runs the tiny preset's heads at small contexts and one repetition: what ctest runs on the CUDA
// emulation to show the program works (its timings mean nothing there). Prints tables; never asserts on
// time. The KV pool holds random rows quantised with the engine's own quantisers.
//   bench_attention_cuda [--shape 27b|35b-a3b|tiny] [--reps N] [--tiny]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/formats/dtype.h"

#ifdef DELTAGATE_HAVE_CUDA
#include <cuda_runtime.h>

#include "engine/cuda/attention_geometry.h"
#include "engine/cuda/ops.cuh"
#include "tests/bench/cuda_bench_common.h"

namespace {

using dg::AttnDims;
using dg::DType;
namespace cuda = dg::cuda;
using dg::bench::time_it;

template <typename T>
T* dalloc(size_t n) {
    T* p = nullptr;
    CK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
    return p;
}
float* drandom(size_t n, float scale, uint32_t seed) {
    std::vector<float> h(n);
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    for (float& x : h) x = scale * nd(rng);
    float* p = dalloc<float>(n);
    if (n) CK(cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    return p;
}

double copy_gbs(size_t bytes, int reps) { return dg::bench::copy_bytes_per_s(bytes, reps) / 1e9; }

// A KV pool of `tokens` positions per sequence for `n_seqs` sequences (blocks in order), every row a
// random vector in `type`, and the step's inputs.
struct Pool {
    AttnDims d;
    DType type;
    int32_t bt = 16;
    int64_t row_bytes = 0, tokens = 0;
    int32_t n_seqs = 0;
    uint8_t *k = nullptr, *v = nullptr;
    int32_t* blocks = nullptr;
    Pool(const AttnDims& dd, DType t, int64_t toks, int32_t seqs) : d(dd), type(t), tokens(toks), n_seqs(seqs) {
        row_bytes = int64_t(*dg::row_bytes(t, d.hd));
        const int64_t per_seq = (tokens + bt - 1) / bt, n_blocks = per_seq * seqs;
        const size_t bytes = size_t(n_blocks * bt * d.Hkv * row_bytes);
        // A few hundred distinct random rows, repeated: the values do not change the timing.
        const int64_t distinct = 257;
        std::vector<uint8_t> rows(size_t(distinct * row_bytes));
        std::mt19937 rng(7);
        std::normal_distribution<float> nd;
        std::vector<float> x(size_t(d.hd));
        for (int64_t i = 0; i < distinct; ++i) {
            for (float& f : x) f = nd(rng);
            dg::quantize_row(t, x.data(), rows.data() + i * row_bytes, d.hd);
        }
        std::vector<uint8_t> h(bytes);
        for (size_t o = 0, i = 0; o < bytes; o += size_t(row_bytes), i = (i + 1) % size_t(distinct))
            std::memcpy(h.data() + o, rows.data() + i * row_bytes, size_t(row_bytes));
        k = dalloc<uint8_t>(bytes), v = dalloc<uint8_t>(bytes);
        CK(cudaMemcpy(k, h.data(), bytes, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(v, h.data(), bytes, cudaMemcpyHostToDevice));
        std::vector<int32_t> ids(static_cast<size_t>(n_blocks));
        for (int64_t i = 0; i < n_blocks; ++i) ids[size_t(i)] = int32_t(i);
        blocks = dalloc<int32_t>(ids.size());
        CK(cudaMemcpy(blocks, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
    }
    ~Pool() {
        cudaFree(k), cudaFree(v), cudaFree(blocks);
    }
    cuda::KvLayerDev layer() const { return {type, bt, row_bytes, k, v}; }
    // Sequence i: `len` rows from position pos0.
    std::vector<cuda::DevSeq> seqs(int32_t len, int32_t pos0) const {
        std::vector<cuda::DevSeq> s;
        const int64_t per_seq = (tokens + bt - 1) / bt;
        for (int32_t i = 0; i < n_seqs; ++i) s.push_back({i * len, len, pos0, i, blocks + i * per_seq});
        return s;
    }
};

struct Inputs {
    float *qg, *k, *v, *out, *q_norm, *k_norm;
    Inputs(const AttnDims& d, int64_t n) {
        qg = drandom(size_t(n * 2 * d.Hq * d.hd), 1.f, 1);
        k = drandom(size_t(n * d.Hkv * d.hd), 1.f, 2);
        v = drandom(size_t(n * d.Hkv * d.hd), 1.f, 3);
        out = dalloc<float>(size_t(n * d.Hq * d.hd));
        q_norm = drandom(size_t(d.hd), 0.1f, 4);
        k_norm = drandom(size_t(d.hd), 0.1f, 5);
    }
    ~Inputs() {
        for (float* p : {qg, k, v, out, q_norm, k_norm}) cudaFree(p);
    }
};

void bench_decode(const AttnDims& d, const std::vector<int64_t>& contexts, const std::vector<int32_t>& batches,
                  int reps, double copy) {
    std::printf("\n## decode: one layer-step, Hq %lld, Hkv %lld, hd %lld; bytes = K and V rows of every cached "
                "position (context x Hkv x 2 rows) per sequence\n\n",
                (long long)d.Hq, (long long)d.Hkv, (long long)d.hd);
    std::printf("| batch | context | KV type | splits | us/step | MB read | GB/s | of copy bandwidth |\n");
    std::printf("|---:|---:|---|---:|---:|---:|---:|---:|\n");
    for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
        for (int32_t B : batches) {
            for (int64_t ctx : contexts) {
                Pool pool(d, t, ctx, B);
                Inputs in(d, B);
                const auto seqs = pool.seqs(1, int32_t(ctx - 1));
                cuda::DevSeq* dseqs = dalloc<cuda::DevSeq>(seqs.size());
                CK(cudaMemcpy(dseqs, seqs.data(), seqs.size() * sizeof(cuda::DevSeq), cudaMemcpyHostToDevice));
                const int splits = cuda::attention_decode_splits(B, d);
                float* ws = dalloc<float>(size_t(cuda::attn_workspace_floats(B, d.Hq, d.Hkv, d.hd, splits)));
                const auto kv = pool.layer();
                const double s = time_it(reps, [&] {
                    cuda::attention(dseqs, seqs.data(), B, 0, d, in.q_norm, in.k_norm, 1e-6f, in.qg, in.k, in.v, in.out,
                                    kv, ws, 0);
                });
                const double bytes = double(B) * double(ctx) * double(d.Hkv) * 2.0 * double(pool.row_bytes);
                const double gbs = bytes / s / 1e9;
                std::printf("| %d | %lld | %s | %d | %.2f | %.2f | %.0f | %.0f%% |\n", B, (long long)ctx,
                            dg::dtype_info(t).name, splits, s * 1e6, bytes / 1e6, gbs, 100 * gbs / copy);
                std::fflush(stdout);
                cudaFree(ws);
                cudaFree(dseqs);
            }
        }
    }
}

void bench_prefill(const AttnDims& d, const std::vector<int32_t>& lens, int reps) {
    std::printf("\n## prefill: one sequence from an empty cache, one layer (K/V store + tiled flash attention, "
                "fp32 CUDA cores); FLOPs = 4 Hq hd per causal query-key pair\n\n");
    std::printf("| tokens | KV type | ms/layer | tokens/s | GFLOP/s |\n");
    std::printf("|---:|---|---:|---:|---:|\n");
    for (DType t : {DType::F16, DType::Q8_0}) {
        for (int32_t n : lens) {
            Pool pool(d, t, n, 1);
            Inputs in(d, n);
            const auto seqs = pool.seqs(n, 0);
            cuda::DevSeq* dseqs = dalloc<cuda::DevSeq>(1);
            CK(cudaMemcpy(dseqs, seqs.data(), sizeof(cuda::DevSeq), cudaMemcpyHostToDevice));
            const auto kv = pool.layer();
            const double s = time_it(std::max(1, n >= 8192 ? reps / 10 : reps), [&] {
                cuda::attention(dseqs, seqs.data(), 0, 1, d, in.q_norm, in.k_norm, 1e-6f, in.qg, in.k, in.v, in.out,
                                kv, nullptr, 0);
            });
            const double flops = 4.0 * double(d.Hq) * double(d.hd) * double(n) * double(n + 1) / 2;
            std::printf("| %d | %s | %.3f | %.0f | %.0f |\n", n, dg::dtype_info(t).name, s * 1e3, n / s, flops / s / 1e9);
            std::fflush(stdout);
            cudaFree(dseqs);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string shape = "27b";
    int reps = 50;
    bool tiny = false;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--tiny")) tiny = true, shape = "tiny", reps = 1;
        else if (!std::strcmp(argv[i], "--shape") && i + 1 < argc) shape = argv[++i];
        else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: bench_attention_cuda [--shape 27b|35b-a3b|tiny] [--reps N] [--tiny]\n");
            return 2;
        }
    }
    if (!dg::cuda_available()) {
        std::printf("bench_attention_cuda: no CUDA device, nothing to measure\n");
        return 0;
    }
    AttnDims d{24, 4, 256, 64, 1e7f};  // 27B: 24 query heads, 4 KV heads, head_dim 256, rotary 64
    if (shape == "35b-a3b") d.Hq = 16, d.Hkv = 2;
    else if (shape == "tiny") d.Hq = 12, d.Hkv = 2;
    else if (shape != "27b") {
        std::fprintf(stderr, "--shape: 27b, 35b-a3b or tiny\n");
        return 2;
    }
    cudaDeviceProp prop{};
    int dev = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaGetDeviceProperties(&prop, dev));
    const double copy = copy_gbs(tiny ? (size_t(16) << 20) : (size_t(1) << 30), tiny ? 1 : 20);
    std::printf("# bench_attention_cuda: %s, sm_%d%d; shape %s; measured copy bandwidth %.0f GB/s (device to "
                "device, read + write)%s\n",
                prop.name, prop.major, prop.minor, shape.c_str(), copy,
                tiny ? "; --tiny: small contexts, one repetition (a check that it runs, not a measurement)" : "");
    if (tiny) {
        bench_decode(d, {64, 300}, {1, 3}, reps, copy);
        bench_prefill(d, {40}, reps);
    } else {
        bench_decode(d, {1024, 2048, 4096, 8192, 16384, 32768}, {1, 8}, reps, copy);
        bench_prefill(d, {512, 2048, 8192}, std::max(1, reps / 5));
    }
    return 0;
}

#else

int main() {
    std::printf("bench_attention_cuda: this build lacks CUDA (nvcc was not found), nothing to measure\n");
    return 0;
}

#endif
