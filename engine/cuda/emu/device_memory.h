// Device memory of the CUDA emulation: each cudaMalloc is its own mapping with a PROT_NONE page on
// both sides, the allocation's end placed against the trailing guard page (after padding to CUDA's
// 256-byte alignment). The padding and the space before the start are red zones: a known byte pattern
// checked after every kernel and copy, so small overruns are reported with the kernel that made them;
// larger ones fault on a guard page. New memory is filled with 0xFF bytes (NaN as f32/f16/bf16, -1 as
// an int) so reads of memory nothing wrote show up in the results.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dg::emu {

struct AllocInfo {
    uintptr_t begin = 0;
    size_t bytes = 0;
};

// nullptr when the emulated device is full (its size: emu.h device_memory_bytes).
void* device_alloc(size_t bytes);
// false when p is not the start of a live allocation.
bool device_free(void* p);
// The allocation holding [p, p + bytes), if any.
bool find_allocation(const void* p, size_t bytes, AllocInfo* out);
bool is_device_pointer(const void* p);
int64_t device_bytes_in_use();
// Checks every live allocation's red zones; returns a description of the first corruption ("" if none)
// and restores the pattern so one overrun is reported once.
std::string check_red_zones();
// Describes an address relative to the nearest allocation (for fault reports).
std::string describe_address(uintptr_t a);

}  // namespace dg::emu
