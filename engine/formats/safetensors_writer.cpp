// safetensors writer for tests and tiny models: header JSON padded with spaces to a multiple of 8 (as
// the HF library does, so the data buffer is 8-byte aligned), tensors in the order they were added.
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_format.h"
#include "engine/formats/safetensors.h"
#include "engine/formats/st_dtypes.h"
#include "nlohmann/json.hpp"

namespace dg {

absl::Status SafetensorsWriter::add(const std::string& name, DType type, std::vector<int64_t> shape,
                                    const void* data) {
    if (name.empty() || name == "__metadata__") {
        return absl::InvalidArgumentError(absl::StrFormat("SafetensorsWriter: bad tensor name '%s'", name));
    }
    for (const Entry& e : entries_) {
        if (e.name == name) return absl::InvalidArgumentError(absl::StrFormat("SafetensorsWriter: duplicate tensor '%s'", name));
    }
    if (st_dtype_name(type) == nullptr) {
        return absl::InvalidArgumentError(absl::StrFormat("SafetensorsWriter: tensor '%s': safetensors cannot store %s",
                                                          name, dtype_info(type).name));
    }
    uint64_t bytes = static_cast<uint64_t>(dtype_info(type).block_bytes);
    for (int64_t d : shape) {
        if (d < 0 || __builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes)) {
            return absl::InvalidArgumentError(absl::StrFormat("SafetensorsWriter: tensor '%s': bad shape", name));
        }
    }
    const auto* p = static_cast<const uint8_t*>(data);
    entries_.push_back(Entry{name, type, std::move(shape), std::vector<uint8_t>(p, p + bytes)});
    return absl::OkStatus();
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

absl::Status SafetensorsWriter::write(const std::string& path) const {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    uint64_t offset = 0;
    for (const Entry& e : entries_) {
        header[e.name] = {{"dtype", st_dtype_name(e.type)},
                          {"shape", e.shape},
                          {"data_offsets", {offset, offset + e.bytes.size()}}};
        offset += e.bytes.size();
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');

    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) return absl::UnavailableError(absl::StrFormat("%s: cannot create: %s", path, std::strerror(errno)));
    const uint64_t n = text.size();
    bool ok = std::fwrite(&n, 8, 1, f) == 1 && std::fwrite(text.data(), 1, text.size(), f) == text.size();
    for (const Entry& e : entries_) {
        if (!ok) break;
        ok = e.bytes.empty() || std::fwrite(e.bytes.data(), 1, e.bytes.size(), f) == e.bytes.size();
    }
    const int err = errno;
    if (std::fclose(f) != 0) ok = false;
    if (!ok) {
        std::remove(path.c_str());
        return absl::UnavailableError(absl::StrFormat("%s: write failed: %s", path, std::strerror(err)));
    }
    return absl::OkStatus();
}

}  // namespace dg
