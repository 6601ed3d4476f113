// Read-only whole-file mappings. Loaders hand out pointers into the mapping, so it lives as long as
// any shared_ptr to it.
#include "engine/formats/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"

namespace dg {

namespace {

absl::Status errno_error(const std::string& path, const char* what, int err) {
    const std::string msg = absl::StrFormat("%s: %s: %s", path, what, std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::UnavailableError(msg);
}

}  // namespace

absl::StatusOr<std::shared_ptr<MappedFile>> MappedFile::open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_error(path, "cannot open", errno);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        return errno_error(path, "cannot stat", err);
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        return absl::InvalidArgumentError(absl::StrFormat("%s: not a regular file", path));
    }
    std::shared_ptr<MappedFile> f(new MappedFile());
    f->path_ = path;
    f->size_ = static_cast<uint64_t>(st.st_size);
    if (f->size_ > 0) {
        // mmap of length 0 fails, so empty files keep data_ == nullptr and size_ == 0.
        void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            return errno_error(path, "cannot mmap", err);
        }
        f->data_ = static_cast<const uint8_t*>(p);
        f->owned_mapping_ = true;
    }
    ::close(fd);  // the mapping stays valid without the descriptor
    return f;
}

std::shared_ptr<MappedFile> MappedFile::borrow(const uint8_t* data, uint64_t size, std::string name) {
    std::shared_ptr<MappedFile> f(new MappedFile());
    f->data_ = data;
    f->size_ = size;
    f->path_ = std::move(name);
    return f;
}

MappedFile::~MappedFile() {
    if (owned_mapping_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace dg
