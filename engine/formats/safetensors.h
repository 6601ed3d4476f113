// safetensors: reader (one file, mmap, header and offsets checked; F32/F16/BF16 and anything else
// listed but refused at use) and writer. Also a directory reader honouring model.safetensors.index.json.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/formats/dtype.h"
#include "engine/formats/mapped_file.h"

namespace dg {

struct StTensor {
    std::string name;
    std::string dtype_name;       // as written in the header: "F32", "BF16", "I64", ...
    DType type;                   // valid only when supported() (F32/F16/BF16)
    bool supported = false;
    std::vector<int64_t> shape;   // PyTorch order: shape.back() is contiguous
    const uint8_t* data = nullptr;
    uint64_t nbytes = 0;
    std::string file;             // which file holds it (for error messages)
};

class SafetensorsFile {
public:
    static absl::StatusOr<std::unique_ptr<SafetensorsFile>> open(const std::string& path);
    static absl::StatusOr<std::unique_ptr<SafetensorsFile>> parse(std::shared_ptr<MappedFile> file);
    const std::vector<StTensor>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::string& path() const { return file_->path(); }

private:
    std::shared_ptr<MappedFile> file_;
    std::vector<StTensor> tensors_;
    std::map<std::string, std::string> metadata_;
};

// All tensors of a model directory: the files listed by model.safetensors.index.json when present
// (every listed file must exist and hold the tensors the index says), else every *.safetensors.
// A tensor name present twice is an error naming both files.
class SafetensorsDir {
public:
    static absl::StatusOr<std::unique_ptr<SafetensorsDir>> open(const std::string& dir);
    const std::map<std::string, StTensor>& tensors() const { return tensors_; }
    const StTensor* find(const std::string& name) const;

private:
    std::vector<std::unique_ptr<SafetensorsFile>> files_;
    std::map<std::string, StTensor> tensors_;
};

class SafetensorsWriter {
public:
    // Copies the bytes (tiny and test models only; the big benchmark models are GGUF).
    absl::Status add(const std::string& name, DType type, std::vector<int64_t> shape, const void* data);
    void set_metadata(const std::string& key, const std::string& value);
    absl::Status write(const std::string& path) const;

private:
    struct Entry { std::string name; DType type; std::vector<int64_t> shape; std::vector<uint8_t> bytes; };
    std::vector<Entry> entries_;
    std::map<std::string, std::string> metadata_;
};

}  // namespace dg
