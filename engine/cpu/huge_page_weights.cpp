#include "engine/cpu/huge_page_weights.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/cpu/rows16.h"
#include "engine/status.h"

namespace dg::cpu {
namespace {

constexpr uint64_t kHugePage = uint64_t(2) << 20;
// Each run of bytes starts on its own 4 KiB page of the new mapping: rows keep at least the alignment
// they had in the file (GGUF aligns tensors to 32 bytes).
constexpr uint64_t kRunAlign = 4096;

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// A maximal run of matrix bytes: matrices whose bytes overlap or touch share one run, so they keep their
// relative places (and sharing).
struct Run {
    const uint8_t* begin;
    const uint8_t* end;
    uint64_t offset = 0;  // where it starts in the new mapping
};

std::string thp_mode() {
    std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string line;
    std::getline(f, line);
    const size_t a = line.find('['), b = line.find(']');
    return a != std::string::npos && b != std::string::npos && b > a ? line.substr(a + 1, b - a - 1) : "unavailable";
}

}  // namespace

uint64_t anon_huge_bytes(const void* start) {
    std::ifstream f("/proc/self/smaps");
    std::string line;
    bool ours = false;
    while (std::getline(f, line)) {
        // A mapping's header starts "begin-end perms ..." in hex; its fields are "Name: value kB".
        char* end = nullptr;
        const unsigned long long begin = std::strtoull(line.c_str(), &end, 16);
        if (end != line.c_str() && *end == '-') {
            ours = begin == uintptr_t(start);
            continue;
        }
        if (ours && line.rfind("AnonHugePages:", 0) == 0) return std::strtoull(line.c_str() + 14, nullptr, 10) * 1024;
    }
    return 0;
}

absl::StatusOr<std::shared_ptr<uint8_t>> map_huge_pages(uint64_t bytes) {
    const uint64_t size = align_up(std::max<uint64_t>(bytes, 1), kHugePage);
    // Over-map by one huge page and trim, so the mapping starts on a 2 MiB boundary (the kernel only backs
    // aligned 2 MiB ranges with huge pages).
    void* raw = ::mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return absl::ResourceExhaustedError(absl::StrCat("cpu: cannot map ", size, " bytes: ", std::strerror(errno)));
    uint8_t* base = reinterpret_cast<uint8_t*>(align_up(uintptr_t(raw), kHugePage));
    if (base != raw) ::munmap(raw, uint64_t(base - static_cast<uint8_t*>(raw)));
    const uint64_t tail = uint64_t(static_cast<uint8_t*>(raw) + size + kHugePage - (base + size));
    if (tail) ::munmap(base + size, tail);
    // Before the first touch: pages faulted in afterwards are 2 MiB ones. EINVAL (a kernel without THP)
    // leaves 4 KiB pages, which anon_huge_bytes shows.
    ::madvise(base, size, MADV_HUGEPAGE);
    return std::shared_ptr<uint8_t>(base, [size](uint8_t* p) { ::munmap(p, size); });
}

absl::StatusOr<HugePagePlacement> move_matrices_to_huge_pages(ModelWeights& w, bool pack_rows16) {
    HugePagePlacement out;
    out.thp_mode = thp_mode();
    std::vector<Run> runs;
    w.for_each_matrix([&](Matrix& m) { runs.push_back({m.data, m.data + uint64_t(m.rows) * m.row_bytes}); });
    if (runs.empty()) return out;
    std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.begin < b.begin; });
    std::vector<Run> merged{runs.front()};
    for (const Run& r : runs) {
        // Touching runs merge too: one tensor's expert slices stay contiguous, as in the file.
        if (r.begin <= merged.back().end) merged.back().end = std::max(merged.back().end, r.end);
        else merged.push_back(r);
    }
    uint64_t size = 0;
    for (Run& r : merged) {
        r.offset = align_up(size, kRunAlign);
        size = r.offset + uint64_t(r.end - r.begin);
        out.bytes += uint64_t(r.end - r.begin);
    }

    DG_ASSIGN_OR_RETURN(std::shared_ptr<uint8_t> mapping, map_huge_pages(size));
    uint8_t* base = mapping.get();
    for (const Run& r : merged) std::memcpy(base + r.offset, r.begin, uint64_t(r.end - r.begin));
    w.for_each_matrix([&](Matrix& m) {
        // The run holding m: the last one that begins at or before it.
        auto it = std::upper_bound(merged.begin(), merged.end(), m.data,
                                   [](const uint8_t* p, const Run& r) { return p < r.begin; });
        --it;
        m.data = base + it->offset + uint64_t(m.data - it->begin);
    });
    if (pack_rows16) out.packed_bytes = pack_rows16_matrices(w);
    // A stray write faults, as it did on the read-only file mapping. The whole mapping, so it stays one.
    ::mprotect(base, align_up(size, kHugePage), PROT_READ);
    out.huge_bytes = std::min(anon_huge_bytes(base), out.bytes);

    w.owned.clear();
    w.keep_alive.clear();
    w.keep_alive.push_back(std::move(mapping));
    return out;
}

std::string describe(const HugePagePlacement& p) {
    const double gb = 1e-9;
    const std::string packed =
        p.packed_bytes ? absl::StrFormat(", %.2f GB of them packed by 16 rows", p.packed_bytes * gb) : "";
    if (p.huge_bytes >= p.bytes)
        return absl::StrFormat("%.2f GB of weights in 2 MiB pages (THP %s)%s", p.bytes * gb, p.thp_mode, packed);
    return absl::StrFormat("%.2f GB of weights, %.2f GB of them in 2 MiB pages (THP %s)%s", p.bytes * gb,
                           p.huge_bytes * gb, p.thp_mode, packed);
}

}  // namespace dg::cpu
