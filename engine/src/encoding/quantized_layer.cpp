#include "quantlens/encoding/quantized_layer.h"

#include "encoding/min_max_grid.h"
#include "quantlens/encoding/bit_packing.h"

#include <algorithm>

namespace quantlens {
namespace {

std::span<const std::uint32_t> words(const StoredTensor& t) {
    return {reinterpret_cast<const std::uint32_t*>(t.bytes.data()), t.bytes.size() / 4};
}

// First-level grid of every (row, group), decoded from what is stored.
std::vector<MinMaxGrid> firstLevelGrids(const QuantizedLayer& layer, int groups) {
    std::vector<MinMaxGrid> grids(static_cast<std::size_t>(layer.rows) * groups);
    const int maxCode = (1 << weightBits(layer.config)) - 1;
    if (const auto* spqr = std::get_if<SpqrConfig>(&layer.config)) {
        const int rowGroups = (layer.rows + spqr->statsGroupsize - 1) / spqr->statsGroupsize;
        const auto decode = [&](const char* codesName, const char* statsName, int group, int row) {
            const StoredTensor& stats = layer.tensors.at(statsName);
            const std::size_t at =
                (static_cast<std::size_t>(group) * rowGroups + row / spqr->statsGroupsize) * 2;
            const MinMaxGrid grid{stats.f16At(at), stats.f16At(at + 1), (1 << spqr->qqBits) - 1};
            const std::uint32_t* row0 =
                words(layer.tensors.at(codesName)).data() +
                group * wordsPerRow(static_cast<std::size_t>(layer.rows), spqr->qqBits);
            return grid.dequantize(
                static_cast<int>(unpackCode(row0, static_cast<std::size_t>(row), spqr->qqBits)));
        };
        for (int g = 0; g < groups; ++g)
            for (int r = 0; r < layer.rows; ++r)
                grids[static_cast<std::size_t>(r) * groups + g] = MinMaxGrid{
                    std::max(decode("scale_codes", "scale_stats", g, r), kMinimumSpqrScale),
                    decode("zero_codes", "zero_stats", g, r), maxCode};
    } else {
        const StoredTensor& scales = layer.tensors.at("scales");
        const StoredTensor& zeros = layer.tensors.at("zeros");
        for (std::size_t i = 0; i < grids.size(); ++i)
            grids[i] = MinMaxGrid{scales.f16At(i), zeros.f16At(i), maxCode};
    }
    return grids;
}

} // namespace

std::size_t QuantizedLayer::storedBytes() const {
    std::size_t bytes = 0;
    for (const auto& [name, tensor] : tensors)
        bytes += tensor.bytes.size();
    return bytes;
}

double QuantizedLayer::bitsPerParameter() const {
    return static_cast<double>(storedBytes()) * 8.0 / (static_cast<double>(rows) * cols);
}

double QuantizedLayer::paperBitsPerParameter() const {
    const double parameters = static_cast<double>(rows) * cols;
    const int wbits = weightBits(config);
    if (std::holds_alternative<SqueezeConfig>(config))
        return wbits + 16.0 * (1 << wbits) / cols + 32.0 * outlierFraction();
    const double groups = std::ceil(static_cast<double>(cols) / statisticsGroupsize(config, cols));
    if (const auto* spqr = std::get_if<SpqrConfig>(&config)) {
        const double rowGroups = std::ceil(static_cast<double>(rows) / spqr->statsGroupsize);
        return wbits + 2.0 * spqr->qqBits * rows * groups / parameters +
               64.0 * groups * rowGroups / parameters + 32.0 * outlierFraction();
    }
    return wbits + 32.0 * rows * groups / parameters;
}

RowMatrix QuantizedLayer::dequantize() const {
    const int wbits = weightBits(config);
    const std::span<const std::uint32_t> codes = words(tensors.at("codes"));
    const std::size_t stride = wordsPerRow(static_cast<std::size_t>(cols), wbits);
    const auto code = [&](int r, int j) {
        return static_cast<int>(
            unpackCode(codes.data() + r * stride, static_cast<std::size_t>(j), wbits));
    };

    RowMatrix permuted(rows, cols);
    if (std::holds_alternative<SqueezeConfig>(config)) {
        const StoredTensor& lut = tensors.at("lut");
        for (int r = 0; r < rows; ++r)
            for (int j = 0; j < cols; ++j)
                permuted(r, j) = lut.f16At((static_cast<std::size_t>(r) << wbits) + code(r, j));
    } else {
        const int groupsize = statisticsGroupsize(config, cols);
        const int groups = (cols + groupsize - 1) / groupsize;
        const std::vector<MinMaxGrid> grids = firstLevelGrids(*this, groups);
        for (int r = 0; r < rows; ++r)
            for (int j = 0; j < cols; ++j)
                permuted(r, j) =
                    grids[static_cast<std::size_t>(r) * groups + j / groupsize].dequantize(
                        code(r, j));
    }
    if (const auto it = tensors.find("outlier_row_ptr"); it != tensors.end()) {
        const StoredTensor& columns = tensors.at("outlier_cols");
        const StoredTensor& values = tensors.at("outlier_values");
        for (int r = 0; r < rows; ++r)
            for (auto k = it->second.indexAt(r); k < it->second.indexAt(r + 1); ++k)
                permuted(r, columns.indexAt(k)) = values.f16At(k);
    }
    const auto perm = tensors.find("perm");
    if (perm == tensors.end()) return permuted;
    RowMatrix original(rows, cols);
    for (int j = 0; j < cols; ++j)
        original.col(perm->second.indexAt(j)) = permuted.col(j);
    return original;
}

} // namespace quantlens
