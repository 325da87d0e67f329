#include "formats/original_order.h"

#include "quantlens/encoding/bit_packing.h"

namespace quantlens {

OriginalOrder originalOrder(const QuantizedLayer& layer, const CompressedMatrix& m) {
    const int rows = layer.rows, cols = layer.cols, bits = m.wbits;
    OriginalOrder out{std::vector<std::uint16_t>(static_cast<std::size_t>(rows) * cols),
                      std::vector<std::int32_t>(static_cast<std::size_t>(cols))};
    for (int j = 0; j < cols; ++j)
        out.group[static_cast<std::size_t>(m.permuted() ? m.originalColumn(j) : j)] =
            j / m.groupsize;
    const auto* words =
        reinterpret_cast<const std::uint32_t*>(layer.tensors.at("codes").bytes.data());
    const std::size_t stride = wordsPerRow(static_cast<std::size_t>(cols), bits);
    for (int r = 0; r < rows; ++r)
        for (int j = 0; j < cols; ++j)
            out.codes[static_cast<std::size_t>(r) * cols +
                      (m.permuted() ? m.originalColumn(j) : j)] =
                static_cast<std::uint16_t>(unpackCode(words + r * stride, std::size_t(j), bits));
    return out;
}

} // namespace quantlens
