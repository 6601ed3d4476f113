// GGUF reader. The file is untrusted: every length, count and offset is checked against the bytes that
// remain before it is used, counts are capped by what the remaining bytes could hold (so a hostile count
// cannot trigger a huge allocation), and nesting depth is bounded (so arrays of arrays cannot exhaust the
// stack). Errors start with the file path and name the key or tensor being read.
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/formats/gguf.h"
#include "engine/formats/gguf_common.h"
#include "engine/status.h"

namespace dg {

namespace {

constexpr int kMaxArrayDepth = 8;                // real files nest at most once
constexpr uint64_t kMaxArrayItems = 1ull << 25;  // all arrays together (a 250K-token vocab needs <1M)

bool is_int_type(GgufType t) {
    switch (t) {
        case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16: case GgufType::U32:
        case GgufType::I32: case GgufType::U64: case GgufType::I64:
            return true;
        default:
            return false;
    }
}

// Integers widen to int64 (signed types) or uint64 (unsigned); returns false when v does not fit.
bool value_as_i64(const GgufValue& v, int64_t* out) {
    if (const auto* i = std::get_if<int64_t>(&v.v)) {
        *out = *i;
        return true;
    }
    if (const auto* u = std::get_if<uint64_t>(&v.v)) {
        if (*u > static_cast<uint64_t>(INT64_MAX)) return false;
        *out = static_cast<int64_t>(*u);
        return true;
    }
    return false;
}

}  // namespace

class GgufParser {
public:
    explicit GgufParser(std::shared_ptr<MappedFile> file)
        : file_(std::move(file)), data_(file_->data()), size_(file_->size()) {}

