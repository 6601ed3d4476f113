// The CUDA matmul's serving paths (engine/cuda/matmul.cuh) against the CPU, per weight type, at the real
// models' widths (rows reduced under the emulation), partial warps / blocks / token tiles and odd sizes:
//   - activation quantisation: bit for bit the CPU fast path's quantize_act_rows;
//   - GEMV, quantised weights: the same integer block dots as the CPU fast path (cpu::matmul_fast_rows
//     with FastActs::kBlock32: activation scales per 32, as the GPU's; the CPU serves Q4_K / Q5_K per 256),
//     so against it only the fp32 summation order differs (≤ 5e-5: 9e-6 measured at 27B ffn_down, q5_k,
//     where the block offsets cancel in fp32 sums of 544 blocks; 1000x below the activation rounding); against the exact
//     oracle (cpu::matmul) the 8-bit activation rounding is bounded (≤ 4e-2, printed);
//   - GEMV, float weights: fp32 FMA in another order than the oracle's (≤ 1e-4);
//   - GEMM: bf16 weights and activations, fp32 accumulation, against the oracle (≤ 3e-2; f32 weights
//     multiply in f32: ≤ 1e-4), with tiles and chunks forced small so partial ones run;
//   - the routed experts' grouped GEMV (ops.cuh moe_expert_gemv): each entry's row equals the CPU fast
//     path's matmul of its expert (same bounds as the GEMV), tokens or entries as the input rows;
//   - several matmuls of one input (Matmul::of_one_input): bit for bit the one-by-one results, with one
//     activation quantisation for all the quantised GEMVs (counted under the emulation);
//   - the dispatch: which path a call takes.
// Normalised error: max |cuda - cpu| / std(cpu) over the output (backend_ops_test.cpp's measure).
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/quant_dot.h"
#include "engine/cuda/matmul.cuh"
#include "engine/cuda/ops.cuh"
#ifdef DG_CUDA_EMU
#include "engine/cuda/emu/emu.h"
#endif
#include "engine/formats/dtype.h"
#include "engine/model_source.h"

