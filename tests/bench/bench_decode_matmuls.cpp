// The decode step's matmuls alone: every matrix of a GGUF model, in model order, through the serving
// matmul (matmul_fast, one token), again and again, beside a plain read of the same number of bytes.
// Nothing else of the step runs (no mixer, attention, norms), so this is how fast the dot kernels stream
// the weights, and whether a type's decode is bound by memory (GB/s near the read loop's) or by the
// kernel's instructions (well below it). Prints a table; never asserts on time.
//
//   bench_decode_matmuls FILE.gguf [FILE.gguf ...] [--rounds N] [--in-place] [--no-pack]
// --in-place reads the weights where the loader put them (the file mapping, 4 KiB pages) instead of
// moving them into 2 MiB pages as the serving backend does (huge_page_weights.h). --no-pack moves them
// but leaves Q4_K, Q8_0 and BF16 matrices in their file layout (the serving backend packs them by 16 rows,
// rows16.h).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/cpu/huge_page_weights.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/parallel.h"
#include "engine/weights.h"
#include "read_bandwidth.h"

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> files;
    int rounds = 3;
    bool in_place = false, pack = true;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--rounds" && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
        else if (a == "--in-place") in_place = true;
        else if (a == "--no-pack") pack = false;
        else if (a.rfind("--", 0) == 0) {
            std::fprintf(stderr, "usage: bench_decode_matmuls FILE.gguf [...] [--rounds N] [--in-place] [--no-pack]\n");
            return 2;
        } else files.push_back(a);
    }
    if (files.empty()) {
        std::fprintf(stderr, "usage: bench_decode_matmuls FILE.gguf [...] [--rounds N] [--in-place] [--no-pack]\n");
        return 2;
    }
    std::printf("%d threads; weights %s\n\n", dg::cpu::num_threads(),
                in_place ? "in the file mapping (4 KiB pages)" : "moved into 2 MiB pages");
    std::printf("| round | file | matrices | GB per pass | matmuls GB/s (best of 5 passes) | read loop GB/s | matmuls / read | per weight type | weights |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
    for (int round = 1; round <= rounds; ++round)
        for (const std::string& f : files) {
            auto w = dg::load_gguf_model(f);
            if (!w.ok()) {
                std::fprintf(stderr, "%s: %s\n", f.c_str(), std::string(w.status().message()).c_str());
                return 1;
            }
            std::string placement = "in place";
            if (!in_place) {
                auto p = dg::cpu::move_matrices_to_huge_pages(**w, pack);
                if (!p.ok()) {
                    std::fprintf(stderr, "%s: %s\n", f.c_str(), std::string(p.status().message()).c_str());
                    return 1;
                }
                placement = dg::cpu::describe(*p);
            }
            std::vector<dg::Matrix> ms;
            (*w)->for_each_matrix([&](dg::Matrix& m) {
                if (&m != &(*w)->embed) ms.push_back(m);  // the table is read a row at a time; the head reads it all
            });
            uint64_t bytes = 0;
            int64_t widest = 0, tallest = 0;
            for (const dg::Matrix& m : ms) {
                bytes += uint64_t(m.rows) * m.row_bytes;
                widest = std::max(widest, m.cols), tallest = std::max(tallest, m.rows);
            }
            std::vector<float> x(widest, 0.5f), y(tallest);
            for (int64_t i = 0; i < widest; ++i) x[i] = float((i * 37) % 17) / 17.f - 0.5f;
            double best = 0;
            std::map<dg::DType, std::pair<double, double>> by_type;  // bytes, seconds of the best pass
            for (int pass = 0; pass < 5; ++pass) {
                std::map<dg::DType, std::pair<double, double>> this_pass;
                const auto t = Clock::now();
                for (const dg::Matrix& m : ms) {
                    const auto tm = Clock::now();
                    dg::cpu::matmul_fast(x.data(), 1, m, y.data());
                    auto& [b, sec] = this_pass[m.type];
                    b += double(m.rows) * m.row_bytes, sec += seconds_since(tm);
                }
                const double gbs = double(bytes) / seconds_since(t) / 1e9;
                if (gbs > best) best = gbs, by_type = this_pass;
            }
            const double bound = dg::bench::read_gbs(double(bytes), 3);
            const std::string name = f.substr(f.find_last_of('/') + 1);
            std::string types;
            for (const auto& [type, bs] : by_type)
                types += absl::StrFormat("%s%s %.2f GB at %.1f GB/s", types.empty() ? "" : "; ",
                                         dg::dtype_info(type).name, bs.first / 1e9, bs.first / bs.second / 1e9);
            std::printf("| %d | %s | %zu | %.2f | %.1f | %.1f | %.0f%% | %s | %s |\n", round, name.c_str(), ms.size(),
                        bytes / 1e9, best, bound, 100 * best / bound, types.c_str(), placement.c_str());
            std::fflush(stdout);
        }
    return 0;
}
