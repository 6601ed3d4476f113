// A read-only view of a whole file: mmap'd from disk, or borrowed bytes (fuzzers, tests).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace dg {

class MappedFile {
public:
    static absl::StatusOr<std::shared_ptr<MappedFile>> open(const std::string& path);
    // Does not copy: `data` must outlive the MappedFile.
    static std::shared_ptr<MappedFile> borrow(const uint8_t* data, uint64_t size, std::string name);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    MappedFile() = default;
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
    bool owned_mapping_ = false;
    std::string path_;
};

}  // namespace dg
