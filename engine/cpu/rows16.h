// Matrices repacked for decode: 16 rows interleaved per block, so that one 512-bit register holds 4 bytes
// of each of 16 rows and every 32-bit lane of a vpdpbusd (or, for bf16, a vdpbf16ps) belongs to one row.
// Q4_K (rows16_q4k.cpp), Q6_K (rows16_q6k.cpp), Q8_0 (rows16_q8_0.cpp) and BF16 (rows16_bf16.cpp): the
// weight types of q4_k_m (whose output head and some ffn_down are Q6_K), q8_0 and bf16 files.
//
// Why: the GGUF layout dots one row at a time (quant_dot_x86.inc). A 1,024-element row is 4 Q4_K
// super-blocks or 32 Q8_0 blocks, and the row pays for its scale unpacking, float conversions and a final
// horizontal sum: about 50 instructions per 144 Q4_K bytes, which held q4_k_m decode at ~43 GB/s on two
// cores where the read loop does 70-87 (docs/PERFORMANCE.md, issue 12 ninth part). Here the activations
// are broadcast (4 bytes for all 16 rows), the scales of 16 rows are unpacked by one register op each, and
// no horizontal sum is left, and each thread reads one linear stream (interleaving rows of the GGUF layout
// would give 16 short streams, which the hardware prefetcher does not follow: a 4-row kernel over GGUF rows
// read 16 GB/s, PERFORMANCE.md eighth part). The Q4_K and Q6_K kernels prefetch that stream in software as
// well; the Q8_0 kernel, which consumes bytes about twice as fast, reads faster without (PERFORMANCE.md,
// tenth part).
//
// The packed bytes are a bijection of the GGUF bytes of the same size, so every row can be put back
// exactly (plain_row): the GEMM, the oracle and the embedding lookup read packed matrices that way.
// Activations: kBlock32 (a scale per 32 elements, quant_dot.h); for BF16, the activations rounded to bf16
// (gemm.h's to_bf16), as the 8-row bf16 kernel of the file layout takes them (float_dot.h). A bf16 matrix
// read as 8-row blocks of the file layout was 8 interleaved streams: 55-60 GB/s on two cores where the
// packed one reads 63-70 (PERFORMANCE.md, tenth part).
//
// Group g (rows 16g .. 16g + 15) takes the bytes the 16 rows had, [16g x row_bytes, ...), and holds
// their blocks in column order, 16 x (the type's block bytes) each.
//
// Q4_K, 2,304 bytes per super-block:
//   0     d[16]     f16, row r at 2r
//   32    dmin[16]  f16
//   64    sc[8][16] byte 16j + r: scale_j of row r (6 bits) | (min_j of row r & 3) << 6
//   192   mh[64]    min_j of row r >> 2, index i = 16j + r: low nibble of byte i (i < 64), high nibble of
//                   byte i - 64 (i >= 64)
//   256   qs[4][8][64]  pair c (sub-blocks 2c, 2c + 1), quad k: row r's GGUF quant bytes 32c + 4k .. + 3 at
//                   byte 4r (low nibbles: elements 64c + 4k .. + 3; high nibbles: 64c + 32 + 4k .. + 3)
// Q6_K, 3,360 bytes per super-block (the quant registers first, so that half the blocks read them from
// whole cache lines):
//   0     ql[32][64]  quad k: row r's GGUF ql bytes 4k .. 4k + 3 at byte 4r
//   2048  qh[16][64]  quad k: row r's GGUF qh bytes 4k .. 4k + 3 at byte 4r
//   3072  sc[16][16]  byte 16j + r: int8 scale of sub-block j (elements 16j .. 16j + 15) of row r
//   3328  d[16]       f16
//   The kernel takes the format's offset (q - 32) off with the activations' sums per 16 (Q8Row::s16).
// Q8_0, 544 bytes per block of 32:
//   0     d[16]     f16
//   32    qs[8][64] quad k: row r's quants 4k .. 4k + 3 at byte 4r, each XOR 0x80 (q + 128, the unsigned
//                   operand of vpdpbusd; the kernel takes 128 x the activations' block sum off)
// BF16, 1,024 bytes per block of 32:
//   0     v[16][64] pair p: row r's elements 2p, 2p + 1 at byte 4r. Over the whole group, row r's pair k
//                   (elements 2k, 2k + 1) lies at 64k + 4r: one stride for every pair, which the bf16 GEMM
//                   reads in place.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "engine/cpu/quant_dot.h"
#include "engine/weights.h"

