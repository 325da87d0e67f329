#include "quantlens/io/atomic_file.h"

#include "io/staging_names.h"
#include "quantlens/core/error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace quantlens {
namespace {

std::string errnoText() {
    return std::strerror(errno);
}

} // namespace

AtomicFile::AtomicFile(const std::filesystem::path& target) : target_(target) {
    const std::filesystem::path directory =
        target.parent_path().empty() ? std::filesystem::path(".") : target.parent_path();
    removeAbandonedStaging(target);
    for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
        temporary_ = stagingPath(target);
        fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd_ < 0 && errno != EEXIST) break;
    }
    if (fd_ < 0)
        throw Error(target.string(),
                    "cannot create a temporary file in " + directory.string() + ": " + errnoText());
}

AtomicFile::~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temporary_.c_str());
}

void AtomicFile::write(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    while (size > 0) {
        const ::ssize_t written = ::write(fd_, bytes, size);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) throw Error(target_.string(), "write failed: " + errnoText());
        bytes += written;
        size -= static_cast<std::size_t>(written);
    }
}

void AtomicFile::commit() {
    if (::fsync(fd_) != 0) throw Error(target_.string(), "write failed: " + errnoText());
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw Error(target_.string(), "write failed: " + errnoText());
    if (::rename(temporary_.c_str(), target_.c_str()) != 0)
        throw Error(target_.string(), "cannot move the written file into place: " + errnoText());
    committed_ = true;
}

} // namespace quantlens
