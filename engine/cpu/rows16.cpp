// Which matrices are packed by 16 rows, the packing pass over a model, and rows put back (rows16.h).
// The per-type layouts and kernels: rows16_q4k.cpp, rows16_q6k.cpp, rows16_q8_0.cpp, rows16_bf16.cpp.
#include "engine/cpu/rows16.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/cpu/parallel.h"

namespace dg::cpu {
namespace {

const Rows16Format* format_of(DType t) {
    switch (t) {
        case DType::Q4_K: return &rows16_q4k();
        case DType::Q6_K: return &rows16_q6k();
        case DType::Q8_0: return &rows16_q8_0();
        case DType::BF16: return &rows16_bf16();
        default: return nullptr;
    }
}

}  // namespace

bool can_pack_rows16(const Matrix& m) {
    const Rows16Format* f = format_of(m.type);
    return f && (f->vnni || f->bf16) && m.packing == Packing::kRows && m.rows % kRows16 == 0 && m.cols % f->block_elems == 0 &&
           m.row_bytes == uint64_t(m.cols / f->block_elems * f->row_block_bytes);
}

void pack_rows16(Matrix& m, uint8_t* data) {
    const Rows16Format& f = *format_of(m.type);
    const int64_t blocks = m.cols / f.block_elems, group_bytes = kRows16 * int64_t(m.row_bytes);
    // Groups are independent: over the pool (a 27B file packs ~16 GB at load).
    parallel_for(m.rows / kRows16, [&](int64_t g0, int64_t g1) {
        std::vector<uint8_t> packed(static_cast<size_t>(group_bytes));
        for (int64_t g = g0; g < g1; ++g) {
            uint8_t* group = data + g * group_bytes;
            for (int64_t b = 0; b < blocks; ++b) {
                const uint8_t* rows[kRows16];
                for (int r = 0; r < kRows16; ++r) rows[r] = group + r * int64_t(m.row_bytes) + b * f.row_block_bytes;
                f.pack_block(rows, packed.data() + b * kRows16 * f.row_block_bytes);
            }
            std::memcpy(group, packed.data(), size_t(group_bytes));
        }
    });
    m.data = data;
    m.packing = Packing::kRows16;
}

uint64_t pack_rows16_matrices(ModelWeights& w) {
    struct Ref {
        const uint8_t* begin;
        const uint8_t* end;
        Matrix* m;
    };
    std::vector<Ref> refs;
    w.for_each_matrix([&](Matrix& m) { refs.push_back({m.data, m.data + uint64_t(m.rows) * m.row_bytes, &m}); });
    std::sort(refs.begin(), refs.end(),
              [](const Ref& a, const Ref& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
    uint64_t packed = 0;
    uintptr_t max_end_before = 0;  // of the ranges before the current one
    for (size_t i = 0; i < refs.size();) {
        size_t k = i;  // [i, k): the matrices on exactly these bytes
        while (k < refs.size() && refs[k].begin == refs[i].begin && refs[k].end == refs[i].end) ++k;
        const bool alone = max_end_before <= uintptr_t(refs[i].begin) && (k == refs.size() || refs[k].begin >= refs[i].end);
        bool same_shape = true;
        for (size_t j = i + 1; j < k; ++j) {
            const Matrix &a = *refs[i].m, &b = *refs[j].m;
            same_shape = same_shape && a.type == b.type && a.rows == b.rows && a.cols == b.cols && a.row_bytes == b.row_bytes;
        }
        if (alone && same_shape && can_pack_rows16(*refs[i].m)) {
            pack_rows16(*refs[i].m, const_cast<uint8_t*>(refs[i].begin));
            for (size_t j = i + 1; j < k; ++j) refs[j].m->packing = Packing::kRows16;
            packed += uint64_t(refs[i].end - refs[i].begin);
        }
        for (size_t j = i; j < k; ++j) max_end_before = std::max(max_end_before, uintptr_t(refs[j].end));
        i = k;
    }
    return packed;
}

const uint8_t* plain_row(const Matrix& m, int64_t r, uint8_t* scratch) {
    if (m.packing == Packing::kRows) return m.row(r);
    const Rows16Format& f = *format_of(m.type);
    const uint8_t* group = m.data + (r / kRows16) * kRows16 * int64_t(m.row_bytes);
    for (int64_t b = 0; b < m.cols / f.block_elems; ++b)
        f.unpack_block(group + b * kRows16 * f.row_block_bytes, int(r % kRows16), scratch + b * f.row_block_bytes);
    return scratch;
}

Rows16DotFn rows16_dot_kernel(DType t) {
    const Rows16Format* f = format_of(t);
    return f ? f->vnni : nullptr;
}

Rows16Bf16DotFn rows16_bf16_dot_kernel() { return rows16_bf16().bf16; }

void rows16_dot_scalar(DType t, const uint8_t* group, int64_t n, const Q8Row& x, float* out16) {
    const Rows16Format& f = *format_of(t);
    const Matrix m{t, kRows16, n, group, uint64_t(n / f.block_elems * f.row_block_bytes), Packing::kRows16};
    const QuantDotFn dot = quant_dot_kernel(t, QuantIsa::kScalar, ActFormat::kBlock32);
    std::vector<uint8_t> row(m.row_bytes);
    for (int r = 0; r < kRows16; ++r) out16[r] = dot(plain_row(m, r, row.data()), x, n);
}

}  // namespace dg::cpu
