#pragma once

// Shared by the libFuzzer targets: the engine's readers take paths (they memory-map), so each
// input is written to a scratch file first. Only quantlens::Error (and Cancelled) count as a clean
// rejection; any other exception escapes and libFuzzer reports it as a finding.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace quantlens::fuzz {

// A private directory for this fuzzing process (tmpfs when /dev/shm exists), removed at exit.
inline const std::filesystem::path& scratchDirectory() {
    struct Directory {
        std::filesystem::path path;
        Directory() {
            const std::filesystem::path base = std::filesystem::exists("/dev/shm")
                                                   ? std::filesystem::path("/dev/shm")
                                                   : std::filesystem::temp_directory_path();
            path = base / ("quantlens-fuzz-" + std::to_string(::getpid()));
            std::filesystem::create_directories(path);
        }
        ~Directory() {
            std::error_code ignored;
            std::filesystem::remove_all(path, ignored);
        }
    };
    static const Directory directory;
    return directory.path;
}

// Writes `data` to `name` inside the scratch directory and returns its path.
inline std::filesystem::path writeScratch(const std::string& name, const std::uint8_t* data,
                                          std::size_t size) {
    const std::filesystem::path path = scratchDirectory() / name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    return path;
}

// The whole of a file, for copying seed-derived fixed parts (e.g. a valid config beside a fuzzed
// index).
inline std::string readWhole(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace quantlens::fuzz
