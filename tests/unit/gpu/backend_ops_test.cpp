// The backend-op suite (issue 10), in the manner of ggml's test-backend-ops: every op of engine/backend.h
// on the CUDA backend's exact twin (kCudaExact: fp32 matmuls; the serving matmul paths, GEMV with 8-bit
// activations and the bf16 GEMM, are bounded in matmul_paths_test.cpp) against the CPU backend (the oracle,
// make_backend(kCpuExact)), on random inputs, over
// the Qwen3.5 head and expert geometries (engine/random_model.cpp presets: tiny, 0.8b, 27b, 35b-a3b, and
// the golden dk != dv fixture), odd lengths, partial KV blocks, several sequences of different lengths,
// and every weight / KV type. One line per check:
//   [ OPS      ] <op> <geometry> <type> <detail>  nerr <max |cuda - cpu| / std(cpu)>  tol <bound>
// The normalised error is ggml's idea (an error relative to the spread of the reference, so one bound
// holds for every scale); each op states its bound and why, next to the op's test.
//
// Under the CUDA emulation (DG_CUDA_EMU) every CUDA computation runs under two or three schedules of the
// emulated threads and blocks (forward, reverse, seeded random: engine/cuda/emu/emu.h) and the outputs
// must agree BIT FOR BIT: a difference is a missing __syncthreads or a race on shared or global memory.
// The emulation also runs the large geometries (0.8b, 27b, 35b-a3b) with a reduced count of rows /
// positions / experts so CI (2 cores) stays within a few minutes; DG_FULL_OPS=1 runs the full counts
// (slow under the emulation, and the full 0.8b embedding and 27B matrices need a larger emulated
// device: DG_CUDA_EMU_DEVICE_MB=16384).
// On a real GPU (the same source, no emulation) the full counts run by default and each op runs once.
//
// Weight buffers and ModelWeights live in a Weights holder declared before the backends of each test:
// the CUDA backend keys its uploads by host address, so a freed buffer whose address a later case
// reused would be skipped (stale device bytes).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend.h"
#include "engine/formats/dtype.h"
#include "engine/model_source.h"

#ifdef DG_CUDA_EMU
#include "engine/cuda/emu/emu.h"
#endif
#ifdef DELTAGATE_HAVE_CUDA
#include "engine/cuda/ops.cuh"
#endif

namespace dg {
namespace {

// ---------------------------------------------------------------------------------------------------
// Run size: full on a GPU or with DG_FULL_OPS=1, reduced under the emulation.

bool full_run() {
#ifdef DG_CUDA_EMU
    const char* e = std::getenv("DG_FULL_OPS");
    return e != nullptr && std::string(e) == "1";
#else
    return true;
#endif
}
int64_t sized(int64_t full, int64_t reduced) { return full_run() ? full : std::min(full, reduced); }

// What ran, printed at the end of the binary's run (every ctest process prints its own).
int64_t g_checks = 0, g_cuda_runs = 0, g_schedule_compares = 0;

class OpsReport : public ::testing::Environment {
public:
    void TearDown() override {
        if (g_checks == 0 && g_cuda_runs == 0) return;  // a run of other tests only
        std::printf("[ OPS      ] %lld op checks CUDA vs CPU, %lld CUDA runs, %lld bit-exact schedule comparisons (%s)\n",
                    (long long)g_checks, (long long)g_cuda_runs, (long long)g_schedule_compares,
#ifdef DG_CUDA_EMU
                    full_run() ? "emulation, full counts (DG_FULL_OPS=1)" : "emulation, reduced counts"
#else
                    "device, full counts"
#endif
        );
    }
};
const auto* const g_report = ::testing::AddGlobalTestEnvironment(new OpsReport);

#define SKIP_WITHOUT_CUDA() \
    if (!cuda_available()) GTEST_SKIP() << "no CUDA backend here (no device, and not the emulation build)"

// ---------------------------------------------------------------------------------------------------
// Random data. A splitmix generator (fast enough for the full 27B matrices on the GPU machine) giving
// uniform values with unit standard deviation.

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    uint64_t next() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    float uni() { return float(double(next() >> 11) * 0x1.0p-53); }               // [0, 1)
    float unit() { return (2.f * uni() - 1.f) * 1.7320508f; }                     // mean 0, std 1
    int32_t below(int32_t n) { return int32_t(next() % uint64_t(n)); }
};

std::vector<float> rand_vec(Rng& r, int64_t n, float scale = 1.f, float mean = 0.f) {
    std::vector<float> v(size_t(std::max<int64_t>(n, 0)));
    for (float& x : v) x = mean + scale * r.unit();
    return v;
}

uint64_t hash_name(const std::string& s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
    return h;
}

// ---------------------------------------------------------------------------------------------------
// Weights that outlive the backends: matrix bytes and ModelWeights (prepare_weights input).

struct Weights {
    std::deque<std::vector<uint8_t>> bytes;
    std::deque<ModelWeights> models;

    // rows x cols of `t`, from random f32 rows with standard deviation `scale`.
    Matrix matrix(DType t, int64_t rows, int64_t cols, Rng& r, float scale) {
        const uint64_t rb = *row_bytes(t, cols);
        std::vector<uint8_t>& b = bytes.emplace_back(size_t(rows) * rb);
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t i = 0; i < rows; ++i) {
            for (float& x : row) x = scale * r.unit();
            quantize_row(t, row.data(), b.data() + uint64_t(i) * rb, cols);
        }
        return Matrix{t, rows, cols, b.data(), rb};
    }
    ModelWeights& model() { return models.emplace_back(); }
};

struct Pair {
    std::unique_ptr<Backend> cpu, cuda;
};
// Declared after the test's Weights, so destroyed before them.
Pair make_pair() {
    Pair p;
    auto c = make_backend(BackendKind::kCpuExact);
    auto g = make_backend(BackendKind::kCudaExact);
    EXPECT_TRUE(c.ok()) << c.status();
    EXPECT_TRUE(g.ok()) << g.status();
    if (c.ok()) p.cpu = std::move(*c);
    if (g.ok()) p.cuda = std::move(*g);
    return p;
}
absl::Status prepare(Pair& p, const ModelWeights& w) {
    if (auto s = p.cpu->prepare_weights(w); !s.ok()) return s;
    return p.cuda->prepare_weights(w);
}

// Backend memory freed with the scope (before the backend).
class Dev {
public:
    explicit Dev(Backend& b) : b_(b) {}
    ~Dev() {
        for (float* p : ptrs_) b_.free(p);
    }
    Dev(const Dev&) = delete;
    Dev& operator=(const Dev&) = delete;
    float* alloc(int64_t n) {
        auto p = b_.alloc_f32(std::max<int64_t>(n, 1));
        if (!p.ok()) {
            std::fprintf(stderr, "backend_ops_test: %s alloc_f32(%lld): %s\n", b_.name().c_str(), (long long)n,
                         std::string(p.status().message()).c_str());
            std::abort();
        }
        ptrs_.push_back(*p);
        return *p;
    }
    float* up(const std::vector<float>& h) {
        float* p = alloc(int64_t(h.size()));
        set(p, h);
        return p;
    }
    void set(float* p, const std::vector<float>& h) {
        if (!h.empty()) b_.from_host(h.data(), p, int64_t(h.size()));
    }
    std::vector<float> down(const float* p, int64_t n) {
        std::vector<float> h(static_cast<size_t>(n));
        if (n > 0) b_.to_host(p, h.data(), n);
        return h;
    }

private:
    Backend& b_;
    std::vector<float*> ptrs_;
};

