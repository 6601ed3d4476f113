// Moves a model's matrices into one anonymous mapping that the kernel backs with 2 MiB pages (transparent
// huge pages, MADV_HUGEPAGE): the serving CPU backend's place_weights.
//
// Why: a decode step streams every weight once, so the matmuls run at the rate one core's loads can pull
// memory in. On the 2-core development VM, a bf16 dot over the 0.8B model's 1.5 GB read 56-70 GB/s from
// 2 MiB pages against 46-51 GB/s from 4 KiB pages (the file's page cache or a plain anonymous copy): with
// 4 KiB pages the stream takes a TLB miss every 4 KiB, and under a hypervisor each miss is a two-level
// page walk. Measurements: docs/PERFORMANCE.md (issue 12, fifth part).
//
// The bytes are copied unchanged, so every op's result is too; pack_rows16 then repacks Q4_K, Q8_0 and BF16
// matrices for the decode kernels (rows16.h: the decode dots round differently, the rows read back
// exactly). Matrices that share bytes (a tied output head) or overlap or touch (slices of one tensor)
// still do after the move. The loader's buffers (the file
// mapping, transformed copies) are released, so the weights are held once. The mapping is read-only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/weights.h"

namespace dg::cpu {

struct HugePagePlacement {
    uint64_t bytes = 0;       // matrix bytes moved (shared bytes once)
    uint64_t huge_bytes = 0;  // of those, backed by 2 MiB pages right after the copy (/proc/self/smaps)
    std::string thp_mode;     // the system's transparent huge page mode: always, madvise, never (none then)
    uint64_t packed_bytes = 0;  // of those, matrices packed by 16 rows (rows16.h)
};

// Moves every matrix of `w` (for_each_matrix) and repoints it. Fails only when the memory cannot be
// mapped; a system without transparent huge pages gets the copy in 4 KiB pages (huge_bytes 0).
// pack_rows16: also pack the Q4_K, Q8_0 and BF16 matrices for the decode kernels (pack_rows16_matrices), in the copy.
absl::StatusOr<HugePagePlacement> move_matrices_to_huge_pages(ModelWeights& w, bool pack_rows16 = false);

// A zeroed anonymous mapping of `bytes` rounded up to 2 MiB, starting on a 2 MiB boundary and advised
// MADV_HUGEPAGE before its first touch; unmapped when the last pointer goes. The benchmarks' bandwidth
// loops read such a buffer, so their bound is the one the weights see.
absl::StatusOr<std::shared_ptr<uint8_t>> map_huge_pages(uint64_t bytes);

// Bytes of the mapping that starts exactly at `start` backed by huge pages (its AnonHugePages line in
// /proc/self/smaps); 0 when no mapping starts there or the file cannot be read.
uint64_t anon_huge_bytes(const void* start);

// "1.51 GB of weights in 2 MiB pages (THP madvise)", for logs and the backend's device name.
std::string describe(const HugePagePlacement& p);

}  // namespace dg::cpu
