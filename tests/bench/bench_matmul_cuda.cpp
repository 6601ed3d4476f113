// CUDA matmul micro-benchmark (issue 15, docs/cuda.md "Matmul"), for the GPU machine:
//  * the device's copy bandwidth, measured here: cudaMemcpy device->device of a large buffer (bytes read +
//    bytes written per second), the bound every decode figure is compared with;
//  * decode GEMV per weight type at the 27B and 35B-A3B matrix shapes (ModelConfig presets), 1 and 8
//    tokens: µs per call (activation quantisation included), weight GB/s and its fraction of the copy
//    bandwidth (issue target: >= 85%);
//  * GEMV against GEMM per token count (the crossover kGemmMinTokens should be set from);
//  * prefill GEMM (bf16 tensor cores via cuBLAS, tile dequantisation included) at 512 and 8192 tokens:
//    ms and TFLOP/s.
// Prints markdown tables; never asserts on time. Weights are random rows, quantised once and tiled.
//   bench_matmul_cuda [--shape 27b|35b-a3b|both|tiny] [--reps N]
// --shape tiny runs the tiny preset's shapes with small token counts: on the CPU emulation (a ctest,
// tests/cmake/bench_matmul_cuda.cmake) it only shows that the program runs; its figures mean nothing.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/model_source.h"

#ifdef DELTAGATE_HAVE_CUDA
#include <cuda_runtime.h>

#include "engine/cuda/matmul.cuh"
#include "tests/bench/cuda_bench_common.h"

namespace {

namespace cuda = dg::cuda;
using dg::bench::time_it;
using dg::DType;
using dg::Matrix;

// A device matrix of `type`: 64 random rows quantised on the host, tiled to `rows`.
struct DevMatrix {
    Matrix m;
    uint8_t* d = nullptr;
    DevMatrix(DType t, int64_t rows, int64_t cols, uint32_t seed) {
        const uint64_t rb = *dg::row_bytes(t, cols);
        const int64_t base = std::min<int64_t>(rows, 64);
        std::vector<uint8_t> h(size_t(base) * rb);
        std::vector<float> row(static_cast<size_t>(cols));
        std::mt19937 rng(seed);
        std::normal_distribution<float> nd(0.f, 0.02f);
        for (int64_t r = 0; r < base; ++r) {
            for (float& v : row) v = nd(rng);
            dg::quantize_row(t, row.data(), h.data() + uint64_t(r) * rb, cols);
        }
        CK(cudaMalloc(&d, size_t(rows) * rb));
        for (int64_t r = 0; r < rows; r += base) {
            const int64_t k = std::min(base, rows - r);
            CK(cudaMemcpy(d + uint64_t(r) * rb, h.data(), size_t(k) * rb, cudaMemcpyHostToDevice));
        }
        m = Matrix{t, rows, cols, d, rb};
    }
    ~DevMatrix() { cudaFree(d); }
    double bytes() const { return double(m.rows) * double(m.row_bytes); }
};

struct DevF {
    float* p = nullptr;
    explicit DevF(size_t n) {
        CK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(float)));
        std::vector<float> h(n);
        std::mt19937 rng(7);
        std::normal_distribution<float> nd;
        for (float& x : h) x = nd(rng);
        if (n) CK(cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    }
    ~DevF() { cudaFree(p); }
};

struct Shape {
    std::string name;
    int64_t rows, cols;
};
std::vector<Shape> shapes_of(const std::string& preset) {
    auto c = dg::preset_config(preset);
    if (!c.ok()) {
        std::fprintf(stderr, "unknown preset %s\n", preset.c_str());
        std::exit(2);
    }
    std::vector<Shape> s;
    s.push_back({preset + " gdn_qkv", c->conv_dim(), c->hidden});
    s.push_back({preset + " attn_q+gate", 2 * c->n_heads * c->head_dim, c->hidden});
    if (c->n_experts > 0) {
        s.push_back({preset + " expert_gate", c->expert_intermediate, c->hidden});
        s.push_back({preset + " expert_down", c->hidden, c->expert_intermediate});
        s.push_back({preset + " router", c->n_experts, c->hidden});
    } else {
        s.push_back({preset + " ffn_gate", c->intermediate, c->hidden});
        s.push_back({preset + " ffn_down", c->hidden, c->intermediate});
    }
    return s;
}

const std::vector<DType> kTypes{DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_0, DType::Q4_0,
                                DType::Q4_1, DType::BF16, DType::F16,  DType::F32};

void bench_gemv(const std::vector<Shape>& shapes, double copy_bps, int reps) {
    std::printf("\n## decode GEMV (activation quantisation included): weight bytes / time, vs copy bandwidth %.0f GB/s\n\n",
                copy_bps / 1e9);
    std::printf("| matrix | type | rows x cols | MB | tokens | µs | GB/s | of copy |\n|---|---|---|---:|---:|---:|---:|---:|\n");
    cuda::Matmul mm;
    for (const Shape& sh : shapes)
        for (DType t : kTypes) {
            if (!dg::row_bytes(t, sh.cols).ok()) continue;
            DevMatrix W(t, sh.rows, sh.cols, 1);
            for (int32_t n : {1, 8}) {
                DevF x(size_t(n) * sh.cols), y(size_t(n) * sh.rows);
                const double s = time_it(reps, [&] { mm.run(cuda::MatmulPath::kGemv, x.p, n, W.m, y.p, 0); });
                const double bps = W.bytes() / s;
                std::printf("| %s | %s | %lldx%lld | %.1f | %d | %.1f | %.0f | %.0f%% |\n", sh.name.c_str(),
                            dg::dtype_info(t).name, (long long)sh.rows, (long long)sh.cols, W.bytes() / 1e6, n, s * 1e6,
                            bps / 1e9, 100 * bps / copy_bps);
            }
        }
}