namespace dg::cpu {

constexpr int kRows16 = 16;

// Whether m can be packed: Q4_K, Q6_K, Q8_0 or BF16, rows a multiple of 16, whole blocks (K-quants: 256 elements;
// Q8_0 and BF16: 32), plain layout, and a CPU with the type's kernel (AVX-512 VNNI; AVX512_BF16).
bool can_pack_rows16(const Matrix& m);
// Repacks m's bytes in place (they must be writable) and marks it Packing::kRows16.
void pack_rows16(Matrix& m, uint8_t* writable_data);
// Packs every matrix of w that can be packed and whose bytes no matrix of another shape overlaps (a tied
// output head and its embedding table, the same bytes, are packed once and both marked). The matrices'
// bytes must be writable: the serving backend's copy in 2 MiB pages (huge_page_weights.h), before it is
// made read-only. Returns the bytes packed.
uint64_t pack_rows16_matrices(ModelWeights& w);
// Row r in its GGUF bytes: m.row(r) for a plain matrix; for a packed one, put back into scratch
// (m.row_bytes bytes) and returned. Every reader of a matrix row that may be packed goes through this.
const uint8_t* plain_row(const Matrix& m, int64_t r, uint8_t* scratch);

// out16[r] = dot(row 16g + r, x) for r < 16, from group g's packed bytes; n elements.
using Rows16DotFn = void (*)(const uint8_t* group, int64_t n, const Q8Row& x, float* out16);
// The AVX-512 VNNI kernel for a packed matrix of type t (Q4_K, Q6_K, Q8_0), or nullptr (a CPU without it,
// another type). x: kBlock32 activations; Q6_K's kernel also reads x.s16.
Rows16DotFn rows16_dot_kernel(DType t);
// The reference (tests): each row put back (plain_row) and dotted by its type's scalar kBlock32 kernel
// (quant_dot.h), the definition of the per-row dots.
void rows16_dot_scalar(DType t, const uint8_t* group, int64_t n, const Q8Row& x, float* out16);
// The same for a packed BF16 matrix: out16[r] = dot(row 16g + r, xb), xb n bf16 values; nullptr on a CPU
// without AVX512_BF16. Each lane adds its row's products in its own order: the result differs from the
// 8-row kernel's by rounding only.
using Rows16Bf16DotFn = void (*)(const uint8_t* group, int64_t n, const uint16_t* xb, float* out16);
Rows16Bf16DotFn rows16_bf16_dot_kernel();

// One type's packing: a block of 16 rows (pack_block reads each row's GGUF block at rows[r]) and back.
struct Rows16Format {
    int64_t block_elems;      // elements per block (a column of the group)
    int64_t row_block_bytes;  // one row's GGUF bytes per block; the packed block is 16 times that
    void (*pack_block)(const uint8_t* const* rows, uint8_t* out);
    void (*unpack_block)(const uint8_t* packed, int r, uint8_t* out);
    Rows16DotFn vnni;      // quantised types; nullptr on a CPU without AVX-512 VNNI
    Rows16Bf16DotFn bf16;  // BF16; nullptr on a CPU without AVX512_BF16
};
const Rows16Format& rows16_q4k();
const Rows16Format& rows16_q6k();
const Rows16Format& rows16_q8_0();
const Rows16Format& rows16_bf16();

// Where the parts of a packed block start (the layouts above).
constexpr int64_t kQ4kRows16Block = 16 * 144, kQ6kRows16Block = 16 * 210, kQ8Rows16Block = 16 * 34,
                  kBf16Rows16Block = 16 * 64;
constexpr int kQ6kOffQl = 0, kQ6kOffQh = 2048, kQ6kOffSc = 3072, kQ6kOffD = 3328;
constexpr int kQ4kOffD = 0, kQ4kOffDmin = 32, kQ4kOffSc = 64, kQ4kOffMh = 192, kQ4kOffQs = 256;
constexpr int kQ8OffD = 0, kQ8OffQs = 32;
// The Q4_K and Q6_K kernels prefetch their stream two blocks ahead, a block (bytes) at a time.
inline void prefetch_rows16_block(const uint8_t* p, int64_t bytes) {
    for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + o), _MM_HINT_T0);
}
// The 6-bit scale and min of sub-block j of row r (of 16) in a packed Q4_K super-block.
inline void q4k_rows16_scale_min(const uint8_t* blk, int j, int r, uint8_t* sc, uint8_t* mn) {
    const int i = 16 * j + r;
    const uint8_t v = blk[kQ4kOffSc + i];
    *sc = v & 63;
    *mn = uint8_t((v >> 6) | (((blk[kQ4kOffMh + i % 64] >> (i < 64 ? 0 : 4)) & 15) << 2));
}

}  // namespace dg::cpu