    absl::StatusOr<std::unique_ptr<GgufFile>> run();

private:
    absl::Status error(const std::string& msg) const {
        return absl::InvalidArgumentError(absl::StrCat(file_->path(), ": ", msg));
    }
    uint64_t left() const { return size_ - pos_; }
    absl::Status need(uint64_t n, const std::string& what) const {
        if (n > left()) {
            return error(absl::StrFormat("%s: truncated at offset %d (needs %d bytes, %d left)", what, pos_, n,
                                         left()));
        }
        return absl::OkStatus();
    }
    template <typename T>
    absl::StatusOr<T> read(const std::string& what) {
        DG_RETURN_IF_ERROR(need(sizeof(T), what));
        T v;
        std::memcpy(&v, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }
    absl::StatusOr<std::string> read_string(const std::string& what) {
        DG_ASSIGN_OR_RETURN(uint64_t len, read<uint64_t>(what));
        if (len > left()) {
            return error(absl::StrFormat("%s: string length %d exceeds the %d bytes left at offset %d", what, len,
                                         left(), pos_));
        }
        std::string s(reinterpret_cast<const char*>(data_ + pos_), len);
        pos_ += len;
        return s;
    }
    absl::StatusOr<GgufValue> read_value(GgufType type, const std::string& what, int depth);
    absl::Status read_kv(GgufFile* out, uint64_t index);
    absl::Status read_tensor_info(GgufFile* out, uint64_t index);

    std::shared_ptr<MappedFile> file_;
    const uint8_t* data_;
    uint64_t size_;
    uint64_t pos_ = 0;
    uint64_t array_items_ = 0;
};

absl::StatusOr<GgufValue> GgufParser::read_value(GgufType type, const std::string& what, int depth) {
    GgufValue out;
    out.type = type;
    switch (type) {
        case GgufType::U8: { DG_ASSIGN_OR_RETURN(uint8_t v, read<uint8_t>(what)); out.v = uint64_t{v}; break; }
        case GgufType::I8: { DG_ASSIGN_OR_RETURN(int8_t v, read<int8_t>(what)); out.v = int64_t{v}; break; }
        case GgufType::U16: { DG_ASSIGN_OR_RETURN(uint16_t v, read<uint16_t>(what)); out.v = uint64_t{v}; break; }
        case GgufType::I16: { DG_ASSIGN_OR_RETURN(int16_t v, read<int16_t>(what)); out.v = int64_t{v}; break; }
        case GgufType::U32: { DG_ASSIGN_OR_RETURN(uint32_t v, read<uint32_t>(what)); out.v = uint64_t{v}; break; }
        case GgufType::I32: { DG_ASSIGN_OR_RETURN(int32_t v, read<int32_t>(what)); out.v = int64_t{v}; break; }
        case GgufType::U64: { DG_ASSIGN_OR_RETURN(uint64_t v, read<uint64_t>(what)); out.v = v; break; }
        case GgufType::I64: { DG_ASSIGN_OR_RETURN(int64_t v, read<int64_t>(what)); out.v = v; break; }
        case GgufType::F32: { DG_ASSIGN_OR_RETURN(float v, read<float>(what)); out.v = double{v}; break; }
        case GgufType::F64: { DG_ASSIGN_OR_RETURN(double v, read<double>(what)); out.v = v; break; }
        case GgufType::BOOL: {
            DG_ASSIGN_OR_RETURN(uint8_t v, read<uint8_t>(what));
            if (v > 1) return error(absl::StrFormat("%s: bool value %d is neither 0 nor 1", what, v));
            out.v = v == 1;
            break;
        }
        case GgufType::STRING: {
            DG_ASSIGN_OR_RETURN(std::string s, read_string(what));
            out.v = std::move(s);
            break;
        }
        case GgufType::ARRAY: {
            if (depth >= kMaxArrayDepth) {
                return error(absl::StrFormat("%s: arrays nested deeper than %d", what, kMaxArrayDepth));
            }
            DG_ASSIGN_OR_RETURN(uint32_t elem, read<uint32_t>(what + " array type"));
            const uint64_t elem_size = gguf_min_value_size(elem);
            if (elem_size == 0) return error(absl::StrFormat("%s: unknown array element type %d", what, elem));
            DG_ASSIGN_OR_RETURN(uint64_t count, read<uint64_t>(what + " array count"));
            // Every element needs at least elem_size bytes: a count the file cannot hold is rejected
            // before anything is allocated.
            if (count > left() / elem_size) {
                return error(absl::StrFormat("%s: array of %d %s items needs more than the %d bytes left", what,
                                             count, gguf_type_name(elem), left()));
            }
            array_items_ += count;
            if (array_items_ > kMaxArrayItems) {
                return error(absl::StrFormat("%s: more than %d array items in the metadata", what, kMaxArrayItems));
            }
            auto arr = std::make_shared<GgufArray>();
            arr->elem_type = static_cast<GgufType>(elem);
            arr->items.reserve(count);
            for (uint64_t i = 0; i < count; ++i) {
                DG_ASSIGN_OR_RETURN(GgufValue item, read_value(arr->elem_type, what, depth + 1));
                arr->items.push_back(std::move(item));
            }
            out.v = std::move(arr);
            break;
        }
        default:
            return error(absl::StrFormat("%s: unknown value type %d", what, static_cast<uint32_t>(type)));
    }
    return out;
}

absl::Status GgufParser::read_kv(GgufFile* out, uint64_t index) {
    DG_ASSIGN_OR_RETURN(std::string key, read_string(absl::StrFormat("metadata key #%d", index)));
    const std::string what = absl::StrFormat("key '%s'", key);
    DG_ASSIGN_OR_RETURN(uint32_t type, read<uint32_t>(what + " type"));
    if (gguf_min_value_size(type) == 0) return error(absl::StrFormat("%s: unknown value type %d", what, type));
    DG_ASSIGN_OR_RETURN(GgufValue value, read_value(static_cast<GgufType>(type), what, 0));
    if (out->kv_.count(key)) return error(absl::StrFormat("duplicate key '%s'", key));
    out->kv_.emplace(std::move(key), std::move(value));
    return absl::OkStatus();
}

absl::Status GgufParser::read_tensor_info(GgufFile* out, uint64_t index) {
    GgufTensor t;
    DG_ASSIGN_OR_RETURN(t.name, read_string(absl::StrFormat("tensor #%d name", index)));
    const std::string what = absl::StrFormat("tensor '%s'", t.name);
    DG_ASSIGN_OR_RETURN(uint32_t n_dims, read<uint32_t>(what + " n_dims"));
    if (n_dims < 1 || n_dims > 4) return error(absl::StrFormat("%s: n_dims %d outside 1..4", what, n_dims));
    int64_t n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
        DG_ASSIGN_OR_RETURN(uint64_t ne, read<uint64_t>(what + " ne"));
        if (ne > static_cast<uint64_t>(INT64_MAX)) return error(absl::StrFormat("%s: ne[%d] = %d too large", what, d, ne));
        if (__builtin_mul_overflow(n_elements, static_cast<int64_t>(ne), &n_elements)) {
            return error(absl::StrFormat("%s: element count overflows", what));
        }
        t.ne.push_back(static_cast<int64_t>(ne));
    }
    DG_ASSIGN_OR_RETURN(uint32_t type_id, read<uint32_t>(what + " type"));
    const DTypeInfo* info = dtype_info(type_id);
    if (info == nullptr) {
        return error(absl::StrFormat("%s: unsupported ggml type %d (%s)", what, type_id, ggml_type_name(type_id)));
    }
    t.type = info->type;
    auto rb = row_bytes(t.type, t.ne[0]);
    if (!rb.ok()) return error(absl::StrCat(what, ": ", rb.status().message()));
    const int64_t rows = t.ne[0] == 0 ? 0 : n_elements / t.ne[0];
    if (__builtin_mul_overflow(*rb, static_cast<uint64_t>(rows), &t.nbytes)) {
        return error(absl::StrFormat("%s: byte size overflows", what));
    }
    DG_ASSIGN_OR_RETURN(t.offset, read<uint64_t>(what + " offset"));
    if (out->by_name_.count(t.name)) return error(absl::StrFormat("duplicate tensor '%s'", t.name));
    out->by_name_.emplace(t.name, out->tensors_.size());
    out->tensors_.push_back(std::move(t));
    return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufParser::run() {
    if (size_ < 4 || std::memcmp(data_, "GGUF", 4) != 0) return error("not a GGUF file (bad magic)");
    pos_ = 4;
    DG_ASSIGN_OR_RETURN(uint32_t version, read<uint32_t>("header version"));
    // v2 has the v3 layout (64-bit counts); v1 used 32-bit counts and is long obsolete.
    if (version != 2 && version != 3) {
        return error(absl::StrFormat("unsupported GGUF version %d (expected 3 or 2)", version));
    }
    DG_ASSIGN_OR_RETURN(uint64_t n_tensors, read<uint64_t>("header tensor_count"));
    DG_ASSIGN_OR_RETURN(uint64_t n_kv, read<uint64_t>("header metadata_kv_count"));
    // Smallest possible entries: a kv is key length + type + 1 byte; a tensor info is name length +
    // n_dims + one ne + type + offset.
    if (n_kv > left() / 13) return error(absl::StrFormat("metadata_kv_count %d cannot fit in the file", n_kv));
    if (n_tensors > left() / 32) return error(absl::StrFormat("tensor_count %d cannot fit in the file", n_tensors));

    auto out = std::unique_ptr<GgufFile>(new GgufFile());
    out->file_ = file_;
    for (uint64_t i = 0; i < n_kv; ++i) DG_RETURN_IF_ERROR(read_kv(out.get(), i));

    uint64_t alignment = 32;
    if (const GgufValue* a = out->find("general.alignment")) {
        const auto* u = std::get_if<uint64_t>(&a->v);
        if (a->type != GgufType::U32 || u == nullptr) return error("key 'general.alignment': must be a uint32");
        if (*u == 0 || (*u & (*u - 1)) != 0 || *u % 8 != 0) {
            return error(absl::StrFormat("key 'general.alignment': %d is not a power of two multiple of 8", *u));
        }
        alignment = *u;
    }

    out->tensors_.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) DG_RETURN_IF_ERROR(read_tensor_info(out.get(), i));

