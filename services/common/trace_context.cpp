#include "services/common/trace_context.h"

#include <random>

namespace dg::trace {
namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

template <size_t N>
bool parse_hex(std::string_view s, std::array<uint8_t, N>& out) {
    if (s.size() != 2 * N) return false;
    bool nonzero = false;
    for (size_t i = 0; i < N; ++i) {
        const int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = uint8_t(hi * 16 + lo);
        nonzero |= out[i] != 0;
    }
    return nonzero;  // all-zero ids are invalid
}

std::mt19937_64& rng() {
    thread_local std::mt19937_64 gen([] {
        std::random_device rd;
        return (uint64_t(rd()) << 32) ^ rd();
    }());
    return gen;
}

template <size_t N>
std::array<uint8_t, N> random_id() {
    std::array<uint8_t, N> id{};
    do {
        for (size_t i = 0; i < N; i += 8) {
            const uint64_t v = rng()();
            for (size_t j = 0; j < 8 && i + j < N; ++j) id[i + j] = uint8_t(v >> (8 * j));
        }
    } while (id == std::array<uint8_t, N>{});
    return id;
}

}  // namespace

bool TraceContext::valid() const { return trace_id != TraceId{} && span_id != SpanId{}; }

std::optional<TraceContext> parse_traceparent(std::string_view h) {
    // version(2) - trace(32) - parent(16) - flags(2) = 55 characters; later versions may append "-...".
    if (h.size() < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-') return std::nullopt;
    std::array<uint8_t, 1> version{}, flags{};
    const std::string_view v = h.substr(0, 2);
    if (hex_value(v[0]) < 0 || hex_value(v[1]) < 0 || v == "ff") return std::nullopt;
    version[0] = uint8_t(hex_value(v[0]) * 16 + hex_value(v[1]));
    if (version[0] == 0 && h.size() != 55) return std::nullopt;
    if (version[0] != 0 && h.size() > 55 && h[55] != '-') return std::nullopt;
    TraceContext ctx;
    if (!parse_hex(h.substr(3, 32), ctx.trace_id) || !parse_hex(h.substr(36, 16), ctx.span_id)) return std::nullopt;
    const std::string_view f = h.substr(53, 2);
    if (hex_value(f[0]) < 0 || hex_value(f[1]) < 0) return std::nullopt;
    flags[0] = uint8_t(hex_value(f[0]) * 16 + hex_value(f[1]));
    ctx.sampled = (flags[0] & 1) != 0;
    return ctx;
}

std::string format_traceparent(const TraceContext& ctx) {
    return "00-" + to_hex(ctx.trace_id) + "-" + to_hex(ctx.span_id) + (ctx.sampled ? "-01" : "-00");
}

std::string to_hex(const uint8_t* p, size_t n) {
    static const char* digits = "0123456789abcdef";
    std::string s(2 * n, '0');
    for (size_t i = 0; i < n; ++i) {
        s[2 * i] = digits[p[i] >> 4];
        s[2 * i + 1] = digits[p[i] & 15];
    }
    return s;
}

TraceId new_trace_id() { return random_id<16>(); }
SpanId new_span_id() { return random_id<8>(); }

uint64_t trace_id_low(const TraceId& id) {
    uint64_t v = 0;
    for (int i = 8; i < 16; ++i) v = (v << 8) | id[i];
    return v;
}

}  // namespace dg::trace
