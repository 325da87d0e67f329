#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

namespace quantlens::gpu {

// Whether `needBytes` fit a device with `freeBytes` free, a tenth of which stays spare for cuBLAS's
// workspaces.
inline bool fitsFreeMemory(std::size_t needBytes, std::size_t freeBytes) {
    return needBytes <= freeBytes / 10 * 9;
}

// "needs 12.3 GiB, and 8.1 GiB are free": why a device path does not fit.
inline std::string memoryShortfall(std::size_t needBytes, std::size_t freeBytes) {
    char text[96];
    std::snprintf(text, sizeof text, "needs %.1f GiB, and %.1f GiB are free",
                  static_cast<double>(needBytes) / (1ull << 30),
                  static_cast<double>(freeBytes) / (1ull << 30));
    return text;
}

} // namespace quantlens::gpu
