#pragma once

// Shared by the libFuzzer targets: the engine's readers take paths (they memory-map), so each
// input is written to a scratch file first. Only quantlens::Error (and Cancelled) count as a clean
// rejection; any other exception escapes and libFuzzer reports it as a finding.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
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

// A scratch subdirectory holding copies of `files` (names inside ../shared/data's
// `dataSubdirectory`): the fixed part of a model directory whose other file is fuzzed.
inline std::filesystem::path scratchModelDirectory(const std::string& name,
                                                   const std::string& dataSubdirectory,
                                                   std::initializer_list<const char*> files) {
    const std::filesystem::path dir = scratchDirectory() / name;
    const std::filesystem::path source =
        std::filesystem::path(QUANTLENS_DATA_DIR) / dataSubdirectory;
    std::filesystem::create_directories(dir);
    for (const char* file : files)
        std::filesystem::copy_file(source / file, dir / file,
                                   std::filesystem::copy_options::overwrite_existing);
    return dir;
}

} // namespace quantlens::fuzz