void bench_crossover(const Shape& sh, const std::vector<int32_t>& ns, int reps) {
    std::printf("\n## GEMV vs GEMM by token count (%s %lldx%lld, q4_k): µs per call; kGemmMinTokens = %d\n\n",
                sh.name.c_str(), (long long)sh.rows, (long long)sh.cols, cuda::kGemmMinTokens);
    std::printf("| tokens | GEMV µs | GEMM µs | faster |\n|---:|---:|---:|---|\n");
    cuda::Matmul mm;
    DevMatrix W(DType::Q4_K, sh.rows, sh.cols, 2);
    for (int32_t n : ns) {
        DevF x(size_t(n) * sh.cols), y(size_t(n) * sh.rows);
        const double g = time_it(reps, [&] { mm.run(cuda::MatmulPath::kGemv, x.p, n, W.m, y.p, 0); });
        const double m = time_it(reps, [&] { mm.run(cuda::MatmulPath::kGemm, x.p, n, W.m, y.p, 0); });
        std::printf("| %d | %.1f | %.1f | %s |\n", n, g * 1e6, m * 1e6, g <= m ? "GEMV" : "GEMM");
    }
}

void bench_gemm(const std::vector<Shape>& shapes, const std::vector<int32_t>& ns, int reps) {
    std::printf("\n## prefill GEMM (bf16 tensor cores via cuBLAS, tile dequantisation included)\n\n");
    std::printf("| matrix | type | tokens | ms | TFLOP/s | workspace MB |\n|---|---|---:|---:|---:|---:|\n");
    for (const Shape& sh : shapes)
        for (DType t : {DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::BF16}) {
            if (!dg::row_bytes(t, sh.cols).ok()) continue;
            DevMatrix W(t, sh.rows, sh.cols, 3);
            cuda::Matmul mm;
            for (int32_t n : ns) {
                DevF x(size_t(n) * sh.cols), y(size_t(n) * sh.rows);
                const double s = time_it(reps, [&] { mm.run(cuda::MatmulPath::kGemm, x.p, n, W.m, y.p, 0); });
                const double flops = 2.0 * n * double(sh.rows) * double(sh.cols);
                std::printf("| %s | %s | %d | %.3f | %.1f | %.0f |\n", sh.name.c_str(), dg::dtype_info(t).name, n, s * 1e3,
                            flops / s / 1e12, double(mm.workspace_bytes()) / 1e6);
            }
        }
}

}  // namespace

int main(int argc, char** argv) {
    std::string shape = "both";
    int reps = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--shape")) shape = argv[i + 1];
        else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
        else {
            std::fprintf(stderr, "usage: bench_matmul_cuda [--shape 27b|35b-a3b|both|tiny|copy] [--reps N]\n"
                                 "  --shape copy: only the device copy bandwidth (the bound other benchmarks cite)\n");
            return 2;
        }
    }
    if (!dg::cuda_available()) {
        std::fprintf(stderr, "bench_matmul_cuda: no CUDA device\n");
        return 1;
    }
    const bool tiny = shape == "tiny";
    if (reps <= 0) reps = tiny || dg::cuda_emulated() ? 1 : 20;
    cudaDeviceProp p{};
    CK(cudaGetDeviceProperties(&p, 0));
    std::printf("# bench_matmul_cuda: %s%s, shape %s, %d reps\n", p.name, dg::cuda_emulated() ? " (CPU emulation: figures meaningless)" : "",
                shape.c_str(), reps);
    const double copy_bps = dg::bench::copy_bytes_per_s(tiny ? (size_t(4) << 20) : (size_t(1) << 30), reps);
    std::printf("\ndevice copy bandwidth (cudaMemcpy D2D, read + write): %.0f GB/s\n", copy_bps / 1e9);
    if (shape == "copy") return 0;
    std::vector<Shape> shapes;
    for (const char* pr : {"27b", "35b-a3b"})
        if (shape == pr || shape == "both") {
            auto s = shapes_of(pr);
            shapes.insert(shapes.end(), s.begin(), s.end());
        }
    if (tiny) shapes = shapes_of("tiny");
    if (shapes.empty()) {
        std::fprintf(stderr, "unknown --shape %s\n", shape.c_str());
        return 2;
    }
    bench_gemv(shapes, copy_bps, reps);
    // shapes[2], shapes[3]: the first preset's FFN (or expert) gate and down projections.
    bench_crossover(shapes[2], tiny ? std::vector<int32_t>{8, 33} : std::vector<int32_t>{4, 8, 16, 24, 32, 48, 64, 128},
                    reps);
    bench_gemm({shapes[2], shapes[3]}, tiny ? std::vector<int32_t>{40} : std::vector<int32_t>{512, 8192},
               tiny ? 1 : std::max(1, reps / 4));
    return 0;
}

#else

int main() {
    std::fprintf(stderr, "bench_matmul_cuda: this build has no CUDA backend\n");
    return 1;
}

#endif
