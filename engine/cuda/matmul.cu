// The matmul entry (matmul.cuh): the exact kernel, and the dispatch of a call to GEMV (gemv.cu), GEMM
// (gemm.cu) or the exact kernel, with the workspaces they need.
#include <cublas_v2.h>

#include <string>

#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/gemm.cuh"
#include "engine/cuda/launch.cuh"
#include "engine/cuda/matmul.cuh"

namespace dg::cuda {
namespace {

// ---- the exact kernel: one warp per output row and tile of up to 8 tokens, each weight element
// dequantised exactly (dq_elem), fp32 activations and sums: the CPU oracle's numerics (cpu::matmul)
// up to summation order. `cuda-exact` runs only this; the serving path for shapes the fast kernels lack.
constexpr int kTokenTile = 8, kWarpsPerBlock = 4;

__global__ void matmul_kernel(const float* x, int32_t n, DType type, const uint8_t* w, uint64_t row_bytes, int64_t in,
                              int64_t out, float* y) {
    const int64_t r = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
    const int lane = threadIdx.x % kWarp;
    const int32_t t0 = blockIdx.y * kTokenTile;
    if (r >= out) return;
    const uint8_t* row = w + uint64_t(r) * row_bytes;
    const int tile = min(kTokenTile, n - t0);
    float acc[kTokenTile] = {};
    for (int64_t i = lane; i < in; i += kWarp) {
        const float wi = dq_elem(type, row, i);
        for (int t = 0; t < tile; ++t) acc[t] += wi * x[int64_t(t0 + t) * in + i];
    }
    for (int t = 0; t < tile; ++t) {
        const float v = warp_sum(acc[t]);
        if (lane == 0) y[int64_t(t0 + t) * out + r] = v;
    }
}

}  // namespace

// A device allocation that only grows. Outside the anonymous namespace: Matmul::State (declared in
// matmul.cuh, external linkage) holds these.
struct DevBuf {
    void* p = nullptr;
    int64_t bytes = 0;
    void* need(int64_t b) {
        if (b > bytes) {
            if (p) DG_CUDA_CHECK(cudaFree(p));
            p = nullptr, bytes = 0;
            DG_CUDA_CHECK(cudaMalloc(&p, size_t(b)));
            bytes = b;
            ++buffer_epoch();
        }
        return p;
    }
    ~DevBuf() {
        if (p) cudaFree(p);
    }
};

void matmul_exact(const float* x, int32_t n, const Matrix& W, float* y, cudaStream_t s) {
    if (n <= 0 || W.rows == 0) return;
    dim3 grid(unsigned((W.rows + kWarpsPerBlock - 1) / kWarpsPerBlock), unsigned((n + kTokenTile - 1) / kTokenTile));
    DG_CUDA_CHECK(DG_LAUNCH(matmul_kernel, grid, kWarpsPerBlock * kWarp, 0, s, x, n, W.type, W.data, W.row_bytes, W.cols,
                            W.rows, y));
}

const char* matmul_path_name(MatmulPath p) {
    switch (p) {
        case MatmulPath::kAuto: return "auto";
        case MatmulPath::kExact: return "exact";
        case MatmulPath::kGemv: return "gemv";
        case MatmulPath::kGemm: return "gemm";
    }
    return "?";
}

struct Matmul::State {
    cublasHandle_t cublas = nullptr;  // created at the first GEMM
    DevBuf act_q, act_d, act_s;       // q8 activation blocks of the GEMV
    DevBuf gemm_w, gemm_x;            // bf16 weight tile and activation chunk of the GEMM
    DevBuf cublas_ws;                 // cuBLAS's own workspace (gemm.cuh kCublasWorkspaceBytes)
    int64_t max_tile_rows = 0;        // set_gemm_limits (0: the byte bounds alone)
    int32_t max_chunk_tokens = 0;
    // The GEMV's q8 blocks of n rows of `in` floats (in % 32 == 0), grown on demand.
    ActQ8 act_blocks(int32_t n, int64_t in) {
        const int64_t nb = int64_t(n) * (in / 32);
        return ActQ8{static_cast<int8_t*>(act_q.need(int64_t(n) * in)), static_cast<float*>(act_d.need(nb * 4)),
                     static_cast<int32_t*>(act_s.need(nb * 4))};
    }
    // Created at the first GEMM (or reserve: cublasCreate allocates, so not inside a capture).
    cublasHandle_t handle() {
        if (!cublas) {
            const cublasStatus_t st = cublasCreate(&cublas);
            if (st != CUBLAS_STATUS_SUCCESS) {
                cublas = nullptr;
                throw DeviceError(std::string("cuBLAS Create: ") + cublasGetStatusName(st), cudaErrorUnknown);
            }
            cublas_ws.need(kCublasWorkspaceBytes);
        }
        return cublas;
    }
    ~State() {
        if (cublas) cublasDestroy(cublas);
    }
};

Matmul::Matmul(MatmulPath path) : path_(path), st_(std::make_unique<State>()) {}
Matmul::~Matmul() = default;

int64_t Matmul::workspace_bytes() const {
    return st_->act_q.bytes + st_->act_d.bytes + st_->act_s.bytes + st_->gemm_w.bytes + st_->gemm_x.bytes +
           st_->cublas_ws.bytes;
}

void Matmul::set_gemm_limits(int64_t max_tile_rows, int32_t max_chunk_tokens) {
    st_->max_tile_rows = max_tile_rows;
    st_->max_chunk_tokens = max_chunk_tokens;
}

MatmulPath Matmul::choose(int32_t n, const Matrix& W, const float* x) const {
    if (path_ != MatmulPath::kAuto) return path_;
    if (n >= kGemmMinTokens) return MatmulPath::kGemm;
    return gemv_supports(W, x) ? MatmulPath::kGemv : MatmulPath::kExact;
}

void Matmul::operator()(const float* x, int32_t n, const Matrix& W, float* y, cudaStream_t s) {
    run(choose(n, W, x), x, n, W, y, s);
}

void Matmul::of_one_input(const float* x, int32_t n, std::span<const Matrix> Ws, std::span<float* const> ys,
                          cudaStream_t s, const ActQ8* xq) {
    if (Ws.size() != ys.size())
        throw DeviceError("matmul: of_one_input needs one output per matrix", cudaErrorInvalidValue);
    if (Ws.size() > kOfOneInputMax)
        throw DeviceError("matmul: of_one_input takes at most " + std::to_string(kOfOneInputMax) + " matrices",
                          cudaErrorInvalidValue);
    for (const Matrix& W : Ws)  // checked before anything is enqueued
        if (W.cols != Ws[0].cols)
            throw DeviceError("matmul: of_one_input's matrices differ in width (" + std::to_string(W.cols) + " vs " +
                                  std::to_string(Ws[0].cols) + ")",
                              cudaErrorInvalidValue);
    auto on_gemv = [&](const Matrix& W) { return n > 0 && W.rows > 0 && choose(n, W, x) == MatmulPath::kGemv && gemv_supports(W, x); };
    bool have_q8 = xq != nullptr;  // x's q8 blocks, given or made for the first quantised GEMV
    ActQ8 a = xq ? *xq : ActQ8{};
    uint32_t done = 0;     // bit i: Ws[i] enqueued
    for (size_t i = 0; i < Ws.size(); ++i) {
        if (done >> i & 1u) continue;
        if (!on_gemv(Ws[i])) {
            run(choose(n, Ws[i], x), x, n, Ws[i], ys[i], s);
            done |= 1u << i;
            continue;
        }
        // Ws[i] and the later GEMV matrices of its type: one launch (up to kGemvMaxMatrices of them).
        Matrix group_W[kGemvMaxMatrices];
        float* group_y[kGemvMaxMatrices];
        size_t count = 0;
        for (size_t j = i; j < Ws.size() && count < size_t(kGemvMaxMatrices); ++j)
            if (!(done >> j & 1u) && Ws[j].type == Ws[i].type && on_gemv(Ws[j])) {
                group_W[count] = Ws[j], group_y[count] = ys[j], ++count;
                done |= 1u << j;
            }
        const GemvBatch batch{{group_W, count}, {group_y, count}};
        if (!gemv_quant_type(Ws[i].type)) {
            gemv_float(x, n, batch, s);
            continue;
        }
        if (!have_q8) {
            a = st_->act_blocks(n, Ws[i].cols);
            quantize_act_q8(x, n, Ws[i].cols, a, s);
            have_q8 = true;
        }
        gemv_quant(a, n, batch, s);
    }
}

// What `path` takes for n tokens of W, allocated now: the q8 activation blocks of the quantised GEMV,
// the cuBLAS handle and the bf16 tiles of the GEMM. A call of at most that size then allocates nothing,
// which a CUDA graph capture requires (cudaMalloc and cublasCreate are refused inside one).
void Matmul::reserve(int32_t n, const Matrix& W) {
    if (n <= 0 || W.rows == 0) return;
    MatmulPath path = path_;
    if (path == MatmulPath::kAuto) path = n >= kGemmMinTokens ? MatmulPath::kGemm : MatmulPath::kGemv;
    if (path == MatmulPath::kGemv) {
        if (!gemv_quant_type(W.type) || W.cols % 32 != 0) return;  // no workspace (or the exact kernel)
        st_->act_blocks(n, W.cols);
    } else if (path == MatmulPath::kGemm) {
        st_->handle();
        if (W.type == DType::F32) return;
        st_->gemm_w.need(gemm_tile_rows(W, st_->max_tile_rows) * W.cols * 2);
        st_->gemm_x.need(int64_t(gemm_chunk_tokens(W, n, st_->max_chunk_tokens)) * W.cols * 2);
    }
}

void Matmul::run(MatmulPath path, const float* x, int32_t n, const Matrix& W, float* y, cudaStream_t s) {
    if (n <= 0 || W.rows == 0) return;
    switch (path) {
        case MatmulPath::kAuto: return (*this)(x, n, W, y, s);
        case MatmulPath::kExact: return matmul_exact(x, n, W, y, s);
        case MatmulPath::kGemv: {
            if (!gemv_supports(W, x))
                throw DeviceError(std::string("matmul: the GEMV kernels do not take a ") + dtype_info(W.type).name + " " +
                                      std::to_string(W.rows) + "x" + std::to_string(W.cols) + " matrix (unaligned or odd width)",
                                  cudaErrorInvalidValue);
            if (!gemv_quant_type(W.type)) return gemv_float(x, n, W, y, s);
            const ActQ8 a = st_->act_blocks(n, W.cols);
            quantize_act_q8(x, n, W.cols, a, s);
            return gemv_quant(a, n, W, y, s);
        }
        case MatmulPath::kGemm: {
            st_->handle();
            const int64_t tile = gemm_tile_rows(W, st_->max_tile_rows);
            const int32_t chunk = gemm_chunk_tokens(W, n, st_->max_chunk_tokens);
            const bool f32 = W.type == DType::F32;
            void* w_ws = f32 ? nullptr : st_->gemm_w.need(tile * W.cols * 2);
            void* x_ws = f32 ? nullptr : st_->gemm_x.need(int64_t(chunk) * W.cols * 2);
            return gemm(st_->cublas, CublasWorkspace{st_->cublas_ws.p, st_->cublas_ws.bytes}, x, n, W, y, tile, chunk,
                        w_ws, x_ws, s);
        }
    }
}

}  // namespace dg::cuda
