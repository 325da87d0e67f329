#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

namespace quantlens {

// A read-only memory map of a whole file. Weights are viewed in place, never copied.
class MappedFile {
public:
    explicit MappedFile(const std::filesystem::path& path);
    ~MappedFile();
    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&&) = delete;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    std::span<const std::byte> bytes() const { return {data_, size_}; }
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};

// Asks the kernel to reclaim the pages of a range a job is done with (file-backed pages are
// re-read if touched again; nothing is ever lost). Streaming jobs call it so
// that their footprint stays at the part of the model in use, not the whole mapping.
void releaseMappedPages(const void* data, std::size_t bytes);

} // namespace quantlens
