// The fast GDN kernels (engine/cuda/gdn_decode.cu, gdn_prefill.cu) against the CPU backend's gdn_mixer
// (the oracle) and against the CUDA token-by-token reference, on random inputs with real Qwen3.5 head
// sizes, mixed sequence lengths, nonzero initial states and permuted state slots. Skips with a message
// on machines without a CUDA device; run on the GPU machine (tests/gpu_check.sh).
//
// Tolerance: max |got - want| <= 1e-3 * std(want), for the outputs and for the states. Both sides are
// fp32, but sum in different orders, and the GPU prefill folds W S into the triangular solve
// (V' = (I + A)^-1 beta (V - e^gam K S)) where the CPU forms W first; expected errors are ~1e-5.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/cpu/ops.h"

#ifdef DELTAGATE_HAVE_CUDA
#include <cuda_runtime.h>

#include "engine/cuda/ops.cuh"
#endif

namespace dg {
namespace {

#ifndef DELTAGATE_HAVE_CUDA

TEST(GdnKernels, NeedCuda) { GTEST_SKIP() << "this build lacks CUDA (nvcc was not found)"; }

#else

#define SKIP_WITHOUT_GPU() \
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device (this build has CUDA)"

#define CK(expr)                                                                                          \
    do {                                                                                                  \
        cudaError_t e_ = (expr);                                                                          \
        if (e_ != cudaSuccess) {                                                                          \
            std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
            std::abort();                                                                                 \
        }                                                                                                 \
    } while (0)

constexpr double kTol = 1e-3;  // max abs error / std of the reference, outputs and states
constexpr int kLayers = 2;     // the state array holds two GDN layers; the calls run layer 1
constexpr int kLayer = 1;

struct Shape {
    std::string name;
    int64_t Hk, Hv, dk, dv;
};
// 27B and 9B/35B (Hk < Hv, tiled heads), 0.8B (Hk == Hv), the golden dk != dv fixture, and a dv that is
// not a multiple of 128 (partial tiles at every geometry).
const Shape k27b{"27b", 16, 48, 128, 128};
const Shape k9b{"9b", 16, 32, 128, 128};
const Shape k08b{"0p8b", 16, 16, 128, 128};
const Shape kDkDv{"dkdv", 2, 6, 16, 24};
const Shape kWide{"wide", 4, 8, 64, 160};

// One layer call's inputs and the whole state array ([slot][layer][conv (K-1) C | S Hv dk dv]).
struct Problem {
    GdnDims d{};
    GdnWeights w;
    float eps = 1e-6f;
    StepBatch batch;
    std::vector<float> qkv, z, b, a;
    std::vector<float> states;
    int32_t n_slots = 0;
    int64_t conv_floats = 0, s_floats = 0;
    int64_t layer_floats() const { return conv_floats + s_floats; }
    int64_t slot_floats() const { return kLayers * layer_floats(); }
    int32_t n() const { return batch.n_tokens(); }
};

// Fresh token rows for sequences of the given lengths; sequence i uses slot slots[i].
void new_rows(Problem& p, const std::vector<int32_t>& lens, const std::vector<int32_t>& slots, std::mt19937& rng) {
    std::normal_distribution<float> nd;
    p.batch = StepBatch{};
    int32_t begin = 0;
    for (size_t i = 0; i < lens.size(); ++i) {
        SeqSlice s;
        s.begin = begin, s.len = lens[i], s.state_slot = slots[i];
        p.batch.seqs.push_back(s);
        begin += lens[i];
    }
    p.batch.tokens.assign(begin, 0);
    const int64_t n = begin, C = p.d.conv_dim, Hv = p.d.Hv;
    p.qkv.resize(n * C), p.z.resize(n * Hv * p.d.dv), p.b.resize(n * Hv), p.a.resize(n * Hv);
    for (auto* v : {&p.qkv, &p.z, &p.b, &p.a})
        for (float& x : *v) x = nd(rng);
}

Problem make_problem(const Shape& sh, const std::vector<int32_t>& lens, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    std::uniform_real_distribution<float> ud(-4.f, 1.f);
    Problem p;
    p.d = GdnDims{sh.Hk, sh.Hv, sh.dk, sh.dv, 4, 2 * sh.Hk * sh.dk + sh.Hv * sh.dv};
    const int64_t C = p.d.conv_dim, K = p.d.K;
    p.w.conv_w.resize(C * K);
    for (float& x : p.w.conv_w) x = 0.5f * nd(rng);
    p.w.dt_bias.resize(sh.Hv);
    p.w.ssm_a.resize(sh.Hv);
    for (int64_t h = 0; h < sh.Hv; ++h) {
        p.w.dt_bias[h] = 0.5f * nd(rng);
        p.w.ssm_a[h] = -std::exp(ud(rng));  // decays from ~0.99 (long memory) to ~0.01 per token
    }
    p.w.norm_w.resize(sh.dv);
    for (float& x : p.w.norm_w) x = 1.f + 0.1f * nd(rng);
    p.conv_floats = (K - 1) * C;
    p.s_floats = sh.Hv * sh.dk * sh.dv;
    p.n_slots = int32_t(lens.size()) + 3;
    p.states.resize(size_t(p.n_slots) * p.slot_floats());
    for (int32_t s = 0; s < p.n_slots; ++s)
        for (int l = 0; l < kLayers; ++l) {
            float* base = p.states.data() + s * p.slot_floats() + l * p.layer_floats();
            for (int64_t i = 0; i < p.conv_floats; ++i) base[i] = nd(rng);
            for (int64_t i = 0; i < p.s_floats; ++i) base[p.conv_floats + i] = 0.3f * nd(rng);
        }
    // Slots in an order unrelated to the batch order; slots 0 and 2 stay unused.
    std::vector<int32_t> slots;
    for (size_t i = 0; i < lens.size(); ++i) slots.push_back(int32_t(p.n_slots - 1 - i));
    new_rows(p, lens, slots, rng);
    return p;
}

struct CpuCtx {
    float* states;
    int64_t slot_floats, layer_off, conv_floats;
    static cpu::GdnState get(void* v, int32_t slot) {
        auto* c = static_cast<CpuCtx*>(v);
        float* base = c->states + slot * c->slot_floats + c->layer_off;
        return {base, base + c->conv_floats};
    }
};

// The oracle: updates p.states, returns o [n][Hv dv].
std::vector<float> run_cpu(Problem& p) {
    std::vector<float> qkv = p.qkv, o(size_t(p.n()) * p.d.Hv * p.d.dv);
    CpuCtx ctx{p.states.data(), p.slot_floats(), kLayer * p.layer_floats(), p.conv_floats};
    cpu::gdn_mixer(p.batch, p.d, p.w, p.eps, qkv.data(), p.z.data(), p.b.data(), p.a.data(), o.data(), &CpuCtx::get,
                   &ctx);
    return o;
}

template <typename T>
struct DevBuf {
    T* p = nullptr;
    size_t n = 0;
    explicit DevBuf(size_t count) : n(std::max<size_t>(count, 1)) { CK(cudaMalloc(&p, n * sizeof(T))); }
    DevBuf(const std::vector<T>& h) : DevBuf(h.size()) {
        if (!h.empty()) CK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    }
    ~DevBuf() { cudaFree(p); }
    DevBuf(const DevBuf&) = delete;
    DevBuf& operator=(const DevBuf&) = delete;
    std::vector<T> get(size_t count) const {
        std::vector<T> h(count);
        CK(cudaMemcpy(h.data(), p, count * sizeof(T), cudaMemcpyDeviceToHost));
        return h;
    }
};

enum class Path { kFast, kReference, kDecodeOnly, kPrefillOnly };

// One layer call on the GPU from p's inputs and states; updates p.states, returns o. kDecodeOnly /
// kPrefillOnly call gdn_decode / gdn_prefill directly (the batch must hold only that kind). with_q8 (decode
// only): the kernel also makes o's q8 blocks, which must be the bits quantize_act_q8 makes of o.
std::vector<float> run_gpu(Problem& p, Path path, cuda::GdnTiling tiling = {}, bool with_q8 = false) {
    const int32_t n = p.n();
    const int64_t o_floats = int64_t(n) * p.d.Hv * p.d.dv;
    DevBuf<float> conv_w(p.w.conv_w), dt_bias(p.w.dt_bias), ssm_a(p.w.ssm_a), norm_w(p.w.norm_w);
    DevBuf<float> qkv(p.qkv), z(p.z), b(p.b), a(p.a), states(p.states);
    DevBuf<float> o(o_floats);
    CK(cudaMemset(o.p, 0xff, o.n * sizeof(float)));  // NaN: rows the kernels fail to write show up
    std::vector<cuda::DevSeq> seqs;
    for (int decode = 1; decode >= 0; --decode)
        for (const SeqSlice& s : p.batch.seqs)
            if ((s.len == 1) == bool(decode)) seqs.push_back(cuda::DevSeq{s.begin, s.len, s.pos0, s.state_slot, nullptr});
    const int32_t n_dec = int32_t(std::count_if(p.batch.seqs.begin(), p.batch.seqs.end(), [](const SeqSlice& s) { return s.len == 1; }));
    const int32_t n_pre = int32_t(seqs.size()) - n_dec;
    DevBuf<cuda::DevSeq> dseqs(seqs);
    const cuda::GdnLayerState st{states.p + kLayer * p.layer_floats(), p.slot_floats(), p.conv_floats};
    cuda::GdnLayerArgs args{p.d,  conv_w.p, dt_bias.p, ssm_a.p, norm_w.p, p.eps, qkv.p,
                            z.p,  b.p,      a.p,       o.p,     st};
    const size_t o_blocks = size_t(o_floats / 32), o_count = size_t(o_floats);
    DevBuf<int8_t> q8(o_count), q8_want(o_count);
    DevBuf<float> q8_d(o_blocks), q8_d_want(o_blocks);
    DevBuf<int32_t> q8_s(o_blocks), q8_s_want(o_blocks);
    if (with_q8) args.o_q8 = cuda::ActQ8{q8.p, q8_d.p, q8_s.p};
    const int64_t words = cuda::gdn_arrival_words(n_dec, p.d);
    DevBuf<float> partial(size_t(cuda::gdn_workspace_floats(n_dec, p.d)));
    DevBuf<uint32_t> arrivals(static_cast<size_t>(words));
    CK(cudaMemset(arrivals.p, 0, arrivals.n * sizeof(uint32_t)));
    const cuda::GdnWorkspace ws{partial.p, arrivals.p};
    switch (path) {
        case Path::kFast: cuda::gdn_mixer(args, dseqs.p, seqs.data(), n_dec, n_pre, ws, tiling, 0); break;
        case Path::kDecodeOnly: cuda::gdn_decode(args, dseqs.p, n_dec, ws, tiling.decode_cols, 0); break;
        case Path::kPrefillOnly: cuda::gdn_prefill(args, dseqs.p, seqs.data(), n_pre, tiling.prefill_cols, 0); break;
        case Path::kReference: {
            DevBuf<float> scratch(size_t(2) * n * p.d.Hv);
            cuda::gdn_mixer_reference(args, dseqs.p, int32_t(seqs.size()), n, scratch.p, 0);
            CK(cudaDeviceSynchronize());
            break;
        }
    }
    CK(cudaDeviceSynchronize());
    CK(cudaGetLastError());
    // The arrival counters are left zero for the next call.
    for (uint32_t v : arrivals.get(size_t(words))) EXPECT_EQ(v, 0u) << "arrival counter not reset";
    p.states = states.get(p.states.size());
    if (with_q8) {
        const int64_t width = p.d.Hv * p.d.dv;
        cuda::quantize_act_q8(o.p, n, width, cuda::ActQ8{q8_want.p, q8_d_want.p, q8_s_want.p}, 0);
        CK(cudaDeviceSynchronize());
        EXPECT_EQ(q8.get(o_count), q8_want.get(o_count)) << "o's q8 values";
        const std::vector<float> dg = q8_d.get(o_blocks), dw = q8_d_want.get(o_blocks);
        EXPECT_EQ(std::memcmp(dg.data(), dw.data(), o_blocks * 4), 0) << "o's q8 scales";
        EXPECT_EQ(q8_s.get(o_blocks), q8_s_want.get(o_blocks)) << "o's q8 sums";
    }
    return o.get(size_t(o_floats));
}

struct Diff {
    double err = 0, ref_std = 0;
    double rel() const { return err / std::max(ref_std, 1e-30); }
};
Diff diff(const std::vector<float>& want, const std::vector<float>& got) {
    Diff d;
    double sum = 0, sq = 0;
    for (float v : want) sum += v, sq += double(v) * v;
    const double mean = sum / double(want.size());
    d.ref_std = std::sqrt(std::max(0.0, sq / double(want.size()) - mean * mean));
    for (size_t i = 0; i < want.size(); ++i) {
        const double e = std::abs(double(want[i]) - double(got[i]));
        d.err = std::isnan(e) ? INFINITY : std::max(d.err, e);
    }
    return d;
}

#define EXPECT_CLOSE(want, got, what)                                                                    \
    do {                                                                                                 \
        const Diff d_ = diff(want, got);                                                                 \
        EXPECT_LT(d_.rel(), kTol) << what << ": max err " << d_.err << ", reference std " << d_.ref_std; \
    } while (0)

const std::vector<int32_t> kMixed{1, 7, 64, 65, 150, 300, 1, 1};

class GdnShapes : public ::testing::TestWithParam<Shape> {};

// A mixed batch (decode rows and prefill slices of 7..300 tokens, crossing chunk edges) through the
// fast path with the automatic geometry, against the CPU and against the CUDA reference.
TEST_P(GdnShapes, MixedBatchMatchesCpuAndReference) {
    SKIP_WITHOUT_GPU();
    Problem cpu = make_problem(GetParam(), kMixed, 7);
    Problem gpu = cpu, ref = cpu;
    const auto want = run_cpu(cpu);
    const auto got = run_gpu(gpu, Path::kFast);
    const auto got_ref = run_gpu(ref, Path::kReference);
    EXPECT_CLOSE(want, got, "fast o vs cpu");
    EXPECT_CLOSE(cpu.states, gpu.states, "fast states vs cpu");
    EXPECT_CLOSE(want, got_ref, "reference o vs cpu");
    EXPECT_CLOSE(got_ref, got, "fast o vs reference");
    EXPECT_CLOSE(ref.states, gpu.states, "fast states vs reference");
}

// Decode steps chained 8 times after a prefill, batch of 8 sequences (one still prefilling in step 3).
TEST_P(GdnShapes, DecodeChainedEightStepsMatchesCpu) {
    SKIP_WITHOUT_GPU();
    Problem cpu = make_problem(GetParam(), {5, 70, 1, 1, 3, 129, 1, 2}, 11);
    Problem gpu = cpu;
    std::mt19937 rng(12);
    std::vector<int32_t> slots;
    for (const SeqSlice& s : cpu.batch.seqs) slots.push_back(s.state_slot);
    for (int step = 0; step < 9; ++step) {
        if (step > 0) {
            std::vector<int32_t> lens(slots.size(), 1);
            if (step == 3) lens[5] = 33;  // a mixed step in the middle of the chain
            new_rows(cpu, lens, slots, rng);
            gpu.batch = cpu.batch, gpu.qkv = cpu.qkv, gpu.z = cpu.z, gpu.b = cpu.b, gpu.a = cpu.a;
        }
        const auto want = run_cpu(cpu);
        const auto got = run_gpu(gpu, Path::kFast);
        EXPECT_CLOSE(want, got, "o at step " << step);
    }
    EXPECT_CLOSE(cpu.states, gpu.states, "states after 8 decode steps");
}

INSTANTIATE_TEST_SUITE_P(Qwen35, GdnShapes, ::testing::Values(k27b, k9b, k08b, kDkDv, kWide),
                         [](const auto& info) { return info.param.name; });

// Every geometry each kernel offers, forced (the automatic choice depends on the GPU and the batch).
TEST(GdnKernels, EveryDecodeGeometryMatchesCpu) {
    SKIP_WITHOUT_GPU();
    for (const Shape& sh : {k27b, kDkDv, kWide}) {
        Problem cpu = make_problem(sh, std::vector<int32_t>(12, 1), 21);
        const auto want = run_cpu(cpu);
        for (int cols : {32, 64, 128}) {
            if (sh.dv % (cols / 32)) continue;  // float2 / float4 access needs dv % (cols / 32) == 0
            Problem gpu = make_problem(sh, std::vector<int32_t>(12, 1), 21);
            const auto got = run_gpu(gpu, Path::kDecodeOnly, cuda::GdnTiling{cols, 0});
            EXPECT_CLOSE(want, got, sh.name << " decode cols " << cols << " o");
            EXPECT_CLOSE(cpu.states, gpu.states, sh.name << " decode cols " << cols << " states");
            if (sh.dv % 32 == 0) {  // with o's q8 blocks (the serving backend's decode): the same o, bit for bit
                SCOPED_TRACE(sh.name + " decode cols " + std::to_string(cols) + " with q8 blocks");
                Problem gpu_q8 = make_problem(sh, std::vector<int32_t>(12, 1), 21);
                const auto got_q8 = run_gpu(gpu_q8, Path::kDecodeOnly, cuda::GdnTiling{cols, 0}, true);
                EXPECT_EQ(std::memcmp(got.data(), got_q8.data(), got.size() * 4), 0) << "o changed";
            }
        }
    }
}

TEST(GdnKernels, EveryPrefillGeometryMatchesCpu) {
    SKIP_WITHOUT_GPU();
    int dev = 0, limit = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    const std::vector<int32_t> lens{2, 7, 64, 65, 150, 300};
    for (const Shape& sh : {k27b, kDkDv, kWide}) {
        Problem cpu = make_problem(sh, lens, 31);
        const auto want = run_cpu(cpu);
        for (int cols : {16, 32, 64, 128}) {
            if (cuda::gdn_prefill_smem_bytes(cols, sh.dk) > limit) {
                std::printf("[  INFO    ] %s prefill cols %d: needs %lld B shared memory, device allows %d\n",
                            sh.name.c_str(), cols, (long long)cuda::gdn_prefill_smem_bytes(cols, sh.dk), limit);
                continue;
            }
            Problem gpu = make_problem(sh, lens, 31);
            const auto got = run_gpu(gpu, Path::kPrefillOnly, cuda::GdnTiling{0, cols});
            EXPECT_CLOSE(want, got, sh.name << " prefill cols " << cols << " o");
            EXPECT_CLOSE(cpu.states, gpu.states, sh.name << " prefill cols " << cols << " states");
        }
    }
}

// Through the Backend interface: the CUDA backend's decode-first split and its workspace, for two
// consecutive calls (the arrival counters must come back zero), against the CPU backend.
TEST(GdnKernels, BackendDispatchMatchesCpuBackend) {
    SKIP_WITHOUT_GPU();
    const Shape sh = kWide;
    Problem p = make_problem(sh, kMixed, 41);
    ModelConfig c;
    c.arch = "qwen35";
    c.n_layers = kLayers;
    c.is_attention.assign(kLayers, false);
    c.lin_k_heads = sh.Hk, c.lin_v_heads = sh.Hv, c.lin_k_dim = sh.dk, c.lin_v_dim = sh.dv, c.conv_kernel = 4;
    ModelWeights mw;
    mw.config = c;
    mw.layers.resize(kLayers);
    for (auto& l : mw.layers) l.gdn = p.w;
    CacheLayout layout;
    layout.n_state_slots = p.n_slots;
    std::vector<float> o[2], st[2];
    for (int k = 0; k < 2; ++k) {
        auto be = make_backend(k == 0 ? BackendKind::kCpuExact : BackendKind::kCuda);
        ASSERT_TRUE(be.ok()) << be.status();
        Backend& B = **be;
        ASSERT_TRUE(B.prepare_weights(mw).ok());
        ASSERT_TRUE(B.init_caches(c, layout).ok());
        ASSERT_EQ(B.state_floats(), p.slot_floats());
        for (int32_t s = 0; s < p.n_slots; ++s) B.state_upload(s, p.states.data() + s * p.slot_floats());
        const int32_t n = p.n();
        const int64_t of = int64_t(n) * sh.Hv * sh.dv;
        float* qkv = *B.alloc_f32(int64_t(p.qkv.size()));
        float* z = *B.alloc_f32(int64_t(p.z.size()));
        float* b = *B.alloc_f32(int64_t(p.b.size()));
        float* a = *B.alloc_f32(int64_t(p.a.size()));
        float* out = *B.alloc_f32(of);
        for (int call = 0; call < 2; ++call) {
            B.from_host(p.qkv.data(), qkv, int64_t(p.qkv.size()));
            B.from_host(p.z.data(), z, int64_t(p.z.size()));
            B.from_host(p.b.data(), b, int64_t(p.b.size()));
            B.from_host(p.a.data(), a, int64_t(p.a.size()));
            B.gdn_mixer(p.batch, kLayer, p.d, mw.layers[kLayer].gdn, p.eps, qkv, z, b, a, out);
        }
        o[k].resize(of);
        B.to_host(out, o[k].data(), of);
        st[k].resize(p.states.size());
        for (int32_t s = 0; s < p.n_slots; ++s) B.state_download(s, st[k].data() + s * p.slot_floats());
        for (float* x : {qkv, z, b, a, out}) B.free(x);
    }
    EXPECT_CLOSE(o[0], o[1], "backend o");
    EXPECT_CLOSE(st[0], st[1], "backend states");
}

#endif  // DELTAGATE_HAVE_CUDA

}  // namespace
}  // namespace dg
