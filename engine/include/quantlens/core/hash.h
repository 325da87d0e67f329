#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace quantlens {

// FNV-1a (64 bits) of some bytes, continuing from `hash`: a stable fingerprint (seeds, run
// identities), not a cryptographic one.
inline constexpr std::uint64_t kFnv1aOffset = 0xcbf29ce484222325ull;
inline std::uint64_t fnv1a(const void* data, std::size_t size, std::uint64_t hash = kFnv1aOffset) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < size; ++i)
        hash = (hash ^ bytes[i]) * 0x100000001b3ull;
    return hash;
}
inline std::uint64_t fnv1a(std::string_view text) {
    return fnv1a(text.data(), text.size());
}

} // namespace quantlens
