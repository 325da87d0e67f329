#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

namespace quantlens {

// Writes a file so that it appears whole or not at all: bytes go to a temporary file beside the
// target, which commit() fsyncs and renames over it. Destroyed without commit() (an error, a
// cancel), it removes the temporary file and leaves any existing target untouched.
class AtomicFile {
public:
    explicit AtomicFile(const std::filesystem::path& target);
    ~AtomicFile();
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;

    void write(const void* data, std::size_t size);
    void commit();

private:
    std::filesystem::path target_;
    std::filesystem::path temporary_;
    int fd_ = -1;
    bool committed_ = false;
};

} // namespace quantlens