namespace dg {
namespace {

#define SKIP_WITHOUT_CUDA() \
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device here (and not the emulation build)"

bool emulated() { return cuda_emulated(); }
int64_t rows_for(int64_t full) { return emulated() ? std::min<int64_t>(full, 72) : full; }

template <typename T>
struct Dev {
    T* p = nullptr;
    explicit Dev(size_t n) { EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess); }
    explicit Dev(const std::vector<T>& h) : Dev(h.size()) {
        EXPECT_EQ(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    }
    ~Dev() { cudaFree(p); }
    std::vector<T> get(size_t n) const {
        std::vector<T> h(n);
        EXPECT_EQ(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
        return h;
    }
};

struct HostMatrix {
    std::vector<uint8_t> bytes;
    Matrix m;
};
HostMatrix make_matrix(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
    HostMatrix h;
    const uint64_t rb = *row_bytes(t, cols);
    h.bytes.resize(size_t(rows) * rb);
    std::normal_distribution<float> nd(0.f, 1.f / std::sqrt(float(cols)));
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
        for (float& v : row) v = nd(rng);
        quantize_row(t, row.data(), h.bytes.data() + uint64_t(r) * rb, cols);
    }
    h.m = Matrix{t, rows, cols, h.bytes.data(), rb};
    return h;
}
std::vector<float> make_x(int64_t count, std::mt19937& rng) {
    std::normal_distribution<float> nd;
    std::vector<float> x(static_cast<size_t>(count));
    for (float& v : x) v = nd(rng);
    return x;
}

double nerr(const std::vector<float>& want, const std::vector<float>& got) {
    double sum = 0, sq = 0, worst = 0;
    for (float v : want) sum += v, sq += double(v) * v;
    const double n = double(want.size());
    const double sd = std::sqrt(std::max(0.0, sq / n - (sum / n) * (sum / n)));
    for (size_t i = 0; i < want.size(); ++i) {
        const double d = std::fabs(double(want[i]) - double(got[i]));
        if (!std::isfinite(d)) return INFINITY;
        worst = std::max(worst, d);
    }
    return sd > 0 ? worst / sd : worst;
}

void check(const std::string& what, double e, double tol) {
    std::printf("[ MATMUL   ] %-66s nerr %-10.3g tol %.0e%s\n", what.c_str(), e, tol, e <= tol ? "" : "   FAIL");
    std::fflush(stdout);
    EXPECT_LE(e, tol) << what;
}

// Runs `path` of a Matmul on the device copy of W: returns y [n][rows].
std::vector<float> run_path(cuda::Matmul& mm, cuda::MatmulPath path, const HostMatrix& hm, const std::vector<float>& x,
                            int32_t n) {
    Dev<uint8_t> w(hm.bytes);
    Dev<float> dx(x), dy(size_t(n) * hm.m.rows);
    Matrix m = hm.m;
    m.data = w.p;
    mm.run(path, dx.p, n, m, dy.p, nullptr);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return dy.get(size_t(n) * hm.m.rows);
}

struct Shape {
    std::string name;
    int64_t rows, cols;
};
std::vector<Shape> shapes() {
    auto c27 = preset_config("27b"), c35 = preset_config("35b-a3b"), tiny = preset_config("tiny");
    EXPECT_TRUE(c27.ok() && c35.ok() && tiny.ok());
    return {
        {"tiny ffn_up", tiny->intermediate, tiny->hidden},
        {"odd rows 37x512", 37, 512},
        {"27b ffn_gate", rows_for(c27->intermediate), c27->hidden},
        {"27b ffn_down", rows_for(c27->hidden), c27->intermediate},
        {"35b expert_down", rows_for(c35->hidden), c35->expert_intermediate},
        {"35b router", c35->n_experts, c35->hidden},
    };
}
const std::vector<DType> kQuant{DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};
const std::vector<DType> kFloat{DType::F32, DType::F16, DType::BF16};
std::string tname(DType t) { return dtype_info(t).name; }

// The q8 activation blocks equal the CPU fast path's, bit for bit: a zero block, a block with one
// non-zero, ±127 extremes and random rows.
TEST(MatmulPaths, ActivationQuantisationEqualsTheCpu) {
    SKIP_WITHOUT_CUDA();
    std::mt19937 rng(1);
    const int32_t n = 3;
    const int64_t in = 5120, nb = in / 32;
    std::vector<float> x = make_x(n * in, rng);
    for (int i = 0; i < 32; ++i) x[i] = 0.f, x[32 + i] = i == 5 ? -3.f : 0.f;
    for (int i = 0; i < 32; ++i) x[64 + i] = float(i) - 15.5f;  // values on rounding ties
    std::vector<int8_t> q(size_t(n) * in);
    std::vector<float> d(size_t(n) * nb);
    std::vector<int32_t> s(size_t(n) * nb);
    cpu::quantize_act_rows(x.data(), n, in, q.data(), d.data(), s.data());
    Dev<float> dx(x);
    Dev<int8_t> gq(q.size());
    Dev<float> gd(d.size());
    Dev<int32_t> gs(s.size());
    cuda::quantize_act_q8(dx.p, n, in, cuda::ActQ8{gq.p, gd.p, gs.p}, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(gq.get(q.size()), q);
    EXPECT_EQ(gs.get(s.size()), s);
    const auto dd = gd.get(d.size());
    EXPECT_EQ(std::memcmp(dd.data(), d.data(), d.size() * 4), 0);
}

// The fused step between sub-layers (ops.cuh add_rmsnorm: residual add, RMSNorm and the q8 blocks of its
// output in one launch) gives the bits of add, rmsnorm and quantize_act_q8 run one after another: the
// residual, the normed rows and the blocks. Widths of the presets (1,024 .. 5,120) and a narrow one,
// in place (y == x) and not, with and without the add.
TEST(MatmulPaths, AddRmsnormQ8EqualsTheOpsOneByOne) {
    SKIP_WITHOUT_CUDA();
    std::mt19937 rng(12);
    for (int64_t dim : {int64_t(64), int64_t(1024), int64_t(5120)})
        for (int32_t rows : {1, 5})
            for (int variant = 0; variant < 3; ++variant) {  // 0: add, 1: add in place, 2: no add
                const bool with_add = variant != 2, in_place = variant == 1;
                const std::string what = "dim " + std::to_string(dim) + " rows " + std::to_string(rows) + " variant " +
                                         std::to_string(variant);
                const int64_t count = rows * dim, nb = count / 32;
                const size_t cn = size_t(count), bn = size_t(nb);
                const std::vector<float> x = make_x(count, rng), r = make_x(count, rng), w = make_x(dim, rng);
                Dev<float> dr(r), dw(w);
                // One by one.
                Dev<float> x1(x), y1(cn);
                Dev<int8_t> q1(cn);
                Dev<float> d1(bn);
                Dev<int32_t> s1(bn);
                float* out1 = in_place ? x1.p : y1.p;
                if (with_add) cuda::add(x1.p, dr.p, count, nullptr);
                cuda::rmsnorm(x1.p, dw.p, rows, dim, 1e-6f, out1, nullptr);
                cuda::quantize_act_q8(out1, rows, dim, cuda::ActQ8{q1.p, d1.p, s1.p}, nullptr);
                // Fused.
                Dev<float> x2(x), y2(cn);
                Dev<int8_t> q2(cn);
                Dev<float> d2(bn);
                Dev<int32_t> s2(bn);
                float* out2 = in_place ? x2.p : y2.p;
                const cuda::ActQ8 blocks{q2.p, d2.p, s2.p};
                cuda::add_rmsnorm(x2.p, with_add ? dr.p : nullptr, dw.p, rows, dim, 1e-6f, out2, &blocks, nullptr);
                ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
                auto bits = [](const std::vector<float>& v) {
                    std::vector<uint32_t> b(v.size());
                    std::memcpy(b.data(), v.data(), v.size() * 4);
                    return b;
                };
                EXPECT_EQ(bits(x2.get(size_t(count))), bits(x1.get(size_t(count)))) << what << ": the residual";
                if (!in_place) {
                    EXPECT_EQ(bits(y2.get(size_t(count))), bits(y1.get(size_t(count)))) << what << ": the normed rows";
                }
                EXPECT_EQ(q2.get(size_t(count)), q1.get(size_t(count))) << what << ": the q8 values";
                EXPECT_EQ(bits(d2.get(size_t(nb))), bits(d1.get(size_t(nb)))) << what << ": the q8 scales";
                EXPECT_EQ(s2.get(size_t(nb)), s1.get(size_t(nb))) << what << ": the q8 sums";
            }
    Dev<float> x(make_x(48, rng)), w(make_x(48, rng));
    Dev<int8_t> q(48);
    Dev<float> d(2);
    Dev<int32_t> s(2);
    const cuda::ActQ8 blocks{q.p, d.p, s.p};
    EXPECT_THROW(cuda::add_rmsnorm(x.p, nullptr, w.p, 1, 48, 1e-6f, x.p, &blocks, nullptr), std::exception)
        << "a width that is not a multiple of 32 has no q8 blocks";
}

// SwiGLU with the q8 blocks of its output (the down projection's input) in the same launch: the bits of
// swiglu then quantize_act_q8, in place (out == gate, as the model calls it) at the presets' widths.
TEST(MatmulPaths, SwigluQ8EqualsTheOpsOneByOne) {
    SKIP_WITHOUT_CUDA();
    std::mt19937 rng(13);
    for (int64_t count : {int64_t(32), int64_t(3 * 512), int64_t(2 * 17408), int64_t(5 * 3584)}) {
        const std::vector<float> g = make_x(count, rng), u = make_x(count, rng);
        const size_t cn = size_t(count), bn = size_t(count / 32);
        Dev<float> g1(g), u1(u), g2(g), u2(u);
        Dev<int8_t> q1(cn), q2(cn);
        Dev<float> d1(bn), d2(bn);
        Dev<int32_t> s1(bn), s2(bn);
        cuda::swiglu(g1.p, u1.p, count, g1.p, nullptr);
        cuda::quantize_act_q8(g1.p, 1, count, cuda::ActQ8{q1.p, d1.p, s1.p}, nullptr);
        const cuda::ActQ8 blocks{q2.p, d2.p, s2.p};
        cuda::swiglu(g2.p, u2.p, count, g2.p, nullptr, &blocks);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::string what = "count " + std::to_string(count);
        const std::vector<float> o1 = g1.get(cn), o2 = g2.get(cn), sd1 = d1.get(bn), sd2 = d2.get(bn);
        EXPECT_EQ(std::memcmp(o1.data(), o2.data(), cn * 4), 0) << what << ": the outputs";
        EXPECT_EQ(q2.get(cn), q1.get(cn)) << what << ": the q8 values";
        EXPECT_EQ(std::memcmp(sd1.data(), sd2.data(), bn * 4), 0) << what << ": the q8 scales";
        EXPECT_EQ(s2.get(bn), s1.get(bn)) << what << ": the q8 sums";
    }
    Dev<float> x(make_x(48, rng));
    Dev<int8_t> q(48);
    Dev<float> d(2);
    Dev<int32_t> s(2);
    const cuda::ActQ8 blocks{q.p, d.p, s.p};
    EXPECT_THROW(cuda::swiglu(x.p, x.p, 48, x.p, nullptr, &blocks), std::exception) << "48 is not a multiple of 32";
}

TEST(MatmulPaths, GemvQuantisedEveryType) {
    SKIP_WITHOUT_CUDA();
    std::mt19937 rng(2);
    cuda::Matmul mm;
    const std::vector<int32_t> ns = emulated() ? std::vector<int32_t>{1, 3, 8, 11} : std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 17};
    for (const Shape& sh : shapes())
        for (DType t : kQuant) {
            if (sh.cols % dtype_info(t).block_elems != 0) continue;
            const HostMatrix hm = make_matrix(t, sh.rows, sh.cols, rng);
            for (int32_t n : ns) {
                const std::vector<float> x = make_x(int64_t(n) * sh.cols, rng);
                std::vector<float> fast(size_t(n) * sh.rows), exact(fast.size());
                cpu::matmul_fast_rows(x.data(), n, hm.m, fast.data(), cpu::FastActs::kBlock32);
                cpu::matmul(x.data(), n, hm.m, exact.data());
                const auto got = run_path(mm, cuda::MatmulPath::kGemv, hm, x, n);
                const std::string what = sh.name + " " + tname(t) + " " + std::to_string(sh.rows) + "x" +
                                         std::to_string(sh.cols) + " n=" + std::to_string(n);
                check("gemv vs cpu fast " + what, nerr(fast, got), 5e-5);
                check("gemv vs oracle   " + what, nerr(exact, got), 4e-2);
            }
        }
}

TEST(MatmulPaths, GemvFloatEveryType) {
    SKIP_WITHOUT_CUDA();
    std::mt19937 rng(3);
    cuda::Matmul mm;
    for (const Shape& sh : shapes())
        for (DType t : kFloat) {
            const HostMatrix hm = make_matrix(t, sh.rows, sh.cols, rng);
            for (int32_t n : {1, 5, 8, 13}) {
                const std::vector<float> x = make_x(int64_t(n) * sh.cols, rng);
                std::vector<float> exact(size_t(n) * sh.rows);
                cpu::matmul(x.data(), n, hm.m, exact.data());
                const auto got = run_path(mm, cuda::MatmulPath::kGemv, hm, x, n);
                check("gemv vs oracle   " + sh.name + " " + tname(t) + " n=" + std::to_string(n), nerr(exact, got), 1e-4);
            }
        }
}

TEST(MatmulPaths, GemmEveryTypeWithPartialTiles) {
    SKIP_WITHOUT_CUDA();
    std::mt19937 rng(4);
    cuda::Matmul mm;
    mm.set_gemm_limits(/*max_tile_rows=*/24, /*max_chunk_tokens=*/16);  // partial tiles and chunks below
    struct G {
        std::string name;
        int64_t rows, cols;
        int32_t n;
    };
    auto c27 = preset_config("27b");
    ASSERT_TRUE(c27.ok());
    const std::vector<G> gs{{"37x512", 37, 512, 33}, {"odd 29x999", 29, 999, 40},
                            {"27b ffn_gate", 50, c27->hidden, emulated() ? 34 : 512}};
    std::vector<DType> types = kQuant;
    types.insert(types.end(), kFloat.begin(), kFloat.end());
    for (const G& g : gs)
        for (DType t : types) {
            if (g.cols % dtype_info(t).block_elems != 0) continue;
            const HostMatrix hm = make_matrix(t, g.rows, g.cols, rng);
            const std::vector<float> x = make_x(int64_t(g.n) * g.cols, rng);
            std::vector<float> exact(size_t(g.n) * g.rows);
            cpu::matmul(x.data(), g.n, hm.m, exact.data());
            const auto got = run_path(mm, cuda::MatmulPath::kGemm, hm, x, g.n);
            // bf16 rounding of weights and activations: ~2^-9 relative per product, random in sign.
            check("gemm vs oracle   " + g.name + " " + tname(t) + " n=" + std::to_string(g.n), nerr(exact, got),
                  t == DType::F32 ? 1e-4 : 3e-2);
        }
}

// The grouped GEMV of a MoE layer's routed experts: E experts of one type and shape, n tokens routed to k
// distinct experts each (some experts chosen by several entries, some by none), the input rows being the
// tokens (gate, up) or the entries (down). Each entry's output row against the CPU fast path's matmul of
// the entry's expert on its input row, and against the exact oracle.
TEST(MatmulPaths, MoeExpertGemvEveryType) {
    SKIP_WITHOUT_CUDA();
    std::mt19937 rng(6);
    auto c35 = preset_config("35b-a3b");
    ASSERT_TRUE(c35.ok());
    const int64_t E = 6;
    const int32_t n = 3, k = 4, nk = n * k;
    // The routing: token t's entries t*k .. t*k+k-1 go to k distinct experts; runs grouped by expert,
    // ascending within a run (as moe_route's group kernel leaves them).
    std::vector<int32_t> sel(nk);
    for (int32_t t = 0; t < n; ++t)
        for (int32_t j = 0; j < k; ++j) sel[size_t(t * k + j)] = int32_t((t + 2 * j) % E);
    std::vector<int32_t> counts(E, 0), offsets(E, 0), list;
    for (int64_t e = 0; e < E; ++e) {
        offsets[size_t(e)] = int32_t(list.size());
        for (int32_t i = 0; i < nk; ++i)
            if (sel[size_t(i)] == e) list.push_back(i), ++counts[size_t(e)];
    }
    Dev<int32_t> dcounts(counts), doffsets(offsets), dlist(list);
    cuda::MoeRouting r{};
    r.counts = dcounts.p, r.offsets = doffsets.p, r.list = dlist.p;
    struct S {
        std::string name;
        int64_t rows, cols;
        bool x_rows_are_tokens;
    };
    const std::vector<S> ss{{"35b expert_gate", rows_for(c35->expert_intermediate), c35->hidden, true},
                            {"35b expert_down", rows_for(c35->hidden), c35->expert_intermediate, false},
                            {"odd rows 37x512", 37, 512, true}};
    std::vector<DType> types = kQuant;
    types.insert(types.end(), kFloat.begin(), kFloat.end());
    for (const S& sh : ss)
        for (DType t : types) {
            if (sh.cols % dtype_info(t).block_elems != 0) continue;
            std::vector<HostMatrix> hm;
            std::vector<std::unique_ptr<Dev<uint8_t>>> dw;
            std::vector<const uint8_t*> table;
            for (int64_t e = 0; e < E; ++e) {
                hm.push_back(make_matrix(t, sh.rows, sh.cols, rng));
                dw.push_back(std::make_unique<Dev<uint8_t>>(hm.back().bytes));
                table.push_back(dw.back()->p);
            }
            Dev<const uint8_t*> dtable(table);
            const cuda::ExpertMatrices W{dtable.p, t, hm[0].m.row_bytes, sh.rows, sh.cols, E};
            ASSERT_TRUE(cuda::moe_expert_gemv_supports(W)) << tname(t);
            const int32_t x_rows = sh.x_rows_are_tokens ? n : nk;
            const std::vector<float> x = make_x(int64_t(x_rows) * sh.cols, rng);
            Dev<float> dx(x), dy(size_t(nk) * sh.rows);
            Dev<int8_t> q(size_t(x_rows) * sh.cols);
            Dev<float> d(size_t(x_rows) * sh.cols / 32);
            Dev<int32_t> sums(size_t(x_rows) * sh.cols / 32);
            const cuda::ActQ8 xq{q.p, d.p, sums.p};
            if (cuda::gemv_quant_type(t)) cuda::quantize_act_q8(dx.p, x_rows, sh.cols, xq, nullptr);
            cuda::moe_expert_gemv(xq, dx.p, sh.x_rows_are_tokens, k, W, r, dy.p, nullptr);
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            const std::vector<float> got = dy.get(size_t(nk) * sh.rows);
            std::vector<float> fast(got.size()), exact(got.size());
            for (int32_t i = 0; i < nk; ++i) {
                const float* xi = x.data() + int64_t(sh.x_rows_are_tokens ? i / k : i) * sh.cols;
                const Matrix& m = hm[size_t(sel[size_t(i)])].m;
                cpu::matmul_fast_rows(xi, 1, m, fast.data() + int64_t(i) * sh.rows, cpu::FastActs::kBlock32);
                cpu::matmul(xi, 1, m, exact.data() + int64_t(i) * sh.rows);
            }
            const std::string what = sh.name + " " + tname(t) + " " + std::to_string(sh.rows) + "x" +
                                     std::to_string(sh.cols) + " E=" + std::to_string(E) + " n=" + std::to_string(n) +
                                     " k=" + std::to_string(k);
            const bool quant = cuda::gemv_quant_type(t);
            if (quant) check("expert gemv vs cpu fast " + what, nerr(fast, got), 5e-5);
            check("expert gemv vs oracle   " + what, nerr(exact, got), quant ? 4e-2 : 1e-4);
        }
}

// The projections of one hidden state through of_one_input: quantised GEMVs (two types), a float GEMV and
// a matrix the fast kernels refuse (the exact kernel), at decode and at a GEMM-sized n. Every output equals
// the one-by-one call's bit for bit; at decode the three quantised GEMVs share one quantisation launch.
// `types`' matrices of width `in` (rows 40, 24, 16, ... cycling), on the device.
struct DeviceMatrices {
    std::vector<std::unique_ptr<Dev<uint8_t>>> mem;
    std::vector<Matrix> ms;
    DeviceMatrices(std::initializer_list<DType> types, int64_t in, std::mt19937& rng) {
        const int64_t rows[] = {40, 24, 16, 8, 11};
        size_t i = 0;
        for (DType t : types) {
            const HostMatrix h = make_matrix(t, rows[i++ % 5], in, rng);
            mem.push_back(std::make_unique<Dev<uint8_t>>(h.bytes));
            Matrix m = h.m;
            m.data = mem.back()->p;
            ms.push_back(m);
        }
    }
};

// of_one_input against one call per matrix, bit for bit; under the emulation also the launches: one
// quantisation of x, then one GEMV launch per type (at most kGemvMaxMatrices matrices each) and token tile.
void expect_of_one_input_equals_one_by_one(const DeviceMatrices& dm, int32_t n, int launches_per_tile, std::mt19937& rng) {
    const std::vector<Matrix>& ms = dm.ms;
    const int64_t in = ms[0].cols;
    cuda::Matmul mm;
    const std::vector<float> x = make_x(int64_t(n) * in, rng);
    Dev<float> dx(x);
    std::vector<std::unique_ptr<Dev<float>>> one, group;
    std::vector<float*> ys;
    for (const Matrix& m : ms) {
        one.push_back(std::make_unique<Dev<float>>(size_t(n) * m.rows));
        group.push_back(std::make_unique<Dev<float>>(size_t(n) * m.rows));
        mm(dx.p, n, m, one.back()->p, nullptr);
        ys.push_back(group.back()->p);
    }
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
#ifdef DG_CUDA_EMU
    emu::reset_counters();
#endif
    mm.of_one_input(dx.p, n, ms, ys, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
#ifdef DG_CUDA_EMU
    const int tiles = (n + cuda::kGemvMaxTokens - 1) / cuda::kGemvMaxTokens;
    if (n < cuda::kGemmMinTokens) {
        EXPECT_EQ(emu::counters().kernel_launches, 1 + launches_per_tile * tiles) << "n=" << n;
    }
#else
    (void)launches_per_tile;
#endif
    for (size_t i = 0; i < ms.size(); ++i)
        EXPECT_EQ(group[i]->get(size_t(n) * ms[i].rows), one[i]->get(size_t(n) * ms[i].rows))
            << tname(ms[i].type) << " matrix " << i << " n=" << n;
}

TEST(MatmulPaths, OfOneInputEqualsOneByOne) {
    SKIP_WITHOUT_CUDA();
    std::mt19937 rng(7);
    const int64_t in = 512;
    // Per tile: Q4_K x2, Q8_0, F16 x2 and Q6_K, one launch per type.
    const DeviceMatrices mixed(
        {DType::Q4_K, DType::Q8_0, DType::F16, DType::Q6_K, DType::Q4_K, DType::F16}, in, rng);
    for (int32_t n : {1, 5, 11, cuda::kGemmMinTokens}) expect_of_one_input_equals_one_by_one(mixed, n, 4, rng);
    // Six matrices of one type: launches of kGemvMaxMatrices (4) and 2.
    const DeviceMatrices six({DType::Q8_0, DType::Q8_0, DType::Q8_0, DType::Q8_0, DType::Q8_0, DType::Q8_0}, in, rng);
    for (int32_t n : {1, 9}) expect_of_one_input_equals_one_by_one(six, n, 2, rng);

    cuda::Matmul mm;
    const Matrix wide{DType::Q8_0, 4, 2 * in, mixed.ms[0].data, mixed.ms[0].row_bytes};
    const Matrix widths[] = {mixed.ms[0], wide};
    float* outs[] = {nullptr, nullptr};
    Dev<float> dx(make_x(in, rng));
    EXPECT_THROW(mm.of_one_input(dx.p, 1, widths, outs, nullptr), std::exception);  // widths differ
    // One launch of two types is refused by the launcher itself.
    const Matrix two_types[] = {mixed.ms[0], mixed.ms[1]};
    float* outs2[] = {nullptr, nullptr};
    EXPECT_THROW(cuda::gemv_float(dx.p, 1, cuda::GemvBatch{two_types, outs2}, nullptr), std::exception);
}

// The serving dispatch: GEMV below kGemmMinTokens where the kernels take the shape, the exact kernel
// where they do not, the GEMM from kGemmMinTokens on; a forced path is taken as forced.
TEST(MatmulPaths, DispatchByTokensAndShape) {
    alignas(16) static uint8_t buf[64];
    alignas(16) static float xb[16];
    const Matrix q4k{DType::Q4_K, 10, 256, buf, 144}, f16{DType::F16, 10, 64, buf, 128}, odd{DType::F16, 10, 63, buf, 126};
    cuda::Matmul autop;
    EXPECT_EQ(autop.choose(1, q4k, xb), cuda::MatmulPath::kGemv);
    EXPECT_EQ(autop.choose(cuda::kGemmMinTokens - 1, q4k, xb), cuda::MatmulPath::kGemv);
    EXPECT_EQ(autop.choose(cuda::kGemmMinTokens, q4k, xb), cuda::MatmulPath::kGemm);
    EXPECT_EQ(autop.choose(1, f16, xb), cuda::MatmulPath::kGemv);
    EXPECT_EQ(autop.choose(1, f16, xb + 1), cuda::MatmulPath::kExact);  // x not 16-byte aligned
    EXPECT_EQ(autop.choose(1, odd, xb), cuda::MatmulPath::kExact);      // width not a multiple of 8
    EXPECT_EQ(autop.choose(cuda::kGemmMinTokens, odd, xb), cuda::MatmulPath::kGemm);
    cuda::Matmul exact(cuda::MatmulPath::kExact);
    EXPECT_EQ(exact.choose(1, q4k, xb), cuda::MatmulPath::kExact);
    EXPECT_EQ(exact.choose(4096, q4k, xb), cuda::MatmulPath::kExact);
}

// The backends: `cuda` serves through the dispatch, `cuda-exact` through the oracle kernel only (its
// result equals the exact path's bit for bit; the serving one the GEMV's).
TEST(MatmulPaths, BackendsTakeTheirPaths) {
    SKIP_WITHOUT_CUDA();
    std::mt19937 rng(5);
    const HostMatrix hm = make_matrix(DType::Q4_K, 40, 512, rng);
    const int32_t n = 3;
    const std::vector<float> x = make_x(n * 512, rng);
    cuda::Matmul mm;
    const auto gemv = run_path(mm, cuda::MatmulPath::kGemv, hm, x, n);
    const auto exact = run_path(mm, cuda::MatmulPath::kExact, hm, x, n);
    ASSERT_NE(gemv, exact);  // the two paths differ (8-bit activations), so the comparison below tells them apart
    for (BackendKind k : {BackendKind::kCuda, BackendKind::kCudaExact}) {
        auto be = make_backend(k);
        ASSERT_TRUE(be.ok()) << be.status();
        ModelWeights mw;
        mw.embed = hm.m;
        mw.lm_head = hm.m;
        ASSERT_TRUE((*be)->prepare_weights(mw).ok());
        float* dx = *(*be)->alloc_f32(n * 512);
        float* dy = *(*be)->alloc_f32(n * 40);
        (*be)->from_host(x.data(), dx, n * 512);
        (*be)->matmul(dx, n, hm.m, dy);
        std::vector<float> y(n * 40);
        (*be)->to_host(dy, y.data(), n * 40);
        EXPECT_EQ(y, k == BackendKind::kCuda ? gemv : exact) << (*be)->name();
        (*be)->free(dx);
        (*be)->free(dy);
    }
}

}  // namespace
}  // namespace dg