// ---------------------------------------------------------------------------------------------------
// Checks.

// max |got - want| / std(want); NaN or a size mismatch is infinite. An all-constant reference (std 0)
// is compared absolutely.
struct NErr {
    double max_abs = 0, ref_std = 0;
    double value() const { return ref_std > 0 ? max_abs / ref_std : max_abs; }
};
NErr nerr(const std::vector<float>& want, const std::vector<float>& got) {
    NErr e;
    if (want.size() != got.size()) {
        e.max_abs = INFINITY;
        return e;
    }
    double sum = 0, sq = 0;
    for (float v : want) sum += v, sq += double(v) * v;
    const double n = double(std::max<size_t>(want.size(), 1));
    e.ref_std = std::sqrt(std::max(0.0, sq / n - (sum / n) * (sum / n)));
    for (size_t i = 0; i < want.size(); ++i) {
        const double d = std::abs(double(want[i]) - double(got[i]));
        if (std::isnan(d) || std::isinf(d)) {
            if (!(std::isinf(want[i]) && want[i] == got[i])) e.max_abs = INFINITY;
        } else {
            e.max_abs = std::max(e.max_abs, d);
        }
    }
    return e;
}

void check(const std::string& what, const std::vector<float>& want, const std::vector<float>& got, double tol) {
    const NErr e = nerr(want, got);
    ++g_checks;
    std::printf("[ OPS      ] %-62s nerr %-10.3g tol %.0e%s\n", what.c_str(), e.value(), tol,
                e.value() <= tol ? "" : "   FAIL");
    std::fflush(stdout);
    EXPECT_LE(e.value(), tol) << what << ": max |cuda - cpu| " << e.max_abs << ", cpu std " << e.ref_std
                              << (want.size() != got.size() ? " (sizes differ)" : "");
}

// Bitwise equality of two runs' outputs (on the same backend).
void expect_bits_equal(const std::string& what, const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) {
        ADD_FAILURE() << what << ": " << a.size() << " vs " << b.size() << " values";
        return;
    }
    if (std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0) return;
    size_t first = a.size(), count = 0;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            if (first == a.size()) first = i;
            ++count;
        }
    ADD_FAILURE() << what << ": " << count << " of " << a.size() << " values differ, first at " << first << ": "
                  << a[first] << " vs " << b[first];
}

using Outputs = std::vector<std::vector<float>>;

#ifdef DG_CUDA_EMU
// Restores the forward schedule whatever the test does (other tests in the binary assume it).
struct ScheduleGuard {
    ~ScheduleGuard() { emu::set_schedule({emu::Order::kForward, 0}); }
};
#endif

// Runs `body` (one op case on the CUDA backend, from fresh inputs to downloaded outputs): once on a GPU;
// under the emulation once per schedule (forward, reverse, and a seeded random order unless
// `random_too` is false), requiring every output bit for bit equal to the forward run's.
Outputs run_cuda(const std::string& what, const std::function<Outputs()>& body, bool random_too = true) {
#ifdef DG_CUDA_EMU
    ScheduleGuard guard;
    std::vector<emu::Schedule> orders{{emu::Order::kForward, 0}, {emu::Order::kReverse, 0}};
    if (random_too) orders.push_back({emu::Order::kRandom, hash_name(what)});
    Outputs first;
    for (size_t i = 0; i < orders.size(); ++i) {
        emu::set_schedule(orders[i]);
        Outputs o = body();
        ++g_cuda_runs;
        if (i == 0) {
            first = std::move(o);
            continue;
        }
        ++g_schedule_compares;
        EXPECT_EQ(o.size(), first.size());
        for (size_t k = 0; k < std::min(o.size(), first.size()); ++k)
            expect_bits_equal(absl::StrCat(what, ": CUDA output ", k, " under schedule ", emu::order_name(orders[i].order),
                                           " vs forward (a race or a missing barrier)"),
                              first[k], o[k]);
    }
    return first;
#else
    (void)what;
    (void)random_too;
    ++g_cuda_runs;
    return body();
#endif
}

// ---------------------------------------------------------------------------------------------------
// Geometries from the presets (the real head and expert sizes of docs/qwen35-model.md §1.3).

ModelConfig preset(const std::string& name) {
    auto c = preset_config(name);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : ModelConfig{};
}
bool is_large(const std::string& geom) { return geom != "tiny" && geom != "tiny-moe" && geom != "dkdv"; }

const std::vector<DType> kWeightTypes{DType::F32,  DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0,
                                      DType::Q4_1, DType::Q4_K, DType::Q5_K, DType::Q6_K};
const std::vector<DType> kKvTypes{DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0};
std::string tname(DType t) { return dtype_info(t).name; }

// ===================================================================================================
// embed: a gather and a dequantisation of one row per token. Both backends decode the same blocks with
// the same formulas in f32; tolerance 1e-6 (a fused multiply-add in one of them may move the last bit).
TEST(BackendOps, Embed) {
    SKIP_WITHOUT_CUDA();
    Weights W;
    Pair B = make_pair();
    struct Shape {
        std::string geom;
        int64_t V, H;
    };
    const std::vector<Shape> shapes{{"tiny", preset("tiny").vocab_size, preset("tiny").hidden},
                                    {"0.8b", sized(preset("0.8b").vocab_size, 1000), preset("0.8b").hidden},
                                    {"27b", sized(32768, 300), preset("27b").hidden}};
    Rng r(1);
    for (const Shape& s : shapes)
        for (DType t : kWeightTypes) {
            ModelWeights& mw = W.model();
            mw.embed = W.matrix(t, s.V, s.H, r, 1.f);
            ASSERT_TRUE(prepare(B, mw).ok());
            // first, last, repeated and arbitrary rows
            std::vector<int32_t> tokens{0, int32_t(s.V - 1), 5, 5, int32_t(s.V / 2), int32_t(s.V - 2), 1};
            const int32_t n = int32_t(tokens.size());
            const std::string what = absl::StrCat("embed ", s.geom, " ", tname(t), " V=", s.V, " H=", s.H, " n=", n);
            auto body = [&](Backend& be) {
                Dev d(be);
                float* x = d.alloc(n * s.H);
                be.embed(tokens.data(), n, mw.embed, x);
                return Outputs{d.down(x, n * s.H)};
            };
            const Outputs want = body(*B.cpu);
            const Outputs got = run_cuda(what, [&] { return body(*B.cuda); });
            check(what, want[0], got[0], 1e-6);
        }
}

