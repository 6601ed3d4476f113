// GDN kernel micro-benchmark (issue 6, docs/cuda.md): one GDN layer at Qwen3.5 shapes (27B by default).
//  * decode: the fused decode kernel per layer-step for batch 1/8/32/64, every geometry (state columns
//    per block) and the automatic choice, with the bytes it must move, effective GB/s and the fraction
//    of the device's peak bandwidth; the token-by-token reference beside it.
//  * prefill: the chunked kernel (+ conv-state update, + norm pass when dv is split) for one sequence of
//    512 tokens, 8 of 512 and one of 8192: ms per layer, tokens/s, GFLOP/s and the fraction of the fp32
//    (non-tensor-core) peak.
// Prints tables; never asserts on time. Inputs are random; timings do not depend on the values.
//   bench_gdn_cuda [--shape 27b|9b|0.8b] [--reps N]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/backend.h"

#ifdef DELTAGATE_HAVE_CUDA
#include <cuda_runtime.h>

#include "engine/cuda/ops.cuh"
#include "tests/bench/cuda_bench_common.h"

namespace {

using dg::GdnDims;
namespace cuda = dg::cuda;
// Three untimed calls first, as this benchmark has always timed.
template <typename F>
double time_it(int reps, F f) { return dg::bench::time_it(reps, f, 3); }

struct Dev {
    float* p = nullptr;
    explicit Dev(size_t n, float scale = 1.f, uint32_t seed = 1) {
        CK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(float)));
        std::vector<float> h(n);
        std::mt19937 rng(seed);
        std::normal_distribution<float> nd;
        for (float& x : h) x = scale * nd(rng);
        if (n) CK(cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    }
    ~Dev() { cudaFree(p); }
};

int attr(cudaDeviceAttr a) {
    int dev = 0, v = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&v, a, dev));
    return v;
}

