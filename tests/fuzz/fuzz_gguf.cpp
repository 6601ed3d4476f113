// libFuzzer target: GGUF parsing from borrowed bytes, then every getter on every key and every tensor's
// bytes (first row dequantised). Run by tests/fuzz/run_smoke.sh.
#include <cstddef>
#include <cstdint>

#include "engine/formats/gguf.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto parsed = dg::GgufFile::parse(dg::MappedFile::borrow(data, size, "fuzz.gguf"));
    if (!parsed.ok()) return 0;
    const dg::GgufFile& f = **parsed;
    for (const auto& [key, value] : f.metadata()) {
        (void)f.get_uint(key);
        (void)f.get_int(key);
        (void)f.get_float(key);
        (void)f.get_bool(key);
        (void)f.get_string(key);
        (void)f.get_string_array(key);
        (void)f.get_int_array(key);
        (void)f.get_float_array(key);
    }
    for (const dg::GgufTensor& t : f.tensors()) {
        if (f.find_tensor(t.name) != &t) __builtin_trap();
        dg::fuzz::touch_bytes(t.data, t.nbytes);
        dg::fuzz::touch_first_row(t.type, t.data, t.nbytes, t.ne[0]);
    }
    return 0;
}