// rmsnorm: f32 sums in another order (the CPU sums in double): 1e-5. Odd and real widths, in place too.
TEST(BackendOps, RmsNorm) {
    SKIP_WITHOUT_CUDA();
    Weights W;
    Pair B = make_pair();
    Rng r(2);
    for (int64_t dim : {int64_t(24), int64_t(128), int64_t(256), int64_t(999), int64_t(1024), int64_t(2048), int64_t(5120)})
        for (int64_t rows : {int64_t(1), int64_t(7), int64_t(33)})
            for (bool in_place : {false, true}) {
                if (in_place && rows != 7) continue;
                ModelWeights& mw = W.model();
                mw.final_norm = rand_vec(r, dim, 0.1f, 1.f);
                ASSERT_TRUE(prepare(B, mw).ok());
                const std::vector<float> x = rand_vec(r, rows * dim, 2.f);
                const std::string what = absl::StrCat("rmsnorm dim=", dim, " rows=", rows, in_place ? " in-place" : "");
                auto body = [&](Backend& be) {
                    Dev d(be);
                    float* dx = d.up(x);
                    float* dy = in_place ? dx : d.alloc(rows * dim);
                    be.rmsnorm(dx, mw.final_norm.data(), rows, dim, 1e-6f, dy);
                    return Outputs{d.down(dy, rows * dim)};
                };
                const Outputs want = body(*B.cpu);
                check(what, want[0], run_cuda(what, [&] { return body(*B.cuda); })[0], 1e-5);
            }
}

// matmul over every weight type: the same stored blocks, fp32 accumulation in a different order (warp
// lanes then a shuffle tree, against the CPU's blocked dot): 1e-4 of the output's spread.
TEST(BackendOps, MatmulEveryWeightType) {
    SKIP_WITHOUT_CUDA();
    Weights W;
    Pair B = make_pair();
    struct Shape {
        std::string name;
        int64_t rows, cols;
        bool plain_only = false;  // cols not a multiple of the block types' 32 / 256
    };
    const ModelConfig tiny = preset("tiny"), m08 = preset("0.8b"), m27 = preset("27b"), m35 = preset("35b-a3b");
    const int64_t kRows = 64;  // rows per large matrix under the emulation (the cols stay real)
    const std::vector<Shape> shapes{
        {"tiny ffn_up", tiny.intermediate, tiny.hidden},
        {"tiny ffn_down", tiny.hidden, tiny.intermediate},
        {"odd 97x999", 97, 999, true},
        {"0.8b qkv", sized(m08.conv_dim(), kRows), m08.hidden},
        {"0.8b ffn_down", sized(m08.hidden, kRows), m08.intermediate},
        {"27b attn_q", sized(2 * m27.n_heads * m27.head_dim, kRows), m27.hidden},
        {"27b ffn_gate", sized(m27.intermediate, kRows), m27.hidden},
        {"27b ffn_down", sized(m27.hidden, kRows), m27.intermediate},
        {"35b router", m35.n_experts, m35.hidden},
        {"35b expert_down", sized(m35.hidden, kRows), m35.expert_intermediate},
    };
    const std::vector<int32_t> ns = full_run() ? std::vector<int32_t>{1, 7, 17, 64} : std::vector<int32_t>{1, 7, 17};
    Rng r(3);
    for (const Shape& s : shapes)
        for (DType t : kWeightTypes) {
            if (s.plain_only && !(t == DType::F32 || t == DType::F16 || t == DType::BF16)) continue;
            ModelWeights& mw = W.model();  // prepare_weights uploads what the weights reference
            mw.embed = W.matrix(t, s.rows, s.cols, r, 1.f / std::sqrt(float(s.cols)));
            ASSERT_TRUE(prepare(B, mw).ok());
            for (int32_t n : ns) {
                const std::vector<float> x = rand_vec(r, int64_t(n) * s.cols);
                const std::string what = absl::StrCat("matmul ", s.name, " ", tname(t), " ", s.rows, "x", s.cols, " n=", n);
                auto body = [&](Backend& be) {
                    Dev d(be);
                    float* dx = d.up(x);
                    float* dy = d.alloc(int64_t(n) * s.rows);
                    be.matmul(dx, n, mw.embed, dy);
                    return Outputs{d.down(dy, int64_t(n) * s.rows)};
                };
                const Outputs want = body(*B.cpu);
                check(what, want[0], run_cuda(what, [&] { return body(*B.cuda); }, /*random_too=*/n == 7)[0], 1e-4);
            }
        }
}

// The serving backend's norm and SwiGLU make their output's q8 blocks for the op right after them
// (CudaBackend's MadeBlocks): that op's matmul gives the bits of a matmul that quantises the same rows
// itself, one launch fewer. An op between them that writes the output voids the blocks (a matmul reading
// stale blocks would give the product of the rows before the write), and a matmul of another buffer
// ignores them.
TEST(CudaServingOps, MadeBlocksReadOnlyByTheNextOpOnTheirOutput) {
    SKIP_WITHOUT_CUDA();
    Weights W;
    Rng r(31);
    const int64_t H = 256, V = 40;
    const int32_t n = 3;
    ModelWeights& mw = W.model();
    mw.config.hidden = H, mw.config.vocab_size = V;
    mw.lm_head = W.matrix(DType::Q8_0, V, H, r, 1.f / 16);
    mw.final_norm = rand_vec(r, H, 0.1f, 1.f);
    auto made = make_backend(BackendKind::kCuda);
    ASSERT_TRUE(made.ok()) << made.status();
    Backend& be = **made;
    ASSERT_TRUE(be.prepare_weights(mw).ok());
    ASSERT_TRUE(be.init_caches(mw.config, CacheLayout{}).ok());
    StepBatch batch;  // a 3-token chunk: decode-sized, not captured as a graph
    batch.tokens.assign(size_t(n), 0);
    batch.seqs.push_back(SeqSlice{});
    batch.seqs[0].len = n;
    const std::vector<int32_t> rows{0, 1, 2};
    const std::vector<float> x = rand_vec(r, n * H), z = rand_vec(r, n * H);
    Dev d(be);
    float* dx = d.up(x);
    float* dz = d.up(z);
    float* dh = d.alloc(n * H);
    float* dy = d.alloc(n * V);
    // y = h · Wᵀ with h uploaded: no norm before it, the matmul quantises h itself.
    auto reference = [&](const std::vector<float>& h) {
        float* dh2 = d.up(h);
        be.begin_step(batch, rows, {});
        be.matmul(dh2, n, mw.lm_head, dy);
        return d.down(dy, n * V);
    };
    auto step = [&](const std::function<void()>& ops) {
        be.begin_step(batch, rows, {});
        ops();
        const std::vector<float> h = d.down(dh, n * H);  // ends the step
        return std::make_pair(h, d.down(dy, n * V));
    };
    // Read: norm, then the matmul of its output.
    // Kernel launches of f under the emulation; -1 on a GPU, where nothing counts them.
    auto launches_of = [](const std::function<void()>& f) -> int64_t {
#ifdef DG_CUDA_EMU
        emu::reset_counters();
        f();
        return emu::counters().kernel_launches;
#else
        f();
        return -1;
#endif
    };
    int64_t launches = -1;
    auto [h1, y1] = step([&] {
        launches = launches_of([&] {
            be.rmsnorm(dx, mw.final_norm.data(), n, H, 1e-6f, dh);
            be.matmul(dh, n, mw.lm_head, dy);
        });
    });
    expect_bits_equal("the matmul on the norm's blocks", reference(h1), y1);
    if (launches >= 0) {
        EXPECT_EQ(launches, 2) << "the norm (with its q8 blocks) and the GEMV: no quantisation launch";
    }
    // Voided: the norm's output is written (an add) before the matmul reads it.
    auto [h2, y2] = step([&] {
        be.rmsnorm(dx, mw.final_norm.data(), n, H, 1e-6f, dh);
        be.add(dh, dz, n * H);
        be.matmul(dh, n, mw.lm_head, dy);
    });
    expect_bits_equal("the matmul after a write to the norm's output", reference(h2), y2);
    // Another buffer: the matmul right after the norm reads x, not the norm's output.
    auto [h3, y3] = step([&] {
        be.rmsnorm(dx, mw.final_norm.data(), n, H, 1e-6f, dh);
        be.matmul(dx, n, mw.lm_head, dy);
    });
    (void)h3;
    expect_bits_equal("the matmul of another buffer after a norm", reference(x), y3);
    // SwiGLU as the producer (here over n x H values, read as n rows of H).
    auto [h4, y4] = step([&] {
        launches = launches_of([&] {
            be.swiglu(dx, dz, n * H, dh);
            be.matmul(dh, n, mw.lm_head, dy);
        });
    });
    expect_bits_equal("the matmul on SwiGLU's blocks", reference(h4), y4);
    if (launches >= 0) {
        EXPECT_EQ(launches, 2) << "SwiGLU (with its q8 blocks) and the GEMV: no quantisation launch";
    }
    auto [h5, y5] = step([&] {
        be.swiglu(dx, dz, n * H, dh);
        be.add(dh, dz, n * H);
        be.matmul(dh, n, mw.lm_head, dy);
    });
    expect_bits_equal("the matmul after a write to SwiGLU's output", reference(h5), y5);
    ASSERT_TRUE(be.take_error().ok());
}

