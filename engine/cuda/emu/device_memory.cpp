#include "engine/cuda/emu/device_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include "engine/cuda/emu/emu.h"

namespace dg::emu {
namespace {

constexpr uint8_t kRed = 0xA5;
constexpr size_t kAlign = 256;

struct Mapping {
    void* base;         // start of the mapping (leading guard page)
    size_t map_bytes;   // whole mapping
    uintptr_t lead;     // first byte after the leading guard page (red zone from here to begin)
    size_t bytes;       // the user's size
    size_t padded;      // bytes rounded up to kAlign; (begin + bytes, begin + padded) is red
};

std::mutex mu;
std::map<uintptr_t, Mapping>& allocs() {
    static auto* m = new std::map<uintptr_t, Mapping>();
    return *m;
}
int64_t in_use = 0;
size_t page() { return size_t(sysconf(_SC_PAGESIZE)); }

bool red_ok(const uint8_t* p, size_t n, size_t* bad) {
    for (size_t i = 0; i < n; ++i)
        if (p[i] != kRed) {
            *bad = i;
            return false;
        }
    return true;
}

}  // namespace

void* device_alloc(size_t bytes) {
    if (bytes == 0) return nullptr;
    const size_t padded = (bytes + kAlign - 1) / kAlign * kAlign;
    const size_t pg = page();
    const size_t data_pages = (padded + kAlign + pg - 1) / pg * pg;  // at least kAlign of leading red zone
    std::lock_guard<std::mutex> l(mu);
    if (in_use + int64_t(padded) > device_memory_bytes()) return nullptr;
    void* base = mmap(nullptr, data_pages + 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
    if (base == MAP_FAILED) return nullptr;
    auto* b = static_cast<uint8_t*>(base);
    mprotect(b, pg, PROT_NONE);
    mprotect(b + pg + data_pages, pg, PROT_NONE);
    const uintptr_t lead = uintptr_t(b + pg);
    const uintptr_t begin = lead + data_pages - padded;
    std::memset(reinterpret_cast<void*>(lead), kRed, begin - lead);
    std::memset(reinterpret_cast<void*>(begin), 0xFF, bytes);
    std::memset(reinterpret_cast<void*>(begin + bytes), kRed, padded - bytes);
    allocs()[begin] = Mapping{base, data_pages + 2 * pg, lead, bytes, padded};
    in_use += int64_t(padded);
    return reinterpret_cast<void*>(begin);
}

bool device_free(void* p) {
    std::lock_guard<std::mutex> l(mu);
    auto it = allocs().find(uintptr_t(p));
    if (it == allocs().end()) return false;
    in_use -= int64_t(it->second.padded);
    munmap(it->second.base, it->second.map_bytes);
    allocs().erase(it);
    return true;
}

bool find_allocation(const void* p, size_t bytes, AllocInfo* out) {
    const uintptr_t a = uintptr_t(p);
    std::lock_guard<std::mutex> l(mu);
    auto it = allocs().upper_bound(a);
    if (it == allocs().begin()) return false;
    --it;
    if (a < it->first || a + bytes > it->first + it->second.bytes) return false;
    if (out) *out = AllocInfo{it->first, it->second.bytes};
    return true;
}

bool is_device_pointer(const void* p) { return find_allocation(p, 0, nullptr) || find_allocation(p, 1, nullptr); }

int64_t device_bytes_in_use() {
    std::lock_guard<std::mutex> l(mu);
    return in_use;
}

std::string check_red_zones() {
    std::lock_guard<std::mutex> l(mu);
    for (auto& [begin, m] : allocs()) {
        size_t bad = 0;
        auto* lead = reinterpret_cast<uint8_t*>(m.lead);
        if (!red_ok(lead, begin - m.lead, &bad)) {
            char buf[200];
            std::snprintf(buf, sizeof buf, "a write %zu bytes before the start of the %zu-byte allocation at %p",
                          size_t(begin - m.lead - bad), m.bytes, reinterpret_cast<void*>(begin));
            std::memset(lead, kRed, begin - m.lead);
            return buf;
        }
        auto* tail = reinterpret_cast<uint8_t*>(begin + m.bytes);
        if (!red_ok(tail, m.padded - m.bytes, &bad)) {
            char buf[200];
            std::snprintf(buf, sizeof buf, "a write at byte %zu after the end of the %zu-byte allocation at %p", bad,
                          m.bytes, reinterpret_cast<void*>(begin));
            std::memset(tail, kRed, m.padded - m.bytes);
            return buf;
        }
    }
    return "";
}

std::string describe_address(uintptr_t a) {
    std::unique_lock<std::mutex> l(mu, std::try_to_lock);  // may be called from a fault handler
    if (!l.owns_lock()) return "";
    for (auto& [begin, m] : allocs()) {
        const uintptr_t lo = uintptr_t(m.base), hi = lo + m.map_bytes;
        if (a < lo || a >= hi) continue;
        char buf[200];
        if (a >= begin)
            std::snprintf(buf, sizeof buf, "%zu bytes past the end of the %zu-byte device allocation at %p",
                          size_t(a - begin - m.bytes), m.bytes, reinterpret_cast<void*>(begin));
        else
            std::snprintf(buf, sizeof buf, "%zu bytes before the %zu-byte device allocation at %p", size_t(begin - a),
                          m.bytes, reinterpret_cast<void*>(begin));
        return buf;
    }
    return "";
}

}  // namespace dg::emu
