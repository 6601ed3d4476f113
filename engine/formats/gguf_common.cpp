#include "engine/formats/gguf_common.h"

namespace dg {

uint64_t gguf_min_value_size(uint32_t type) {
    //                             u8 i8 u16 i16 u32 i32 f32 bool str arr u64 i64 f64
    static constexpr uint8_t kSize[] = {1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8};
    return type < sizeof(kSize) ? kSize[type] : 0;
}

const char* gguf_type_name(uint32_t type) {
    static constexpr const char* kNames[] = {"u8",   "i8",    "u16",   "i16", "u32", "i32", "f32",
                                             "bool", "string", "array", "u64", "i64", "f64"};
    return type < sizeof(kNames) / sizeof(kNames[0]) ? kNames[type] : "invalid";
}

const char* ggml_type_name(uint32_t id) {
    // ggml's numbering (ids 4 and 5 were Q4_2/Q4_3, removed long ago).
    static constexpr const char* kNames[] = {
        "f32",    "f16",     "q4_0",   "q4_1",    "removed", "removed", "q5_0",  "q5_1",  "q8_0",    "q8_1",
        "q2_k",   "q3_k",    "q4_k",   "q5_k",    "q6_k",    "q8_k",    "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",
        "iq4_nl", "iq3_s",   "iq2_s",  "iq4_xs",  "i8",      "i16",     "i32",   "i64",   "f64",     "iq1_m",
        "bf16",   "removed", "removed", "removed", "tq1_0",  "tq2_0",   "removed", "removed", "removed", "mxfp4"};
    return id < sizeof(kNames) / sizeof(kNames[0]) ? kNames[id] : "unknown";
}

}  // namespace dg