// add, swiglu, copy_rows: elementwise. add and copy_rows are exact; swiglu's expf may differ in the
// last bit from std::exp: 1e-6.
TEST(BackendOps, AddSwigluCopyRows) {
    SKIP_WITHOUT_CUDA();
    Pair B = make_pair();
    Rng r(4);
    const ModelConfig m27 = preset("27b");
    for (int64_t count : {int64_t(1), int64_t(255), int64_t(12345), 7 * m27.intermediate}) {
        const std::vector<float> y0 = rand_vec(r, count, 3.f), x = rand_vec(r, count, 3.f);
        {
            const std::string what = absl::StrCat("add n=", count);
            auto body = [&](Backend& be) {
                Dev d(be);
                float* dy = d.up(y0);
                be.add(dy, d.up(x), count);
                return Outputs{d.down(dy, count)};
            };
            const Outputs want = body(*B.cpu);
            check(what, want[0], run_cuda(what, [&] { return body(*B.cuda); })[0], 0.0);
        }
        for (bool alias : {false, true}) {
            const std::string what = absl::StrCat("swiglu n=", count, alias ? " out=gate" : "");
            auto body = [&](Backend& be) {
                Dev d(be);
                float* g = d.up(y0);
                float* out = alias ? g : d.alloc(count);
                be.swiglu(g, d.up(x), count, out);
                return Outputs{d.down(out, count)};
            };
            const Outputs want = body(*B.cpu);
            check(what, want[0], run_cuda(what, [&] { return body(*B.cuda); })[0], 1e-6);
        }
    }
    for (int64_t dim : {int64_t(1), int64_t(999), preset("0.8b").hidden, m27.hidden}) {
        const int32_t src_rows = 9;
        const std::vector<float> x = rand_vec(r, src_rows * dim);
        const std::vector<int32_t> rows{8, 0, 3, 3, 8, 1, 7};  // reversed, repeated, first and last
        const int32_t n = int32_t(rows.size());
        const std::string what = absl::StrCat("copy_rows dim=", dim, " rows=", n, " of ", src_rows);
        auto body = [&](Backend& be) {
            Dev d(be);
            float* y = d.alloc(n * dim);
            be.copy_rows(d.up(x), rows.data(), n, dim, y);
            return Outputs{d.down(y, n * dim)};
        };
        const Outputs want = body(*B.cpu);
        check(what, want[0], run_cuda(what, [&] { return body(*B.cuda); })[0], 0.0);
    }
}

// ===================================================================================================
// gdn_mixer through the Backend interface: decode rows (the fused decode kernel) and prefill slices
// (the chunked kernel, slices crossing the 64-token chunk edge) in mixed batches over three chained
// steps, nonzero initial states in permuted slots, layer 1 of 2 (layer offsets). Tolerance 1e-3 of the
// spread, outputs and states (as tests/unit/gpu/gdn_kernels_test.cpp: both fp32, but the GPU folds W S
// into the triangular solve and sums in other orders; observed errors are ~1e-5).

struct GdnGeom {
    std::string name;
    int64_t Hk, Hv, dk, dv;
};
GdnGeom gdn_geom(const std::string& preset_name) {
    const ModelConfig c = preset(preset_name);
    return {preset_name, c.lin_k_heads, c.lin_v_heads, c.lin_k_dim, c.lin_v_dim};
}

class GdnOps : public ::testing::TestWithParam<std::string> {};

