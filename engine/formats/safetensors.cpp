// safetensors reader. Layout: u64 LE header length N, N bytes of JSON, then the data buffer; each entry
// is {"dtype", "shape", "data_offsets": [begin, end)} relative to the buffer. Every entry is checked
// (offsets in range, size == product(shape) * element size, no overflow) before a pointer is formed.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/formats/json_checked.h"
#include "engine/formats/safetensors.h"
#include "engine/formats/st_dtypes.h"
#include "engine/status.h"

namespace dg {

namespace {

// The reference implementation refuses headers over 100 MB; real ones are well under 1 MB per shard.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

absl::Status bad(const std::string& path, const std::string& msg) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", msg));
}

absl::StatusOr<StTensor> parse_entry(const std::string& path, const std::string& name, const nlohmann::json& e,
                                     const uint8_t* buffer, uint64_t buffer_size) {
    const std::string what = absl::StrFormat("tensor '%s'", name);
    if (!e.is_object()) return bad(path, what + ": entry is not an object");
    auto dtype_it = e.find("dtype");
    auto shape_it = e.find("shape");
    auto offsets_it = e.find("data_offsets");
    if (dtype_it == e.end() || !dtype_it->is_string()) return bad(path, what + ": missing or non-string 'dtype'");
    if (shape_it == e.end() || !shape_it->is_array()) return bad(path, what + ": missing or non-array 'shape'");
    if (offsets_it == e.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
        return bad(path, what + ": 'data_offsets' must be two non-negative integers");
    }
    StTensor t;
    t.name = name;
    t.file = path;
    t.dtype_name = dtype_it->get<std::string>();
    const StDtype* dt = st_dtype(t.dtype_name);
    if (dt == nullptr) return bad(path, absl::StrFormat("%s: unknown dtype '%s'", what, t.dtype_name));
    t.supported = dt->supported;
    t.type = dt->type;

    uint64_t count = 1;
    for (const nlohmann::json& d : *shape_it) {
        if (!d.is_number_unsigned()) return bad(path, what + ": shape entries must be non-negative integers");
        const uint64_t v = d.get<uint64_t>();
        if (v > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(count, v, &count)) {
            return bad(path, what + ": shape overflows");
        }
        t.shape.push_back(static_cast<int64_t>(v));
    }
    uint64_t expect;
    if (count > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(count, dt->size, &expect)) {
        return bad(path, what + ": byte size overflows");
    }
    const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    const uint64_t end = (*offsets_it)[1].get<uint64_t>();
    if (begin > end || end > buffer_size) {
        return bad(path, absl::StrFormat("%s: data_offsets [%d, %d) out of range (data buffer is %d bytes)", what,
                                         begin, end, buffer_size));
    }
    if (end - begin != expect) {
        return bad(path, absl::StrFormat("%s: data_offsets span %d bytes but %s%s needs %d", what, end - begin,
                                         t.dtype_name, nlohmann::json(t.shape).dump(), expect));
    }
    t.data = buffer + begin;
    t.nbytes = expect;
    return t;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
    DG_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::open(path));
    return parse(std::move(file));
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::parse(std::shared_ptr<MappedFile> file) {
    const std::string& path = file->path();
    const uint64_t size = file->size();
    if (size < 8) return bad(path, absl::StrFormat("too short for a safetensors file (%d bytes)", size));
    uint64_t n;
    std::memcpy(&n, file->data(), 8);
    if (n > size - 8) return bad(path, absl::StrFormat("header length %d exceeds the file (%d bytes)", n, size));
    if (n > kMaxHeaderBytes) return bad(path, absl::StrFormat("header length %d over the 100 MB limit", n));
    const std::string_view text(reinterpret_cast<const char*>(file->data()) + 8, n);
    DG_ASSIGN_OR_RETURN(nlohmann::json header, parse_json_checked(text, path + ": header"));
    if (!header.is_object()) return bad(path, "header is not a JSON object");

    auto out = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
    out->file_ = file;
    const uint8_t* buffer = file->data() + 8 + n;
    const uint64_t buffer_size = size - 8 - n;
    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__") {
            if (!it->is_object()) return bad(path, "'__metadata__' is not an object");
            for (auto m = it->begin(); m != it->end(); ++m) {
                if (!m->is_string()) return bad(path, absl::StrFormat("'__metadata__' value of '%s' is not a string", m.key()));
                out->metadata_[m.key()] = m->get<std::string>();
            }
            continue;
        }
        DG_ASSIGN_OR_RETURN(StTensor t, parse_entry(path, it.key(), *it, buffer, buffer_size));
        out->tensors_.push_back(std::move(t));
    }
    return out;
}

}  // namespace dg
