// Shared by the fuzz targets: reads a parsed tensor the way a loader would, so the sanitizers see every
// byte a parser claims is in range.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/formats/dtype.h"

namespace dg::fuzz {

inline void touch_bytes(const uint8_t* p, uint64_t n) {
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; ++i) sum += p[i];
    volatile uint64_t sink = sum;
    (void)sink;
}

// Dequantises and dots the first row (ne0 elements) when the tensor holds one; rows are capped so a
// tiny input cannot ask for a huge buffer.
inline void touch_first_row(DType t, const uint8_t* data, uint64_t nbytes, int64_t ne0) {
    auto rb = row_bytes(t, ne0);
    if (!rb.ok() || *rb > nbytes || ne0 <= 0 || ne0 > (1 << 20)) return;
    std::vector<float> row(static_cast<size_t>(ne0)), x(static_cast<size_t>(ne0), 1.0f);
    dequantize_row(t, data, row.data(), ne0);
    volatile float sink = dot_row(t, data, x.data(), ne0);
    (void)sink;
}

}  // namespace dg::fuzz
