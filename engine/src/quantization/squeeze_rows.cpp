#include "quantization/squeeze_rows.h"

#include "encoding/outlier_rows.h"
#include "quantlens/core/dtype.h"
#include "quantlens/core/error.h"
#include "quantlens/core/parallel.h"
#include "quantlens/encoding/bit_packing.h"
#include "quantlens/quantization/weighted_kmeans.h"
#include "quantlens/runtime/backend.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace quantlens {
namespace {

// Marks the `count` entries of `keys` ranked highest (ties broken by lower index, so the choice is
// deterministic) among those not yet marked.
void markLargest(std::span<const float> keys, std::int64_t count, std::vector<bool>& marked) {
    if (count <= 0) return;
    std::vector<std::uint32_t> candidates;
    candidates.reserve(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i)
        if (!marked[i]) candidates.push_back(static_cast<std::uint32_t>(i));
    count = std::min<std::int64_t>(count, static_cast<std::int64_t>(candidates.size()));
    const auto ranksHigher = [&](std::uint32_t a, std::uint32_t b) {
        return keys[a] != keys[b] ? keys[a] > keys[b] : a < b;
    };
    std::nth_element(candidates.begin(), candidates.begin() + count, candidates.end(), ranksHigher);
    for (std::int64_t i = 0; i < count; ++i)
        marked[candidates[static_cast<std::size_t>(i)]] = true;
}

// Rows are clustered in chunks of this many so cancel is checked between chunks.
constexpr std::int64_t kRowChunk = 64;

} // namespace

void squeezeQuantize(const RowMatrix& weights, const RowMatrix& fisher, const SqueezeConfig& config,
                     const JobContext& job, const std::string& source, QuantizedLayer& layer) {
    const Eigen::Index rows = weights.rows(), cols = weights.cols();
    if (fisher.rows() != rows || fisher.cols() != cols)
        throw Error(source, "Fisher information is " + std::to_string(fisher.rows()) + "×" +
                                std::to_string(fisher.cols()) + " but the layer is " +
                                std::to_string(rows) + "×" + std::to_string(cols));
    if (!fisher.allFinite() || (fisher.array() < 0.0f).any())
        throw Error(source, "Fisher information must be finite and non-negative");
    const std::int64_t total = static_cast<std::int64_t>(rows) * cols;
    const SqueezeSparseCounts counts = squeezeSparseCounts(config, total);

    // Dense-and-sparse (§4.1): the largest magnitudes first, then the most sensitive of the rest.
    std::vector<bool> isSparse(static_cast<std::size_t>(total), false);
    const RowMatrix magnitudes = weights.cwiseAbs();
    markLargest({magnitudes.data(), static_cast<std::size_t>(total)}, counts.byMagnitude, isSparse);
    markLargest({fisher.data(), static_cast<std::size_t>(total)}, counts.byFisher, isSparse);

    const int levels = 1 << config.wbits;
    std::vector<std::uint16_t> codes(static_cast<std::size_t>(total));
    std::vector<float> tables(static_cast<std::size_t>(rows) * levels);
    for (std::int64_t first = 0; first < rows; first += kRowChunk) {
        job.checkpoint();
        parallelFor(std::min(kRowChunk, rows - first), [&](std::int64_t offset) {
            const std::int64_t r = first + offset;
            const std::span<const float> values(weights.row(r).data(),
                                                static_cast<std::size_t>(cols));
            // Sparse values leave the clustering; a row whose Fisher is all zero (never reached
            // by the loss) falls back to plain k-means.
            std::vector<float> importance(fisher.row(r).data(), fisher.row(r).data() + cols);
            for (Eigen::Index j = 0; j < cols; ++j)
                if (isSparse[static_cast<std::size_t>(r * cols + j)]) importance[j] = 0.0f;
            if (std::accumulate(importance.begin(), importance.end(), 0.0) <= 0.0)
                for (Eigen::Index j = 0; j < cols; ++j)
                    importance[j] = isSparse[static_cast<std::size_t>(r * cols + j)] ? 0.0f : 1.0f;
            if (std::accumulate(importance.begin(), importance.end(), 0.0) <= 0.0)
                std::fill(importance.begin(), importance.end(), 1.0f); // the whole row is sparse
            const KMeansResult clusters =
                config.optimalKMeans
                    ? optimalWeightedKMeans(values, importance, levels)
                    : weightedKMeans(values, importance,
                                     kmeansPlusPlusSeeds(values, importance, levels,
                                                         static_cast<std::uint64_t>(r)),
                                     config.kmeansIterations);
            // The stored table is fp16.
            for (std::size_t k = 0; k < clusters.centroids.size(); ++k)
                tables[static_cast<std::size_t>(r) * levels + k] =
                    f16ToFloat(floatToF16(static_cast<float>(clusters.centroids[k])));
        });
    }
    // Codes pick the nearest stored centroid.
    job.checkpoint();
    job.backend().assignNearest(weights, tables, levels, codes);

    layer.tensors["codes"] = StoredTensor::of(
        "U32",
        {rows,
         static_cast<std::int64_t>(wordsPerRow(static_cast<std::size_t>(cols), config.wbits))},
        packRows(codes, static_cast<std::size_t>(cols), config.wbits));
    layer.tensors["lut"] = StoredTensor::f16({rows, levels}, tables);
    if (counts.total() == 0) return;
    OutlierRows outliers(rows, cols);
    for (Eigen::Index r = 0; r < rows; ++r)
        for (Eigen::Index j = 0; j < cols; ++j)
            if (isSparse[static_cast<std::size_t>(r * cols + j)])
                outliers.add(r, j, f16ToFloat(floatToF16(weights(r, j))));
    outliers.store(layer);
}

} // namespace quantlens