// A layer's weights, inputs for n tokens and state slots for n_slots sequences (one layer).
struct Layer {
    GdnDims d;
    int64_t conv_floats, s_floats;
    Dev conv_w, dt_bias, ssm_a, norm_w, qkv, z, b, a, o, states;
    Layer(const GdnDims& dd, int64_t n, int64_t n_slots)
        : d(dd), conv_floats((dd.K - 1) * dd.conv_dim), s_floats(dd.Hv * dd.dk * dd.dv),
          conv_w(size_t(dd.conv_dim * dd.K), 0.5f, 2), dt_bias(size_t(dd.Hv), 0.5f, 3), ssm_a(size_t(dd.Hv), 0.f, 4),
          norm_w(size_t(dd.dv), 0.1f, 5), qkv(size_t(n * dd.conv_dim), 1.f, 6), z(size_t(n * dd.Hv * dd.dv), 1.f, 7),
          b(size_t(n * dd.Hv), 1.f, 8), a(size_t(n * dd.Hv), 1.f, 9), o(size_t(n * dd.Hv * dd.dv), 0.f, 10),
          states(size_t(n_slots * (conv_floats + s_floats)), 0.3f, 11) {
        std::vector<float> h(dd.Hv, -0.5f);  // decay in (0, 1)
        CK(cudaMemcpy(ssm_a.p, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
    }
    cuda::GdnLayerArgs args() const {
        return {d, conv_w.p, dt_bias.p, ssm_a.p, norm_w.p, 1e-6f, qkv.p, z.p, b.p, a.p, o.p,
                cuda::GdnLayerState{states.p, conv_floats + s_floats, conv_floats}};
    }
};

std::vector<cuda::DevSeq> seqs_of(const std::vector<int32_t>& lens) {
    std::vector<cuda::DevSeq> s;
    int32_t begin = 0;
    for (size_t i = 0; i < lens.size(); ++i) {
        s.push_back(cuda::DevSeq{begin, lens[i], 0, int32_t(i), nullptr});
        begin += lens[i];
    }
    return s;
}

cuda::DevSeq* upload(const std::vector<cuda::DevSeq>& s) {
    cuda::DevSeq* d = nullptr;
    CK(cudaMalloc(&d, s.size() * sizeof(cuda::DevSeq)));
    CK(cudaMemcpy(d, s.data(), s.size() * sizeof(cuda::DevSeq), cudaMemcpyHostToDevice));
    return d;
}

void bench_decode(const GdnDims& d, int reps, double peak_gbs) {
    std::printf("\n## decode: one layer-step, %lld key / %lld value heads, dk %lld, dv %lld\n", (long long)d.Hk,
                (long long)d.Hv, (long long)d.dk, (long long)d.dv);
    std::printf("bytes = per sequence: state read + write (2 Hv dk dv 4) + conv state read + write + qkv, z, b, a in, o out\n\n");
    std::printf("| batch | kernel | cols/block | blocks | us/step | MB moved | GB/s | of peak |\n");
    std::printf("|---:|---|---:|---:|---:|---:|---:|---:|\n");
    for (int32_t B : {1, 8, 32, 64}) {
        Layer L(d, B, B);
        const auto seqs = seqs_of(std::vector<int32_t>(B, 1));
        cuda::DevSeq* dseqs = upload(seqs);
        const int64_t words = cuda::gdn_arrival_words(B, d);
        float* partial = nullptr;
        uint32_t* arrivals = nullptr;
        CK(cudaMalloc(&partial, cuda::gdn_workspace_floats(B, d) * sizeof(float)));
        CK(cudaMalloc(&arrivals, words * sizeof(uint32_t)));
        CK(cudaMemset(arrivals, 0, words * sizeof(uint32_t)));
        const cuda::GdnWorkspace ws{partial, arrivals};
        const auto args = L.args();
        const double bytes = double(B) * (2.0 * L.s_floats * 4 + 2.0 * L.conv_floats * 4 + d.conv_dim * 4.0 +
                                          2.0 * d.Hv * d.dv * 4 + 2.0 * d.Hv * 4) +
                             double(d.conv_dim * d.K + d.dv + 2 * d.Hv) * 4;
        const int auto_cols = cuda::gdn_decode_cols(args, B, 0);
        for (int cols : {0, 32, 64, 128}) {
            if (cols && (d.dv % (cols / 32))) continue;
            const int c = cols ? cols : auto_cols;
            const double s = time_it(reps, [&] { cuda::gdn_decode(args, dseqs, B, ws, cols, 0); });
            const double gbs = bytes / s / 1e9;
            std::printf("| %d | fused%s | %d | %lld | %.2f | %.2f | %.0f | %.0f%% |\n", B, cols ? "" : " (auto)", c,
                        (long long)(B * d.Hv * ((d.dv + c - 1) / c)), s * 1e6, bytes / 1e6, gbs, 100 * gbs / peak_gbs);
        }
        float* scratch = nullptr;
        CK(cudaMalloc(&scratch, size_t(2) * B * d.Hv * sizeof(float)));
        const double s = time_it(std::max(1, reps / 10), [&] { cuda::gdn_mixer_reference(args, dseqs, B, B, scratch, 0); });
        const double gbs = bytes / s / 1e9;
        std::printf("| %d | reference | - | - | %.2f | %.2f | %.0f | %.0f%% |\n", B, s * 1e6, bytes / 1e6, gbs, 100 * gbs / peak_gbs);
        cudaFree(scratch);
        cudaFree(partial);
        cudaFree(arrivals);
        cudaFree(dseqs);
    }
}

void bench_prefill(const GdnDims& d, double peak_gflops, int smem_limit) {
    // Useful FLOPs per token and value head (the chunk form, C = 64, full squares as the kernel computes
    // them): k.k and q.k (2 C dk), K S, Q S and the state update (3 dk dv), P V' and the solve (1.5 C dv).
    const double C = 64, flops_tok = 2.0 * d.Hv * (2 * C * d.dk + 3.0 * d.dk * d.dv + 1.5 * C * d.dv);
    std::printf("\n## prefill: one layer, chunk 64; %.2f MFLOP per token (fp32, no tensor cores)\n\n", flops_tok / 1e6);
    std::printf("| sequences x tokens | kernel | cols/block | blocks | ms/layer | tokens/s | GFLOP/s | of fp32 peak |\n");
    std::printf("|---|---|---:|---:|---:|---:|---:|---:|\n");
    struct Case {
        int32_t n_seqs, len;
    };
    for (Case cs : {Case{1, 512}, Case{8, 512}, Case{1, 8192}}) {
        const int64_t n = int64_t(cs.n_seqs) * cs.len;
        Layer L(d, n, cs.n_seqs);
        const auto seqs = seqs_of(std::vector<int32_t>(cs.n_seqs, cs.len));
        cuda::DevSeq* dseqs = upload(seqs);
        const auto args = L.args();
        const int reps = cs.len >= 8192 ? 3 : 10;
        const int auto_cols = cuda::gdn_prefill_cols(d, cs.n_seqs, 0);
        for (int cols : {0, 32, 64, 128}) {
            if (cols && cuda::gdn_prefill_smem_bytes(cols, d.dk) > smem_limit) continue;
            const int c = cols ? cols : auto_cols;
            const double s = time_it(reps, [&] { cuda::gdn_prefill(args, dseqs, seqs.data(), cs.n_seqs, cols, 0); });
            const double gf = flops_tok * n / s / 1e9;
            std::printf("| %d x %d | chunked%s | %d | %lld | %.3f | %.0f | %.0f | %.1f%% |\n", cs.n_seqs, cs.len,
                        cols ? "" : " (auto)", c, (long long)(cs.n_seqs * d.Hv * ((d.dv + c - 1) / c)), s * 1e3,
                        n / s, gf, 100 * gf / peak_gflops);
        }
        float* scratch = nullptr;
        CK(cudaMalloc(&scratch, size_t(2) * n * d.Hv * sizeof(float)));
        const double s = time_it(1, [&] { cuda::gdn_mixer_reference(args, dseqs, cs.n_seqs, int32_t(n), scratch, 0); });
        std::printf("| %d x %d | reference | - | - | %.3f | %.0f | - | - |\n", cs.n_seqs, cs.len, s * 1e3, n / s);
        cudaFree(scratch);
        cudaFree(dseqs);
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string shape = "27b";
    int reps = 200;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--shape")) shape = argv[i + 1];
        else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    }
    if (!dg::cuda_available()) {
        std::printf("bench_gdn_cuda: no CUDA device, nothing to measure\n");
        return 0;
    }
    GdnDims d{16, 48, 128, 128, 4, 0};  // 27B
    if (shape == "9b") d.Hv = 32;
    else if (shape == "0.8b") d.Hv = 16;
    else if (shape != "27b") {
        std::fprintf(stderr, "--shape: 27b, 9b or 0.8b\n");
        return 2;
    }
    d.conv_dim = 2 * d.Hk * d.dk + d.Hv * d.dv;
    cudaDeviceProp prop{};
    int dev = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaGetDeviceProperties(&prop, dev));
    const int sms = attr(cudaDevAttrMultiProcessorCount);
    const double peak_gbs = 2.0 * attr(cudaDevAttrMemoryClockRate) * 1e3 * attr(cudaDevAttrGlobalMemoryBusWidth) / 8 / 1e9;
    const int lanes = prop.major == 8 && prop.minor == 0 ? 64 : 128;  // fp32 lanes per SM (A100: 64)
    const double peak_gflops = 2.0 * lanes * sms * attr(cudaDevAttrClockRate) * 1e3 / 1e9;
    const int smem = attr(cudaDevAttrMaxSharedMemoryPerBlockOptin);
    std::printf("# bench_gdn_cuda: %s, sm_%d%d, %d SMs, peak %.0f GB/s (memory clock x bus), fp32 peak %.1f TFLOP/s "
                "(%d lanes/SM x boost clock), %d B shared memory per block; shape %s\n",
                prop.name, prop.major, prop.minor, sms, peak_gbs, peak_gflops / 1e3, lanes, smem, shape.c_str());
    bench_decode(d, reps, peak_gbs);
    bench_prefill(d, peak_gflops, smem);
    return 0;
}

#else

int main() {
    std::printf("bench_gdn_cuda: this build lacks CUDA (nvcc was not found), nothing to measure\n");
    return 0;
}

#endif
