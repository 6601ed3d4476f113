// One decode token's attention on the CPU backend (cpu::attention, fast path) over a cached history of
// --context positions, the 0.8B's shape by default (8 query heads, 2 KV heads, head dim 256), in an f16
// cache of 16-token blocks. The cache lives in 2 MiB pages as the serving backend holds it (--huge 1) or
// in a plain vector's 4 KiB pages (--huge 0). Prints microseconds per call (best and median of --repeat)
// and the rate at which the history's K and V bytes were read. With --cold 1, 256 MB are read between calls
// (not timed) so that the history comes from memory, as in a decode step, where the weights stream
// through the caches between one layer's attention and the next token's. Never asserts on time.
//
//   bench_attention_cpu [--context 512,2048,8192] [--repeat 50] [--huge 0|1] [--cold 0|1] [--hq 8] [--hkv 2]
//                       [--hd 256]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/backend.h"
#include "engine/batch.h"
#include "engine/cpu/huge_page_weights.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/parallel.h"
#include "engine/formats/dtype.h"

int main(int argc, char** argv) {
    std::vector<int64_t> contexts = {512, 2048, 8192};
    int64_t repeat = 50, huge = 1, cold = 0, hq = 8, hkv = 2, hd = 256;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        bool ok = true;
        if (k == "--context") {
            contexts.clear();
            for (absl::string_view c : absl::StrSplit(v, ',')) {
                int64_t n = 0;
                ok = ok && absl::SimpleAtoi(c, &n) && n > 0;
                contexts.push_back(n);
            }
        } else if (k == "--repeat") ok = absl::SimpleAtoi(v, &repeat) && repeat > 0;
        else if (k == "--huge") ok = absl::SimpleAtoi(v, &huge);
        else if (k == "--cold") ok = absl::SimpleAtoi(v, &cold);
        else if (k == "--hq") ok = absl::SimpleAtoi(v, &hq) && hq > 0;
        else if (k == "--hkv") ok = absl::SimpleAtoi(v, &hkv) && hkv > 0 && hq % hkv == 0;
        else if (k == "--hd") ok = absl::SimpleAtoi(v, &hd) && hd > 0 && hd % 2 == 0;
        else ok = false;
        if (!ok) {
            std::fprintf(stderr, "bad flag %s %s\n", k.c_str(), v.c_str());
            return 2;
        }
    }
    const dg::AttnDims d{hq, hkv, hd, std::min<int64_t>(64, hd), 1e7f};
    dg::AttnWeights w;
    w.q_norm.assign(size_t(hd), 1.f);
    w.k_norm.assign(size_t(hd), 1.f);
    const int32_t block_tokens = 16;
    const int64_t row_bytes = hd * 2;
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    std::printf("%d threads; %lld query heads, %lld KV heads, head dim %lld, f16 cache in %s; history %s\n\n",
                dg::cpu::num_threads(), (long long)hq, (long long)hkv, (long long)hd,
                huge ? "2 MiB pages" : "4 KiB pages (a vector)", cold ? "from memory (--cold 1)" : "as the last call left it");
    std::vector<uint64_t> flush(cold ? (256u << 20) / 8 : 0, 1);
    uint64_t flush_sum = 0;
    std::printf("| context | best us | median us | K+V bytes read | GB/s (best) |\n|---|---|---|---|---|\n");
    for (int64_t ctx : contexts) {
        const int32_t n_blocks = int32_t(ctx / block_tokens + 1);
        const uint64_t bytes = uint64_t(n_blocks) * block_tokens * hkv * row_bytes;
        std::shared_ptr<uint8_t> kh, vh;
        std::vector<uint8_t> kv_vec, vv_vec;
        uint8_t *k, *v;
        if (huge) {
            auto a = dg::cpu::map_huge_pages(bytes), b = dg::cpu::map_huge_pages(bytes);
            if (!a.ok() || !b.ok()) {
                std::fprintf(stderr, "map_huge_pages failed\n");
                return 1;
            }
            kh = *a, vh = *b, k = kh.get(), v = vh.get();
        } else {
            kv_vec.assign(bytes, 0), vv_vec.assign(bytes, 0), k = kv_vec.data(), v = vv_vec.data();
        }
        // The history: random f16 rows (what the K/V stores hold), blocks in table order.
        std::vector<float> row(static_cast<size_t>(hd));
        for (uint64_t off = 0; off < bytes; off += uint64_t(row_bytes)) {
            for (auto& e : row) e = nd(rng);
            dg::quantize_row(dg::DType::F16, row.data(), k + off, hd);
            for (auto& e : row) e = nd(rng);
            dg::quantize_row(dg::DType::F16, row.data(), v + off, hd);
        }
        std::vector<int32_t> table(static_cast<size_t>(n_blocks));
        for (int32_t i = 0; i < n_blocks; ++i) table[size_t(i)] = i;
        const dg::cpu::KvLayer kv{dg::DType::F16, block_tokens, row_bytes, k, v};
        dg::StepBatch b;
        b.tokens = {0};
        b.seqs.push_back(dg::SeqSlice{0, 1, int32_t(ctx), 0, table.data(), n_blocks});
        std::vector<float> qg(size_t(hq * 2 * hd)), kin(size_t(hkv * hd)), vin(kin.size()), out(size_t(hq * hd));
        for (auto* vec : {&qg, &kin, &vin})
            for (auto& e : *vec) e = nd(rng);
        std::vector<double> us;
        for (int64_t r = 0; r < repeat; ++r) {
            for (uint64_t x : flush) flush_sum += x;
            const auto t0 = std::chrono::steady_clock::now();
            dg::cpu::attention(b, d, w, 1e-6f, qg.data(), kin.data(), vin.data(), out.data(), kv, /*fast=*/true);
            us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(us.begin(), us.end());
        const double read = double(ctx + 1) * hkv * row_bytes * 2;
        std::printf("| %lld | %.1f | %.1f | %.1f MB | %.1f |\n", (long long)ctx, us.front(), us[us.size() / 2], read / 1e6,
                    read / us.front() / 1e3);
    }
    return flush_sum == 1 ? 1 : 0;  // keeps the flush reads
}
