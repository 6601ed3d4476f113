// Q4_K matrices repacked for decode: 16 rows interleaved per super-block, so that one 512-bit register
// holds 4 quant bytes of each of 16 rows and every int32 lane of a vpdpbusd belongs to one row.
//
// Why: the GGUF layout dots one row at a time (quant_dot_x86.inc's qks_t). A 1,024-element row is 4
// super-blocks, and per super-block the row pays for its scale unpacking, float conversion and a final
// horizontal sum: about 50 instructions per 144 bytes, which held q4_k_m decode at ~43 GB/s on two cores
// where the read loop does 70-87 (docs/PERFORMANCE.md, issue 12 ninth part). Here the activations are
// broadcast (4 bytes for all 16 rows), the scales of 16 rows are unpacked by one register op each, and no
// horizontal sum is left: ~20 instructions per row and super-block, and one linear stream per thread
// (interleaving rows of the GGUF layout would give 16 short streams, which the prefetcher does not
// follow: a 4-row kernel over GGUF rows read 16 GB/s, PERFORMANCE.md eighth part).
//
// The packed bytes are a permutation of the GGUF bytes (the 12 packed scale bytes of a row's super-block
// hold 16 six-bit values, and so do its 12 bytes here), so the matrix keeps its size and every row can be
// put back exactly (plain_row). Activations: kBlock32 (a scale per 32 elements, quant_dot.h).
//
// Layout. Group g (rows 16g .. 16g + 15) takes the bytes the 16 rows had, [16g x row_bytes, ...), and
// holds their super-blocks in order, 2,304 bytes (16 x 144) each:
//   0     d[16]     f16, row r at 2r
//   32    dmin[16]  f16
//   64    sc[8][16] byte 16j + r: scale_j of row r (6 bits) | (min_j of row r & 3) << 6
//   192   mh[64]    min_j of row r >> 2, index i = 16j + r: low nibble of byte i (i < 64), high nibble of
//                   byte i - 64 (i >= 64)
//   256   qs[4][8][64]  pair c (sub-blocks 2c, 2c + 1), quad k: row r's GGUF quant bytes 32c + 4k .. + 3 at
//                   byte 4r (low nibbles: elements 64c + 4k .. + 3; high nibbles: 64c + 32 + 4k .. + 3)
#pragma once

#include <cstdint>

#include "engine/cpu/quant_dot.h"
#include "engine/weights.h"

namespace dg::cpu {

constexpr int kQ4kGroupRows = 16;
constexpr int64_t kQ4kGroupBlockBytes = 16 * 144;
// Where the parts of a packed super-block start (the layout above).
constexpr int kQ4kOffD = 0, kQ4kOffDmin = 32, kQ4kOffSc = 64, kQ4kOffMh = 192, kQ4kOffQs = 256;
// The 6-bit scale and min of sub-block j of row r (of 16) in a packed super-block.
inline void q4k_rows16_scale_min(const uint8_t* blk, int j, int r, uint8_t* sc, uint8_t* mn) {
    const int i = 16 * j + r;
    const uint8_t v = blk[kQ4kOffSc + i];
    *sc = v & 63;
    *mn = uint8_t((v >> 6) | (((blk[kQ4kOffMh + i % 64] >> (i < 64 ? 0 : 4)) & 15) << 2));
}

// Whether m can be packed: Q4_K, rows a multiple of 16, whole super-blocks, plain layout, and a CPU with
// the kernel (AVX-512 VNNI).
bool can_pack_q4k_rows16(const Matrix& m);
// Repacks m's bytes in place (they must be writable) and marks it Packing::kQ4kRows16.
void pack_q4k_rows16(Matrix& m, uint8_t* writable_data);
// Packs every matrix of w that can be packed and whose bytes no matrix of another shape overlaps (a tied
// output head and its embedding table, the same bytes, are packed once and both marked). The matrices'
// bytes must be writable: the serving backend's copy in 2 MiB pages (huge_page_weights.h), before it is
// made read-only. Returns the bytes packed.
uint64_t pack_q4k_matrices(ModelWeights& w);
// Row r in its GGUF bytes: m.row(r) for a plain matrix; for a packed one, put back into scratch
// (m.row_bytes bytes) and returned. Every reader of a matrix row that may be packed goes through this.
const uint8_t* plain_row(const Matrix& m, int64_t r, uint8_t* scratch);

// out[r] = dot(row 16g + r, x) for r < 16, from the group's packed bytes; n elements (a multiple of 256).
using Q4kRows16DotFn = void (*)(const uint8_t* group, int64_t n, const Q8Row& x, float* out16);
// The AVX-512 VNNI kernel, or nullptr on a CPU without it.
Q4kRows16DotFn q4k_rows16_dot_kernel();
// The definition (tests): per sub-block, d x scale x d_x x (integer dot) - dmin x min x d_x x s, in float,
// summed over sub-blocks in order.
void q4k_rows16_dot_scalar(const uint8_t* group, int64_t n, const Q8Row& x, float* out16);

}  // namespace dg::cpu
