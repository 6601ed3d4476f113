// GGUF v3: reader (mmap, every offset and size checked) and streaming writer. Spec: docs/qwen35-model.md §7.1.
// Errors name the file and the key or tensor: "model.gguf: tensor 'blk.3.attn_q.weight': data out of range".
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/formats/dtype.h"
#include "engine/formats/mapped_file.h"

namespace dg {

enum class GgufType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9,
    U64 = 10, I64 = 11, F64 = 12,
};

struct GgufValue;
struct GgufArray {
    GgufType elem_type;
    std::vector<GgufValue> items;
};
// Integers are widened to int64/uint64, floats to double; the original type is kept in `type`.
struct GgufValue {
    GgufType type;
    std::variant<int64_t, uint64_t, double, bool, std::string, std::shared_ptr<GgufArray>> v;
};

struct GgufTensor {
    std::string name;
    std::vector<int64_t> ne;   // ggml order: ne[0] is the contiguous (input) dimension
    DType type;
    uint64_t offset = 0;       // relative to the data section
    const uint8_t* data = nullptr;  // inside the mapping, bounds-checked
    uint64_t nbytes = 0;
    int64_t n_elements() const;
};

class GgufFile {
public:
    static absl::StatusOr<std::unique_ptr<GgufFile>> open(const std::string& path);
    static absl::StatusOr<std::unique_ptr<GgufFile>> parse(std::shared_ptr<MappedFile> file);

    const std::string& path() const { return file_->path(); }
    const std::map<std::string, GgufValue>& metadata() const { return kv_; }
    const std::vector<GgufTensor>& tensors() const { return tensors_; }
    const GgufTensor* find_tensor(const std::string& name) const;  // nullptr when absent
    const GgufValue* find(const std::string& key) const;            // nullptr when absent

    // Typed getters: NotFound when absent, InvalidArgument naming file+key on a type mismatch.
    // Integer getters accept any integer type whose value fits.
    absl::StatusOr<uint64_t> get_uint(const std::string& key) const;
    absl::StatusOr<int64_t> get_int(const std::string& key) const;
    absl::StatusOr<double> get_float(const std::string& key) const;   // F32/F64 (and integers)
    absl::StatusOr<bool> get_bool(const std::string& key) const;
    absl::StatusOr<std::string> get_string(const std::string& key) const;
    absl::StatusOr<std::vector<std::string>> get_string_array(const std::string& key) const;
    absl::StatusOr<std::vector<int64_t>> get_int_array(const std::string& key) const;
    absl::StatusOr<std::vector<double>> get_float_array(const std::string& key) const;

    std::shared_ptr<MappedFile> mapping() const { return file_; }

private:
    std::shared_ptr<MappedFile> file_;
    std::map<std::string, GgufValue> kv_;
    std::vector<GgufTensor> tensors_;
    std::map<std::string, size_t> by_name_;
    friend class GgufParser;
};

// Streaming writer: declare metadata and tensors first, then write() streams each tensor's bytes from
// its producer, so a 16 GB file never sits in memory. Alignment 32 unless general.alignment is set.
class GgufWriter {
public:
    void set_u32(const std::string& key, uint32_t v);
    void set_i32(const std::string& key, int32_t v);
    void set_u64(const std::string& key, uint64_t v);
    void set_f32(const std::string& key, float v);
    void set_bool(const std::string& key, bool v);
    void set_string(const std::string& key, const std::string& v);
    void set_string_array(const std::string& key, const std::vector<std::string>& v);
    void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
    void set_f32_array(const std::string& key, const std::vector<float>& v);

    // `produce(dst)` fills exactly nbytes (computed from ne and type) when write() reaches this tensor.
    using Producer = std::function<void(uint8_t* dst, uint64_t nbytes)>;
    absl::Status add_tensor(const std::string& name, std::vector<int64_t> ne, DType type, Producer produce);

    absl::Status write(const std::string& path) const;

private:
    struct Kv { std::string key; GgufType type; GgufType elem_type; std::vector<uint8_t> payload; uint64_t count; };
    struct Pending { std::string name; std::vector<int64_t> ne; DType type; uint64_t nbytes; Producer produce; };
    std::vector<Kv> kvs_;
    std::vector<Pending> tensors_;
    uint32_t alignment_ = 32;
};

}  // namespace dg
