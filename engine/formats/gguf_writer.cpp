// Streaming GGUF v3 writer. Metadata and tensor infos are small and built in memory; tensor bytes are
// produced one tensor at a time into a reused buffer and go through a large stdio buffer, so writing a
// 16 GB model needs only its largest tensor in memory. The file appears under its name only when
// complete (written to a temporary name, then renamed).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "absl/strings/str_format.h"
#include "engine/formats/gguf.h"
#include "engine/status.h"

namespace dg {

namespace {

void put_bytes(std::vector<uint8_t>& out, const void* p, size_t n) {
    if (n == 0) return;
    const size_t old = out.size();
    out.resize(old + n);
    std::memcpy(out.data() + old, p, n);
}
template <typename T>
void put(std::vector<uint8_t>& out, T v) {
    put_bytes(out, &v, sizeof(T));
}
void put_string(std::vector<uint8_t>& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    put_bytes(out, s.data(), s.size());
}

// A FILE* that reports the first failure with the path and errno, and removes the partial file.
class OutFile {
public:
    explicit OutFile(std::string path) : path_(std::move(path)), tmp_(absl::StrFormat("%s.tmp.%d", path_, getpid())) {}
    ~OutFile() {
        if (f_ != nullptr) std::fclose(f_);
        if (!done_) std::remove(tmp_.c_str());
    }
    absl::Status open() {
        f_ = std::fopen(tmp_.c_str(), "wb");
        if (f_ == nullptr) return fail("cannot create");
        std::setvbuf(f_, nullptr, _IOFBF, 4 << 20);
        return absl::OkStatus();
    }
    absl::Status write(const void* p, size_t n) {
        if (n != 0 && std::fwrite(p, 1, n, f_) != n) return fail("write failed");
        return absl::OkStatus();
    }
    absl::Status pad_to(uint64_t written, uint64_t alignment) {
        static const uint8_t kZeros[256] = {};
        uint64_t pad = (alignment - written % alignment) % alignment;
        while (pad > 0) {
            const size_t n = pad < sizeof(kZeros) ? pad : sizeof(kZeros);
            DG_RETURN_IF_ERROR(write(kZeros, n));
            pad -= n;
        }
        return absl::OkStatus();
    }
    absl::Status finish() {
        FILE* f = f_;
        f_ = nullptr;
        if (std::fclose(f) != 0) return fail("write failed");
        if (std::rename(tmp_.c_str(), path_.c_str()) != 0) return fail("cannot rename the temporary file");
        done_ = true;
        return absl::OkStatus();
    }

private:
    absl::Status fail(const char* what) const {
        return absl::UnavailableError(absl::StrFormat("%s: %s: %s", path_, what, std::strerror(errno)));
    }
    std::string path_, tmp_;
    FILE* f_ = nullptr;
    bool done_ = false;
};

}  // namespace

// Each setter replaces an earlier value of the same key, so a key is written once.
#define DG_GGUF_SET(key, type, elem_type, count, fill)                                            \
    do {                                                                                          \
        Kv kv{key, type, elem_type, {}, count};                                                   \
        fill;                                                                                     \
        for (Kv& old : kvs_) {                                                                    \
            if (old.key == kv.key) {                                                              \
                old = std::move(kv);                                                              \
                return;                                                                           \
            }                                                                                     \
        }                                                                                         \
        kvs_.push_back(std::move(kv));                                                            \
    } while (0)

void GgufWriter::set_u32(const std::string& key, uint32_t v) {
    if (key == "general.alignment") alignment_ = v;  // validated by write()
    DG_GGUF_SET(key, GgufType::U32, GgufType::U32, 1, put(kv.payload, v));
}
void GgufWriter::set_i32(const std::string& key, int32_t v) {
    DG_GGUF_SET(key, GgufType::I32, GgufType::I32, 1, put(kv.payload, v));
}
void GgufWriter::set_u64(const std::string& key, uint64_t v) {
    DG_GGUF_SET(key, GgufType::U64, GgufType::U64, 1, put(kv.payload, v));
}
void GgufWriter::set_f32(const std::string& key, float v) {
    DG_GGUF_SET(key, GgufType::F32, GgufType::F32, 1, put(kv.payload, v));
}
void GgufWriter::set_bool(const std::string& key, bool v) {
    DG_GGUF_SET(key, GgufType::BOOL, GgufType::BOOL, 1, put<uint8_t>(kv.payload, v ? 1 : 0));
}
void GgufWriter::set_string(const std::string& key, const std::string& v) {
    DG_GGUF_SET(key, GgufType::STRING, GgufType::STRING, 1, put_string(kv.payload, v));
}
void GgufWriter::set_string_array(const std::string& key, const std::vector<std::string>& v) {
    DG_GGUF_SET(key, GgufType::ARRAY, GgufType::STRING, v.size(), for (const auto& s : v) put_string(kv.payload, s));
}
void GgufWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
    DG_GGUF_SET(key, GgufType::ARRAY, GgufType::I32, v.size(), put_bytes(kv.payload, v.data(), v.size() * 4));
}
void GgufWriter::set_f32_array(const std::string& key, const std::vector<float>& v) {
    DG_GGUF_SET(key, GgufType::ARRAY, GgufType::F32, v.size(), put_bytes(kv.payload, v.data(), v.size() * 4));
}

