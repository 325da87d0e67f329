#include "quantlens/encoding/bit_packing.h"

namespace quantlens {

std::size_t wordsPerRow(std::size_t rowLength, int bits) {
    return (rowLength * static_cast<std::size_t>(bits) + 31) / 32;
}

std::vector<std::uint32_t> packRows(std::span<const std::uint16_t> codes, std::size_t rowLength,
                                    int bits) {
    const std::size_t rows = rowLength == 0 ? 0 : codes.size() / rowLength;
    const std::size_t stride = wordsPerRow(rowLength, bits);
    std::vector<std::uint32_t> words(rows * stride, 0u);
    for (std::size_t r = 0; r < rows; ++r) {
        std::uint32_t* row = words.data() + r * stride;
        for (std::size_t i = 0; i < rowLength; ++i) {
            const std::uint64_t code = codes[r * rowLength + i];
            const std::size_t bit = i * static_cast<std::size_t>(bits);
            const std::size_t word = bit / 32, shift = bit % 32;
            row[word] |= static_cast<std::uint32_t>(code << shift);
            if (shift + static_cast<std::size_t>(bits) > 32)
                row[word + 1] |= static_cast<std::uint32_t>(code >> (32 - shift));
        }
    }
    return words;
}

} // namespace quantlens
