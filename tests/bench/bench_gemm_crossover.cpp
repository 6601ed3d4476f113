// Where the prefill GEMM (engine/cpu/gemm.h) starts to beat the per-row decode kernels over token tiles
// (matmul_fast_rows): both timed on the same matrix for n = 1..32 tokens, best of --repeat, all threads.
// The crossover sets kGemmMinTokensQuant / kGemmMinTokensFloat (gemm.h). With --tokens 64,512 it times the
// prefill sizes, and the GFLOP/s column is the GEMM's rate. --packed 1 packs the matrix by 16 rows
// (rows16.h) where its type can be, as the serving backend does. Prints a table; never asserts on time.
//
//   bench_gemm_crossover [--type q8_0,q4_k,q6_k,bf16,f16,f32] [--rows 3584] [--cols 1024] [--repeat 20]
//                        [--tokens 1,2,4,...] [--packed 0|1]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/parallel.h"
#include "engine/cpu/rows16.h"
#include "engine/formats/dtype.h"

int main(int argc, char** argv) {
    std::string types = "q8_0,q4_k,q6_k,bf16,f16,f32";
    int64_t rows = 3584, cols = 1024, repeat = 20, packed = 0;
    std::vector<int32_t> token_counts = {1, 2, 4, 6, 8, 12, 16, 24, 32};
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--type") types = v;
        else if (k == "--rows") (void)absl::SimpleAtoi(v, &rows);
        else if (k == "--cols") (void)absl::SimpleAtoi(v, &cols);
        else if (k == "--repeat") (void)absl::SimpleAtoi(v, &repeat);
        else if (k == "--packed") (void)absl::SimpleAtoi(v, &packed);
        else if (k == "--tokens") {
            token_counts.clear();
            for (absl::string_view t : absl::StrSplit(v, ',')) {
                int32_t n = 0;
                if (!absl::SimpleAtoi(t, &n) || n < 1) {
                    std::fprintf(stderr, "--tokens: %s is not a count\n", std::string(t).c_str());
                    return 2;
                }
                token_counts.push_back(n);
            }
        }
        else {
            std::fprintf(stderr, "unknown flag %s\n", k.c_str());
            return 2;
        }
    }
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 1.f);
    const int32_t max_tokens = *std::max_element(token_counts.begin(), token_counts.end());
    std::vector<float> w(size_t(rows) * cols), x(size_t(max_tokens) * cols), y(size_t(max_tokens) * rows);
    for (auto& e : w) e = 0.05f * nd(rng);
    for (auto& e : x) e = nd(rng);
    std::printf("%d threads, %lld x %lld matrix; microseconds per call (best of %lld)\n\n", dg::cpu::num_threads(),
                (long long)rows, (long long)cols, (long long)repeat);
    std::printf("| type | tokens | per-row kernels | GEMM | GEMM / per-row | GEMM GFLOP/s |\n|---|---|---|---|---|---|\n");
    for (absl::string_view tn : absl::StrSplit(types, ',')) {
        auto t = dg::dtype_from_name(std::string(tn));
        if (!t.ok()) {
            std::fprintf(stderr, "%s\n", std::string(t.status().message()).c_str());
            return 1;
        }
        const uint64_t rb = *dg::row_bytes(*t, cols);
        std::vector<uint8_t> data(rb * rows);
        for (int64_t r = 0; r < rows; ++r) dg::quantize_row(*t, w.data() + r * cols, data.data() + r * rb, cols);
        dg::Matrix W{*t, rows, cols, data.data(), rb};
        if (packed && dg::cpu::can_pack_rows16(W)) dg::cpu::pack_rows16(W, data.data());
        if (!dg::cpu::gemm_supported(*t)) {
            std::printf("| %s | | | (no GEMM on this CPU) | |\n", std::string(tn).c_str());
            continue;
        }
        for (int32_t n : token_counts) {
            auto time = [&](auto fn) {
                double best = 1e30;
                for (int64_t r = 0; r < repeat; ++r) {
                    const auto t0 = std::chrono::steady_clock::now();
                    fn();
                    best = std::min(best, std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
                }
                return best;
            };
            const double rowwise = time([&] { dg::cpu::matmul_fast_rows(x.data(), n, W, y.data()); });
            const double gemm = time([&] { dg::cpu::gemm(x.data(), n, W, y.data()); });
            std::printf("| %s%s | %d | %.0f | %.0f | %.2f | %.1f |\n", std::string(tn).c_str(),
                        W.packing == dg::Packing::kRows16 ? " (packed)" : "", n, rowwise, gemm, gemm / rowwise,
                        2.0 * double(rows) * double(cols) * n / gemm / 1e3);
        }
    }
    return 0;
}