#undef DG_GGUF_SET

absl::Status GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> ne, DType type,
                                    Producer produce) {
    if (name.empty()) return absl::InvalidArgumentError("GgufWriter: empty tensor name");
    for (const Pending& p : tensors_) {
        if (p.name == name) return absl::InvalidArgumentError(absl::StrFormat("GgufWriter: duplicate tensor '%s'", name));
    }
    if (ne.empty() || ne.size() > 4) {
        return absl::InvalidArgumentError(absl::StrFormat("GgufWriter: tensor '%s' has %d dims (1..4)", name, ne.size()));
    }
    int64_t n = 1;
    for (int64_t d : ne) {
        if (d < 0 || __builtin_mul_overflow(n, d, &n)) {
            return absl::InvalidArgumentError(absl::StrFormat("GgufWriter: tensor '%s': bad shape", name));
        }
    }
    auto rb = row_bytes(type, ne[0]);
    if (!rb.ok()) {
        return absl::InvalidArgumentError(absl::StrFormat("GgufWriter: tensor '%s': %s", name, rb.status().message()));
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(*rb, static_cast<uint64_t>(ne[0] == 0 ? 0 : n / ne[0]), &nbytes)) {
        return absl::InvalidArgumentError(absl::StrFormat("GgufWriter: tensor '%s': size overflows", name));
    }
    tensors_.push_back(Pending{name, std::move(ne), type, nbytes, std::move(produce)});
    return absl::OkStatus();
}

absl::Status GgufWriter::write(const std::string& path) const {
    const uint64_t align = alignment_;
    if (align == 0 || (align & (align - 1)) != 0 || align % 8 != 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: general.alignment %d is not a power of two multiple of 8", path, align));
    }
    std::vector<uint8_t> head;
    put_bytes(head, "GGUF", 4);
    put<uint32_t>(head, 3);
    put<uint64_t>(head, tensors_.size());
    put<uint64_t>(head, kvs_.size());
    for (const Kv& kv : kvs_) {
        put_string(head, kv.key);
        put<uint32_t>(head, static_cast<uint32_t>(kv.type));
        if (kv.type == GgufType::ARRAY) {
            put<uint32_t>(head, static_cast<uint32_t>(kv.elem_type));
            put<uint64_t>(head, kv.count);
        }
        put_bytes(head, kv.payload.data(), kv.payload.size());
    }
    uint64_t offset = 0;
    for (const Pending& t : tensors_) {
        put_string(head, t.name);
        put<uint32_t>(head, static_cast<uint32_t>(t.ne.size()));
        for (int64_t d : t.ne) put<uint64_t>(head, static_cast<uint64_t>(d));
        put<uint32_t>(head, static_cast<uint32_t>(t.type));
        put<uint64_t>(head, offset);
        offset += (t.nbytes + align - 1) / align * align;
    }

    OutFile out(path);
    DG_RETURN_IF_ERROR(out.open());
    DG_RETURN_IF_ERROR(out.write(head.data(), head.size()));
    DG_RETURN_IF_ERROR(out.pad_to(head.size(), align));
    std::vector<uint8_t> buf;
    for (const Pending& t : tensors_) {
        // Zero-filled so a producer that writes less than promised leaves zeros, not stale bytes.
        buf.assign(t.nbytes, 0);
        if (t.produce && t.nbytes > 0) t.produce(buf.data(), t.nbytes);
        DG_RETURN_IF_ERROR(out.write(buf.data(), t.nbytes));
        DG_RETURN_IF_ERROR(out.pad_to(t.nbytes, align));
    }
    return out.finish();
}

}  // namespace dg