TEST_P(GdnOps, MixedBatchesThroughTheBackend) {
    SKIP_WITHOUT_CUDA();
    const GdnGeom g = GetParam() == "dkdv" ? GdnGeom{"dkdv", 2, 6, 16, 24} : gdn_geom(GetParam());
    const bool large = is_large(g.name);
    ModelConfig c;
    c.arch = "qwen35";
    c.n_layers = 2;
    c.is_attention.assign(2, false);
    c.lin_k_heads = g.Hk, c.lin_v_heads = g.Hv, c.lin_k_dim = g.dk, c.lin_v_dim = g.dv, c.conv_kernel = 4;
    const GdnDims dims{g.Hk, g.Hv, g.dk, g.dv, c.conv_kernel, c.conv_dim()};
    const int64_t C = dims.conv_dim, Hv = g.Hv, V = g.Hv * g.dv;

    Weights W;
    Rng r(hash_name(g.name));
    ModelWeights& mw = W.model();
    mw.config = c;
    mw.layers.resize(2);
    for (LayerWeights& l : mw.layers) {
        l.gdn.conv_w = rand_vec(r, C * dims.K, 0.5f);
        l.gdn.dt_bias = rand_vec(r, Hv, 0.5f);
        l.gdn.ssm_a.resize(size_t(Hv));
        for (float& a : l.gdn.ssm_a) a = -std::exp(-4.f + 5.f * r.uni());  // decay ~0.99 .. ~0.01 per token
        l.gdn.norm_w = rand_vec(r, g.dv, 0.1f, 1.f);
    }
    // Sequence lengths of the first step (several of each kind; prefill slices cross the chunk edge).
    const std::vector<int32_t> lens0 = large && !full_run() ? std::vector<int32_t>{1, 7, 65, 1, 2}
                                                            : std::vector<int32_t>{1, 7, 64, 65, 150, 300, 1, 2};
    const int32_t n_seqs = int32_t(lens0.size());
    std::vector<int32_t> slots(static_cast<size_t>(n_seqs));
    for (int32_t i = 0; i < n_seqs; ++i) slots[i] = n_seqs + 2 - i;  // unrelated to batch order; 0..2 unused
    CacheLayout layout;
    layout.n_state_slots = n_seqs + 3;

    struct Step {
        StepBatch batch;
        std::vector<float> qkv, z, b, a;
    };
    std::vector<Step> steps;
    std::vector<int32_t> pos(size_t(n_seqs), 0);
    auto add_step = [&](const std::vector<int32_t>& lens) {
        Step s;
        int32_t begin = 0;
        for (int32_t i = 0; i < n_seqs; ++i) {
            if (lens[i] == 0) continue;
            SeqSlice q;
            q.begin = begin, q.len = lens[i], q.pos0 = pos[i], q.state_slot = slots[i];
            s.batch.seqs.push_back(q);
            begin += lens[i];
            pos[i] += lens[i];
        }
        s.batch.tokens.assign(size_t(begin), 0);
        s.qkv = rand_vec(r, begin * C), s.z = rand_vec(r, begin * V);
        s.b = rand_vec(r, begin * Hv), s.a = rand_vec(r, begin * Hv);
        steps.push_back(std::move(s));
    };
    add_step(lens0);                                              // prefill + decode mixed
    add_step(std::vector<int32_t>(size_t(n_seqs), 1));            // decode only
    std::vector<int32_t> lens2(size_t(n_seqs), 1);
    lens2[1] = 33, lens2[3] = 0;                                  // a continuing chunk, one sequence idle
    add_step(lens2);

    Pair B = make_pair();
    ASSERT_TRUE(prepare(B, mw).ok());
    ASSERT_TRUE(B.cpu->init_caches(c, layout).ok());
    ASSERT_TRUE(B.cuda->init_caches(c, layout).ok());
    const int64_t SF = B.cpu->state_floats();
    ASSERT_EQ(B.cuda->state_floats(), SF);
    const std::vector<float> states0 = rand_vec(r, SF * layout.n_state_slots, 0.3f);

    auto body = [&](Backend& be) {
        Dev d(be);
        Outputs out;
        for (int32_t s = 0; s < layout.n_state_slots; ++s) be.state_upload(s, states0.data() + s * SF);
        for (const Step& st : steps) {
            const int32_t n = st.batch.n_tokens();
            float* qkv = d.up(st.qkv);  // the mixer runs its conv in place
            float* o = d.alloc(int64_t(n) * V);
            be.gdn_mixer(st.batch, 1, dims, mw.layers[1].gdn, 1e-6f, qkv, d.up(st.z), d.up(st.b), d.up(st.a), o);
            out.push_back(d.down(o, int64_t(n) * V));
        }
        std::vector<float> states(size_t(SF * layout.n_state_slots));
        for (int32_t s = 0; s < layout.n_state_slots; ++s) be.state_download(s, states.data() + s * SF);
        out.push_back(std::move(states));
        return out;
    };
    const std::string what = absl::StrCat("gdn_mixer ", g.name, " Hk=", g.Hk, " Hv=", g.Hv, " dk=", g.dk, " dv=", g.dv);
    const Outputs want = body(*B.cpu);
    const Outputs got = run_cuda(what, [&] { return body(*B.cuda); });
    ASSERT_EQ(got.size(), want.size());
    const char* step_names[] = {" step0 mixed prefill+decode", " step1 decode", " step2 chunk+decode"};
    for (size_t i = 0; i < steps.size(); ++i) check(what + step_names[i] + " o", want[i], got[i], 1e-3);
    check(what + " states after 3 steps", want.back(), got.back(), 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Geometries, GdnOps, ::testing::Values("tiny", "dkdv", "0.8b", "27b", "35b-a3b"),
                         [](const auto& i) {
                             std::string s = i.param;
                             std::replace(s.begin(), s.end(), '.', 'p');
                             std::replace(s.begin(), s.end(), '-', '_');
                             return s;
                         });

// ===================================================================================================
// attention over the paged KV cache, every KV type: three sequences prefilled in one step (one ending
// inside a block, one on a block edge), then a step with decode rows, a continuing chunk and a new
// sequence; then a fork: kv_copy_block gives a new sequence its own copy of a partial tail block, and
// both the original and the fork decode the same token. Block tables are shuffled block ids; layer 1 of
// 2. Tolerances (of the spread): f32 KV 1e-4 (sums in another order); f16 / bf16 / q8_0 / q4_0 KV: the
// K rows are normed and rotated in f32 by both backends with sums in another order, so a value on a
// rounding edge may store one step apart: 2e-3 (f16), 1e-2 (bf16, q8_0), 5e-2 (q4_0: one step is 1/8 of
// the block's range).

struct AttnGeom {
    std::string name;
    int64_t Hq, Hkv, hd, rd;
    float theta;
};
AttnGeom attn_geom(const std::string& p) {
    if (p == "dkdv") return {"dkdv", 4, 2, 32, 8, 1e7f};  // the golden dense_dkdv fixture's attention
    const ModelConfig c = preset(p);
    return {p, c.n_heads, c.n_kv_heads, c.head_dim, c.rotary_dim, c.rope_theta};
}
double kv_tol(DType t) {
    switch (t) {
        case DType::F32: return 1e-4;
        case DType::F16: return 2e-3;
        case DType::Q4_0: return 5e-2;
        default: return 1e-2;
    }
}

struct AttnParam {
    std::string geom;
    DType kv;
};
class AttentionOps : public ::testing::TestWithParam<AttnParam> {};

TEST_P(AttentionOps, PagedKvSequencesAndFork) {
    SKIP_WITHOUT_CUDA();
    const AttnGeom g = attn_geom(GetParam().geom);
    const DType kv = GetParam().kv;
    const bool large = is_large(g.name);
    const int32_t bt = 16;
    ModelConfig c;
    c.arch = "qwen35";
    c.n_layers = 2;
    c.is_attention.assign(2, true);
    c.n_heads = g.Hq, c.n_kv_heads = g.Hkv, c.head_dim = g.hd, c.rotary_dim = g.rd, c.rope_theta = g.theta;
    const AttnDims dims{g.Hq, g.Hkv, g.hd, g.rd, g.theta};

    Weights W;
    Rng r(hash_name(g.name + tname(kv)));
    ModelWeights& mw = W.model();
    mw.config = c;
    mw.layers.resize(2);
    for (LayerWeights& l : mw.layers) {
        l.is_attention = true;
        l.attn.q_norm = rand_vec(r, g.hd, 0.1f, 1.f);
        l.attn.k_norm = rand_vec(r, g.hd, 0.1f, 1.f);
    }
    // Prefill lengths of sequences A (ends inside a block), B (on a block edge), C (several blocks).
    const std::vector<int32_t> pre = (large && !full_run()) ? std::vector<int32_t>{20, 16, 37}
                                     : full_run()           ? std::vector<int32_t>{300, 512, 999}
                                                            : std::vector<int32_t>{20, 16, 37};
    const int32_t chunk = 11;
    // Sequences: 0 A, 1 B, 2 C, 3 D (new in step 1), 4 E (fork of A in step 2).
    const int32_t max_pos = *std::max_element(pre.begin(), pre.end()) + chunk + 4;
    const int32_t per_seq = (max_pos + bt - 1) / bt;
    CacheLayout layout;
    layout.kv_type = kv, layout.block_tokens = bt, layout.n_blocks = 5 * per_seq + 2;
    std::vector<int32_t> ids(size_t(layout.n_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    for (size_t i = ids.size() - 1; i > 0; --i) std::swap(ids[i], ids[size_t(r.below(int32_t(i + 1)))]);
    std::vector<std::vector<int32_t>> tables(5);
    for (int s = 0; s < 5; ++s) tables[s].assign(ids.begin() + s * per_seq, ids.begin() + (s + 1) * per_seq);
    // E resumes from A's state after step 1 (pre[0] + 1 tokens): A's full blocks shared, the partial tail
    // block copied into E's own block.
    const int32_t fork_pos = pre[0] + 1, shared_full = fork_pos / bt;
    ASSERT_NE(fork_pos % bt, 0) << "the fork must start inside a block";
    const int32_t copy_src = tables[0][shared_full], copy_dst = tables[4][shared_full];
    for (int32_t i = 0; i < shared_full; ++i) tables[4][i] = tables[0][i];

    struct Step {
        StepBatch batch;
        std::vector<float> qg, k, v;
        bool fork_first = false;  // kv_copy_block before this step
    };
    std::vector<Step> steps;
    const int64_t QG = 2 * g.Hq * g.hd, KV = g.Hkv * g.hd;
    auto slice = [&](int s, int32_t begin, int32_t len, int32_t pos0) {
        SeqSlice q;
        q.begin = begin, q.len = len, q.pos0 = pos0, q.blocks = tables[s].data(), q.n_blocks = per_seq;
        return q;
    };
    auto fill = [&](Step& st) {
        const int32_t n = st.batch.seqs.back().begin + st.batch.seqs.back().len;
        st.batch.tokens.assign(size_t(n), 0);
        st.qg = rand_vec(r, n * QG), st.k = rand_vec(r, n * KV), st.v = rand_vec(r, n * KV);
    };
    {  // step 0: A, B, C prefill
        Step st;
        int32_t b = 0;
        for (int s = 0; s < 3; ++s) st.batch.seqs.push_back(slice(s, b, pre[s], 0)), b += pre[s];
        fill(st);
        steps.push_back(std::move(st));
    }
    {  // step 1: A decode, B chunk, C decode, D new (3 tokens)
        Step st;
        st.batch.seqs = {slice(0, 0, 1, pre[0]), slice(1, 1, chunk, pre[1]), slice(2, 1 + chunk, 1, pre[2]),
                         slice(3, 2 + chunk, 3, 0)};
        fill(st);
        steps.push_back(std::move(st));
    }
    {  // step 2: after the block copy, E (2 tokens from fork_pos) and A (1 token at fork_pos), same first row
        Step st;
        st.fork_first = true;
        st.batch.seqs = {slice(4, 0, 2, fork_pos), slice(0, 2, 1, fork_pos)};
        fill(st);
        std::copy_n(st.qg.begin(), QG, st.qg.begin() + 2 * QG);
        std::copy_n(st.k.begin(), KV, st.k.begin() + 2 * KV);
        std::copy_n(st.v.begin(), KV, st.v.begin() + 2 * KV);
        steps.push_back(std::move(st));
    }

    Pair B = make_pair();
    ASSERT_TRUE(prepare(B, mw).ok());
    ASSERT_TRUE(B.cpu->init_caches(c, layout).ok());
    ASSERT_TRUE(B.cuda->init_caches(c, layout).ok());
    // Every run writes each position it reads before reading it, so a rerun (another schedule) on the
    // same caches is a run from the same state.
    auto body = [&](Backend& be) {
        Dev d(be);
        Outputs out;
        for (const Step& st : steps) {
            if (st.fork_first) be.kv_copy_block(copy_dst, copy_src);
            const int32_t n = st.batch.n_tokens();
            float* o = d.alloc(int64_t(n) * g.Hq * g.hd);
            be.attention(st.batch, 1, dims, mw.layers[1].attn, 1e-6f, d.up(st.qg), d.up(st.k), d.up(st.v), o);
            out.push_back(d.down(o, int64_t(n) * g.Hq * g.hd));
        }
        return out;
    };
    const std::string what = absl::StrCat("attention ", g.name, " Hq=", g.Hq, " Hkv=", g.Hkv, " hd=", g.hd, " kv ",
                                          tname(kv), " seqs ", pre[0], "/", pre[1], "/", pre[2]);
    const Outputs want = body(*B.cpu);
    const Outputs got = run_cuda(what, [&] { return body(*B.cuda); }, /*random_too=*/!large || kv == DType::Q4_0);
    ASSERT_EQ(got.size(), want.size());
    const char* names[] = {" step0 prefill", " step1 decode+chunk+new", " step2 fork (kv_copy_block)"};
    for (size_t i = 0; i < steps.size(); ++i) check(what + names[i], want[i], got[i], kv_tol(kv));
    // The fork's first row and A's row saw the same inputs over the same cached prefix (E's through the
    // copied block). The CPU gives them bit for bit the same output. On CUDA E's row runs in a prefill
    // slice (tiled kernel) and A's in a decode slice (split kernel), which sum in different orders, so
    // they agree to rounding (1e-5 of the spread; a wrong or missing block copy is off by O(1)).
    const int64_t row = g.Hq * g.hd;
    auto rows_of = [&](const std::vector<float>& o) {
        return std::pair{std::vector<float>(o.begin(), o.begin() + row), std::vector<float>(o.begin() + 2 * row, o.begin() + 3 * row)};
    };
    const auto [cpu_fork, cpu_orig] = rows_of(want[2]);
    expect_bits_equal(what + " cpu: fork row vs original row", cpu_orig, cpu_fork);
    const auto [cuda_fork, cuda_orig] = rows_of(got[2]);
    check(what + " cuda: fork row vs original row", cuda_orig, cuda_fork, 1e-5);
}

std::vector<AttnParam> attn_params() {
    std::vector<AttnParam> v;
    for (const char* gname : {"tiny", "dkdv", "0.8b", "27b", "35b-a3b"})
        for (DType t : kKvTypes) v.push_back({gname, t});
    return v;
}
INSTANTIATE_TEST_SUITE_P(GeometriesAndKvTypes, AttentionOps, ::testing::ValuesIn(attn_params()), [](const auto& i) {
    std::string s = i.param.geom + "_" + tname(i.param.kv);
    std::replace(s.begin(), s.end(), '.', 'p');
    std::replace(s.begin(), s.end(), '-', '_');
    return s;
});

// ===================================================================================================
// attention's split and tile boundaries (engine/cuda/attention.cu, docs/cuda.md "Attention"): 4-token KV
// blocks so short contexts cross many blocks, and the decode split count forced to 1, 3 and 5 and left to
// the batch (64 splits of one block each here, most of them empty). Three steps over the same caches:
//   step 0: A prefills 45 tokens (11.25 blocks), B 7, C is a 1-token decode at position 0;
//   step 1: A and B decode (contexts 46 and 8: with 3 splits A's 12 blocks split 4/4/4 and its last
//           block is partial), C continues with a 9-token chunk over its cached prefix, D prefills 21
//           (a 16-row prefill tile and a partial one per head, the KV tile boundary at 16 crossed);
//   step 2: all four decode (one of them, D, at context 22 = 5.5 blocks).
// Geometries: dkdv (hd 32, group 2), tiny (hd 256, group 6), tiny-moe (group 8), and a group of 12 heads
// at hd 64 (two chunks of 6 heads per KV head). Tolerances as AttentionOps.
#ifdef DELTAGATE_HAVE_CUDA
struct SplitParam {
    std::string geom;
    DType kv;
};
AttnGeom split_geom(const std::string& p) {
    if (p == "g12") return {"g12", 12, 1, 64, 32, 1e6f};
    return attn_geom(p);
}
class AttentionSplits : public ::testing::TestWithParam<SplitParam> {};

TEST_P(AttentionSplits, DecodeSplitsPrefillTilesCachedPrefix) {
    SKIP_WITHOUT_CUDA();
    const AttnGeom g = split_geom(GetParam().geom);
    const DType kv = GetParam().kv;
    const int32_t bt = 4;
    ModelConfig c;
    c.arch = "qwen35";
    c.n_layers = 1;
    c.is_attention.assign(1, true);
    c.n_heads = g.Hq, c.n_kv_heads = g.Hkv, c.head_dim = g.hd, c.rotary_dim = g.rd, c.rope_theta = g.theta;
    const AttnDims dims{g.Hq, g.Hkv, g.hd, g.rd, g.theta};
    Weights W;
    Rng r(hash_name("splits" + g.name + tname(kv)));
    ModelWeights& mw = W.model();
    mw.config = c;
    mw.layers.resize(1);
    mw.layers[0].is_attention = true;
    mw.layers[0].attn.q_norm = rand_vec(r, g.hd, 0.1f, 1.f);
    mw.layers[0].attn.k_norm = rand_vec(r, g.hd, 0.1f, 1.f);

    const int32_t per_seq = 64 / bt;  // every sequence stays under 64 positions
    CacheLayout layout;
    layout.kv_type = kv, layout.block_tokens = bt, layout.n_blocks = 4 * per_seq;
    std::vector<int32_t> ids(size_t(layout.n_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    for (size_t i = ids.size() - 1; i > 0; --i) std::swap(ids[i], ids[size_t(r.below(int32_t(i + 1)))]);
    std::vector<std::vector<int32_t>> tables(4);
    for (int s = 0; s < 4; ++s) tables[s].assign(ids.begin() + s * per_seq, ids.begin() + (s + 1) * per_seq);

    struct Step {
        StepBatch batch;
        std::vector<float> qg, k, v;
    };
    const int64_t QG = 2 * g.Hq * g.hd, KV = g.Hkv * g.hd;
    auto step = [&](std::vector<std::array<int32_t, 3>> seqs) {  // {sequence, len, pos0}
        Step st;
        int32_t begin = 0;
        for (const auto& [s, len, pos0] : seqs) {
            SeqSlice q;
            q.begin = begin, q.len = len, q.pos0 = pos0, q.blocks = tables[s].data(), q.n_blocks = per_seq;
            st.batch.seqs.push_back(q);
            begin += len;
        }
        st.batch.tokens.assign(size_t(begin), 0);
        st.qg = rand_vec(r, begin * QG), st.k = rand_vec(r, begin * KV), st.v = rand_vec(r, begin * KV);
        return st;
    };
    const std::vector<Step> steps = {step({{0, 45, 0}, {1, 7, 0}, {2, 1, 0}}),
                                     step({{0, 1, 45}, {2, 9, 1}, {1, 1, 7}, {3, 21, 0}}),
                                     step({{3, 1, 21}, {0, 1, 46}, {1, 1, 8}, {2, 1, 10}})};

    Pair B = make_pair();
    ASSERT_TRUE(prepare(B, mw).ok());
    ASSERT_TRUE(B.cpu->init_caches(c, layout).ok());
    ASSERT_TRUE(B.cuda->init_caches(c, layout).ok());
    auto body = [&](Backend& be) {
        Dev d(be);
        Outputs out;
        for (const Step& st : steps) {
            const int32_t n = st.batch.n_tokens();
            float* o = d.alloc(int64_t(n) * g.Hq * g.hd);
            be.attention(st.batch, 0, dims, mw.layers[0].attn, 1e-6f, d.up(st.qg), d.up(st.k), d.up(st.v), o);
            out.push_back(d.down(o, int64_t(n) * g.Hq * g.hd));
        }
        EXPECT_TRUE(be.take_error().ok());
        return out;
    };
    const Outputs want = body(*B.cpu);
    struct TilingReset {
        ~TilingReset() { cuda::set_attention_tiling({}); }
    } reset;
    for (int splits : {1, 3, 5, 0}) {
        cuda::set_attention_tiling({splits});
        const std::string what = absl::StrCat("attention splits ", g.name, " G=", g.Hq / g.Hkv, " hd=", g.hd, " kv ",
                                              tname(kv), " bt 4, splits ", splits ? std::to_string(splits) : "auto (",
                                              splits ? "" : std::to_string(cuda::attention_decode_splits(1, dims)),
                                              splits ? "" : " at batch 1)");
        const Outputs got = run_cuda(what, [&] { return body(*B.cuda); }, /*random_too=*/splits == 3);
        ASSERT_EQ(got.size(), want.size());
        const char* names[] = {" step0 prefill+decode@0", " step1 decode+chunk+prefill", " step2 decode x4"};
        for (size_t i = 0; i < steps.size(); ++i) check(what + names[i], want[i], got[i], kv_tol(kv));
    }
}

std::vector<SplitParam> split_params() {
    std::vector<SplitParam> v;
    for (const char* gname : {"dkdv", "tiny", "tiny-moe", "g12"})
        for (DType t : kKvTypes) v.push_back({gname, t});
    return v;
}
INSTANTIATE_TEST_SUITE_P(GeometriesAndKvTypes, AttentionSplits, ::testing::ValuesIn(split_params()), [](const auto& i) {
    std::string s = i.param.geom + "_" + tname(i.param.kv);
    std::replace(s.begin(), s.end(), '-', '_');
    return s;
});
#endif  // DELTAGATE_HAVE_CUDA

// ===================================================================================================
// moe_ffn: router softmax + top-k (on the device for CUDA: engine/cuda/moe.cu), experts as grouped
// matmuls, sigmoid-gated shared expert. n = 17 at the tiny geometry: 68 entries over 16 experts, so
// several tokens per expert run (the grouped kernel's tiles take up to 8). Tolerance 1e-4 (matmul's; the random router's top-k margins are
// far wider than the logits' rounding differences, so both backends pick the same experts). Under the
// emulation the 35B geometry has 256 router rows but its experts reuse 16 distinct weight sets (expert
// e has set e % 16): the geometry and routing are real, the weight bytes bounded.

struct MoeParam {
    std::string geom;
    DType type;
};
class MoeOps : public ::testing::TestWithParam<MoeParam> {};

TEST_P(MoeOps, RoutedAndSharedExperts) {
    SKIP_WITHOUT_CUDA();
    const ModelConfig c = preset(GetParam().geom);
    const DType t = GetParam().type;
    const int64_t H = c.hidden, E = c.n_experts, I = c.expert_intermediate, Is = c.shared_intermediate;
    const int64_t distinct = sized(E, 16);
    Weights W;
    Rng r(hash_name(GetParam().geom + tname(t)));
    ModelWeights& mw = W.model();
    mw.config = c;
    mw.layers.resize(1);
    MoeWeights& m = mw.layers[0].moe;
    const float in_scale = 1.f / std::sqrt(float(H));
    m.router = W.matrix(DType::F32, E, H, r, 2.f * in_scale);  // routers stay f32 in GGUF files
    m.shared_gate = W.matrix(DType::F32, 1, H, r, in_scale);
    m.shared = {W.matrix(t, Is, H, r, in_scale), W.matrix(t, Is, H, r, in_scale),
                W.matrix(t, H, Is, r, 0.3f / std::sqrt(float(Is)))};
    std::vector<MlpWeights> sets;
    for (int64_t e = 0; e < distinct; ++e)
        sets.push_back({W.matrix(t, I, H, r, in_scale), W.matrix(t, I, H, r, in_scale),
                        W.matrix(t, H, I, r, 0.3f / std::sqrt(float(I)))});
    for (int64_t e = 0; e < E; ++e) m.experts.push_back(sets[size_t(e % distinct)]);
    Pair B = make_pair();
    ASSERT_TRUE(prepare(B, mw).ok());
    const bool large = is_large(GetParam().geom);
    for (int32_t n : full_run() ? std::vector<int32_t>{1, 7, 33} : std::vector<int32_t>{1, large ? 3 : 17}) {
        const std::vector<float> x = rand_vec(r, int64_t(n) * H);
        const std::string what = absl::StrCat("moe_ffn ", GetParam().geom, " ", tname(t), " E=", E, " top", c.n_experts_used,
                                              " I=", I, " Is=", Is, " n=", n);
        auto body = [&](Backend& be) {
            Dev d(be);
            float* y = d.alloc(int64_t(n) * H);
            be.moe_ffn(d.up(x), n, m, c.n_experts_used, y);
            return Outputs{d.down(y, int64_t(n) * H)};
        };
        const Outputs want = body(*B.cpu);
        check(what, want[0], run_cuda(what, [&] { return body(*B.cuda); }, /*random_too=*/n > 1 && !large)[0], 1e-4);
    }
}

INSTANTIATE_TEST_SUITE_P(Geometries, MoeOps,
                         ::testing::Values(MoeParam{"tiny-moe", DType::F32}, MoeParam{"tiny-moe", DType::Q8_0},
                                           MoeParam{"35b-a3b", DType::BF16}, MoeParam{"35b-a3b", DType::Q4_K},
                                           MoeParam{"35b-a3b", DType::Q8_0}),
                         [](const auto& i) {
                             std::string s = i.param.geom + "_" + tname(i.param.type);
                             std::replace(s.begin(), s.end(), '-', '_');
                             return s;
                         });

// ===================================================================================================
// State slots: upload, copy (fork / checkpoint), self-copy, clear, download. Pure data movement: exact,
// against both the CPU backend and what the calls must leave (computed on the host).
TEST(BackendOps, StateSlotsUploadCopyClearDownload) {
    SKIP_WITHOUT_CUDA();
    for (const char* gname : {"tiny", "27b"}) {
        ModelConfig c = preset(gname);
        CacheLayout layout;
        layout.kv_type = DType::F16, layout.block_tokens = 16, layout.n_blocks = 4, layout.n_state_slots = 5;
        if (is_large(gname) && !full_run()) {  // the 27B GDN slot geometry over 2 layers (157 MB per slot for all 48 in full)
            c.n_layers = 2, c.is_attention = {false, true};
        }
        Weights W;
        Pair B = make_pair();
        ASSERT_TRUE(B.cpu->init_caches(c, layout).ok());
        ASSERT_TRUE(B.cuda->init_caches(c, layout).ok());
        const int64_t SF = B.cpu->state_floats();
        ASSERT_EQ(B.cuda->state_floats(), SF);
        ASSERT_EQ(SF * 4, c.state_bytes_per_seq());
        Rng r(hash_name(gname));
        std::vector<std::vector<float>> slot(5);
        for (auto& s : slot) s = rand_vec(r, SF);
        // Expected contents after: upload all; copy 3 <- 1; copy 4 <- 4; clear 2; copy 0 <- 2 (a cleared slot).
        std::vector<std::vector<float>> expect = slot;
        expect[3] = slot[1];
        expect[2].assign(size_t(SF), 0.f);
        expect[0] = expect[2];
        auto body = [&](Backend& be) {
            for (int32_t s = 0; s < 5; ++s) be.state_upload(s, slot[s].data());
            be.state_copy(3, 1);
            be.state_copy(4, 4);
            be.state_clear(2);
            be.state_copy(0, 2);
            Outputs out(5, std::vector<float>(size_t(SF)));
            for (int32_t s = 0; s < 5; ++s) be.state_download(s, out[s].data());
            return out;
        };
        const Outputs want = body(*B.cpu);
        const Outputs got = run_cuda(absl::StrCat("state ops ", gname), [&] { return body(*B.cuda); }, false);
        for (int32_t s = 0; s < 5; ++s) {
            expect_bits_equal(absl::StrCat("state ops ", gname, " cpu slot ", s, " vs expected"), expect[s], want[s]);
            check(absl::StrCat("state ops ", gname, " slot ", s, " (", SF, " floats)"), want[s], got[s], 0.0);
        }
    }
}

// KV blocks to host RAM and back (the scheduler's host tier): upload every block, copy one, download
// every block. Opaque bytes in the cache's own encoding: exact, the same layout on both backends, for a
// float and a block-quantised KV type.
TEST(BackendOps, KvBlocksUploadCopyDownload) {
    SKIP_WITHOUT_CUDA();
    for (DType kv : {DType::F16, DType::Q8_0}) {
        ModelConfig c = preset("tiny");
        CacheLayout layout;
        layout.kv_type = kv, layout.block_tokens = 16, layout.n_blocks = 4, layout.n_state_slots = 1;
        Pair B = make_pair();
        ASSERT_TRUE(B.cpu->init_caches(c, layout).ok());
        ASSERT_TRUE(B.cuda->init_caches(c, layout).ok());
        const int64_t bytes = B.cpu->kv_block_bytes();
        ASSERT_EQ(B.cuda->kv_block_bytes(), bytes);
        ASSERT_GT(bytes, 0);
        Rng r(hash_name(dtype_info(kv).name));
        std::vector<std::vector<uint8_t>> block(4, std::vector<uint8_t>(size_t(bytes)));
        for (auto& b : block)
            for (auto& x : b) x = uint8_t(r.next());
        std::vector<std::vector<uint8_t>> expect = block;
        expect[2] = block[0];  // after kv_copy_block(2, 0)
        auto body = [&](Backend& be) {
            for (int32_t i = 0; i < 4; ++i) be.kv_upload_block(i, block[i].data());
            be.kv_copy_block(2, 0);
            std::vector<std::vector<uint8_t>> out(4, std::vector<uint8_t>(size_t(bytes)));
            for (int32_t i = 0; i < 4; ++i) be.kv_download_block(i, out[i].data());
            return out;
        };
        const auto want = body(*B.cpu);
        const auto got = body(*B.cuda);
        ASSERT_TRUE(B.cuda->take_error().ok());
        ++g_cuda_runs;
        for (int32_t i = 0; i < 4; ++i) {
            EXPECT_EQ(want[i], expect[i]) << dtype_info(kv).name << " cpu block " << i;
            EXPECT_EQ(got[i], expect[i]) << dtype_info(kv).name << " cuda block " << i;
        }
    }
}

}  // namespace
}  // namespace dg
