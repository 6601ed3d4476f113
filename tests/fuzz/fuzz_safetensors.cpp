// libFuzzer target: safetensors parsing from borrowed bytes, then every tensor's bytes (first row of the
// supported ones dequantised). Run by tests/fuzz/run_smoke.sh.
#include <cstddef>
#include <cstdint>

#include "engine/formats/safetensors.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto parsed = dg::SafetensorsFile::parse(dg::MappedFile::borrow(data, size, "fuzz.safetensors"));
    if (!parsed.ok()) return 0;
    for (const dg::StTensor& t : (*parsed)->tensors()) {
        dg::fuzz::touch_bytes(t.data, t.nbytes);
        if (t.supported) dg::fuzz::touch_first_row(t.type, t.data, t.nbytes, t.shape.empty() ? 1 : t.shape.back());
    }
    return 0;
}