    // The data section starts at the next multiple of the alignment (pos_ <= size_, so no overflow).
    const uint64_t data_start = (pos_ + alignment - 1) / alignment * alignment;
    for (GgufTensor& t : out->tensors_) {
        if (t.offset % alignment != 0) {
            return error(absl::StrFormat("tensor '%s': offset %d is not a multiple of the alignment %d", t.name,
                                         t.offset, alignment));
        }
        uint64_t begin, end;
        if (__builtin_add_overflow(data_start, t.offset, &begin) || __builtin_add_overflow(begin, t.nbytes, &end) ||
            end > size_) {
            return error(absl::StrFormat("tensor '%s': data out of range (offset %d + %d bytes after data start %d; "
                                         "file size %d)", t.name, t.offset, t.nbytes, data_start, size_));
        }
        t.data = data_ + begin;
    }
    return out;
}

int64_t GgufTensor::n_elements() const {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;  // checked against overflow when parsed
    return n;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::open(const std::string& path) {
    DG_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::open(path));
    return parse(std::move(file));
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::parse(std::shared_ptr<MappedFile> file) {
    return GgufParser(std::move(file)).run();
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue* GgufFile::find(const std::string& key) const {
    auto it = kv_.find(key);
    return it == kv_.end() ? nullptr : &it->second;
}

namespace {

absl::StatusOr<const GgufValue*> lookup(const GgufFile& f, const std::string& key) {
    const GgufValue* v = f.find(key);
    if (v == nullptr) return absl::NotFoundError(absl::StrFormat("%s: key '%s' not found", f.path(), key));
    return v;
}

absl::Status type_error(const GgufFile& f, const std::string& key, const GgufValue& v, const char* want) {
    std::string got = gguf_type_name(static_cast<uint32_t>(v.type));
    if (v.type == GgufType::ARRAY) {
        got = absl::StrCat("array of ", gguf_type_name(static_cast<uint32_t>(std::get<std::shared_ptr<GgufArray>>(v.v)->elem_type)));
    }
    return absl::InvalidArgumentError(absl::StrFormat("%s: key '%s' is %s, expected %s", f.path(), key, got, want));
}

absl::StatusOr<const GgufArray*> lookup_array(const GgufFile& f, const std::string& key) {
    DG_ASSIGN_OR_RETURN(const GgufValue* v, lookup(f, key));
    if (v->type != GgufType::ARRAY) return type_error(f, key, *v, "an array");
    return std::get<std::shared_ptr<GgufArray>>(v->v).get();
}

}  // namespace

absl::StatusOr<uint64_t> GgufFile::get_uint(const std::string& key) const {
    DG_ASSIGN_OR_RETURN(const GgufValue* v, lookup(*this, key));
    if (const auto* u = std::get_if<uint64_t>(&v->v); u && is_int_type(v->type)) return *u;
    if (const auto* i = std::get_if<int64_t>(&v->v); i && *i >= 0) return static_cast<uint64_t>(*i);
    return type_error(*this, key, *v, "a non-negative integer");
}

absl::StatusOr<int64_t> GgufFile::get_int(const std::string& key) const {
    DG_ASSIGN_OR_RETURN(const GgufValue* v, lookup(*this, key));
    int64_t out;
    if (is_int_type(v->type) && value_as_i64(*v, &out)) return out;
    return type_error(*this, key, *v, "an integer that fits int64");
}

absl::StatusOr<double> GgufFile::get_float(const std::string& key) const {
    DG_ASSIGN_OR_RETURN(const GgufValue* v, lookup(*this, key));
    if (const auto* d = std::get_if<double>(&v->v)) return *d;
    if (const auto* i = std::get_if<int64_t>(&v->v)) return static_cast<double>(*i);
    if (const auto* u = std::get_if<uint64_t>(&v->v)) return static_cast<double>(*u);
    return type_error(*this, key, *v, "a number");
}

absl::StatusOr<bool> GgufFile::get_bool(const std::string& key) const {
    DG_ASSIGN_OR_RETURN(const GgufValue* v, lookup(*this, key));
    if (const auto* b = std::get_if<bool>(&v->v)) return *b;
    return type_error(*this, key, *v, "a bool");
}

absl::StatusOr<std::string> GgufFile::get_string(const std::string& key) const {
    DG_ASSIGN_OR_RETURN(const GgufValue* v, lookup(*this, key));
    if (const auto* s = std::get_if<std::string>(&v->v)) return *s;
    return type_error(*this, key, *v, "a string");
}

absl::StatusOr<std::vector<std::string>> GgufFile::get_string_array(const std::string& key) const {
    DG_ASSIGN_OR_RETURN(const GgufArray* a, lookup_array(*this, key));
    if (a->elem_type != GgufType::STRING) return type_error(*this, key, *find(key), "an array of string");
    std::vector<std::string> out;
    out.reserve(a->items.size());
    for (const GgufValue& item : a->items) out.push_back(std::get<std::string>(item.v));
    return out;
}

absl::StatusOr<std::vector<int64_t>> GgufFile::get_int_array(const std::string& key) const {
    DG_ASSIGN_OR_RETURN(const GgufArray* a, lookup_array(*this, key));
    if (!is_int_type(a->elem_type)) return type_error(*this, key, *find(key), "an array of integers");
    std::vector<int64_t> out;
    out.reserve(a->items.size());
    for (size_t i = 0; i < a->items.size(); ++i) {
        int64_t x;
        if (!value_as_i64(a->items[i], &x)) {
            return absl::InvalidArgumentError(
                absl::StrFormat("%s: key '%s': item %d does not fit int64", path(), key, i));
        }
        out.push_back(x);
    }
    return out;
}

absl::StatusOr<std::vector<double>> GgufFile::get_float_array(const std::string& key) const {
    DG_ASSIGN_OR_RETURN(const GgufArray* a, lookup_array(*this, key));
    const bool numeric = a->elem_type == GgufType::F32 || a->elem_type == GgufType::F64 || is_int_type(a->elem_type);
    if (!numeric) return type_error(*this, key, *find(key), "an array of numbers");
    std::vector<double> out;
    out.reserve(a->items.size());
    for (const GgufValue& item : a->items) {
        if (const auto* d = std::get_if<double>(&item.v)) out.push_back(*d);
        else if (const auto* i = std::get_if<int64_t>(&item.v)) out.push_back(static_cast<double>(*i));
        else out.push_back(static_cast<double>(std::get<uint64_t>(item.v)));
    }
    return out;
}

}  // namespace dg
