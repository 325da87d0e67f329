#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace quantlens {

// The one bit-packer. Codes of `bits` bits (1..16) are packed LSB-first into 32-bit words, each
// row of `rowLength` codes starting on a fresh word (rows stay addressable); a code may straddle
// two words.
std::size_t wordsPerRow(std::size_t rowLength, int bits);
std::vector<std::uint32_t> packRows(std::span<const std::uint16_t> codes, std::size_t rowLength,
                                    int bits);

inline std::uint32_t unpackCode(const std::uint32_t* row, std::size_t index, int bits) {
    const std::size_t bit = index * static_cast<std::size_t>(bits);
    const std::size_t word = bit / 32, shift = bit % 32;
    std::uint64_t window = row[word] >> shift;
    if (shift + static_cast<std::size_t>(bits) > 32)
        window |= static_cast<std::uint64_t>(row[word + 1]) << (32 - shift);
    return static_cast<std::uint32_t>(window & ((1u << bits) - 1u));
}

} // namespace quantlens
