#include "quantization/spqr_columns.h"

#include "quantlens/core/parallel.h"
#include "quantlens/encoding/bit_packing.h"

#include <cmath>
#include <limits>

namespace quantlens {
namespace {

float hessianWeightedError(const float* values, std::size_t count, std::size_t stride,
                           const float* uDiagonal, const MinMaxGrid& grid, std::size_t skip) {
    float error = 0.0f;
    for (std::size_t k = 0; k < count; ++k) {
        if (k == skip) continue;
        const float v = values[k * stride];
        const float e = (v - grid.roundTrip(v)) / uDiagonal[k];
        error += e * e;
    }
    return error;
}

} // namespace

SpqrColumns::SpqrColumns(const SpqrConfig& config, Eigen::Index rows, Eigen::Index cols,
                         int groupsize, Eigen::VectorXf uDiagonal, float threshold)
    : config_(config), rows_(rows), cols_(cols), groups_((cols + groupsize - 1) / groupsize),
      rowGroups_((rows + config.statsGroupsize - 1) / config.statsGroupsize), groupsize_(groupsize),
      uDiagonal_(std::move(uDiagonal)), threshold_(threshold),
      grids_(static_cast<std::size_t>(rows)), codes_(static_cast<std::size_t>(rows * cols)),
      scaleCodes_(static_cast<std::size_t>(groups_ * rows)), zeroCodes_(scaleCodes_.size()),
      scaleStats_(static_cast<std::size_t>(groups_ * rowGroups_ * 2)),
      zeroStats_(scaleStats_.size()), outliers_(rows, cols) {}

// SpQR §3.3: statistics are fitted without the weights that are likely outliers, so these do not
// stretch the range. A weight is a likely outlier when leaving it out of the fit lowers the group's
// Hessian-weighted error by more than the threshold (the paper's leave-one-out reduction, which
// sets fewer weights aside than testing each weight's own leave-one-out error: measured on
// stories260K, the reduction test gives the better bits/perplexity trade-off for τ ≤ 1); likely
// outliers are replaced by the mean of the others for the fit.
MinMaxGrid SpqrColumns::fitRowWithoutOutliers(const float* values, std::size_t count,
                                              std::size_t stride, const float* uDiagonal) const {
    const int bits = config_.wbits;
    const MinMaxGrid all = fitMinMax(values, count, stride, bits, GridRule::SpqrWeights);
    if (!std::isfinite(threshold_) || count < 3) return all;

    // Leaving one weight out only changes the range when it is the minimum or the maximum.
    std::size_t lowest = 0, highest = 0;
    for (std::size_t k = 1; k < count; ++k) {
        if (values[k * stride] < values[lowest * stride]) lowest = k;
        if (values[k * stride] > values[highest * stride]) highest = k;
    }
    float secondLow = std::numeric_limits<float>::infinity(), secondHigh = -secondLow;
    for (std::size_t k = 0; k < count; ++k) {
        if (k != lowest) secondLow = std::min(secondLow, values[k * stride]);
        if (k != highest) secondHigh = std::max(secondHigh, values[k * stride]);
    }
    const float baseline = hessianWeightedError(values, count, stride, uDiagonal, all, count);

    float keptSum = 0.0f;
    std::size_t kept = 0;
    std::vector<bool> likelyOutlier(count);
    for (std::size_t k = 0; k < count; ++k) {
        const float low = k == lowest ? secondLow : values[lowest * stride];
        const float high = k == highest ? secondHigh : values[highest * stride];
        const MinMaxGrid without = gridForRange(low, high, bits, GridRule::SpqrWeights);
        likelyOutlier[k] =
            baseline - hessianWeightedError(values, count, stride, uDiagonal, without, k) >
            threshold_;
        if (!likelyOutlier[k]) {
            keptSum += values[k * stride];
            ++kept;
        }
    }
    if (kept == count || kept == 0) return all;
    const float mean = keptSum / static_cast<float>(kept);
    std::vector<float> substituted(count);
    for (std::size_t k = 0; k < count; ++k)
        substituted[k] = likelyOutlier[k] ? mean : values[k * stride];
    return fitMinMax(substituted.data(), count, 1, bits, GridRule::SpqrWeights);
}

void SpqrColumns::quantizeStatistic(std::vector<float>& values, Eigen::Index group,
                                    std::vector<std::uint16_t>& codes,
                                    std::vector<float>& stats) const {
    const Eigen::Index beta2 = config_.statsGroupsize;
    for (Eigen::Index rg = 0; rg < rowGroups_; ++rg) {
        const Eigen::Index first = rg * beta2, count = std::min(beta2, rows_ - first);
        const MinMaxGrid grid = fitMinMax(values.data() + first, static_cast<std::size_t>(count), 1,
                                          config_.qqBits, GridRule::SpqrStatistics);
        stats[(group * rowGroups_ + rg) * 2] = grid.scale;
        stats[(group * rowGroups_ + rg) * 2 + 1] = grid.zero;
        for (Eigen::Index r = first; r < first + count; ++r) {
            const int code = grid.code(values[r]);
            codes[group * rows_ + r] = static_cast<std::uint16_t>(code);
            values[r] = grid.dequantize(code);
        }
    }
}

void SpqrColumns::beginGroup(const Eigen::MatrixXf& weights, Eigen::Index first, Eigen::Index end) {
    const Eigen::Index group = first / groupsize_;
    const auto count = static_cast<std::size_t>(end - first);
    std::vector<float> scales(static_cast<std::size_t>(rows_)), zeros(scales.size());
    parallelFor(rows_, [&](std::int64_t r) {
        const MinMaxGrid grid = fitRowWithoutOutliers(
            &weights(r, first), count, static_cast<std::size_t>(weights.outerStride()),
            uDiagonal_.data() + first);
        scales[r] = grid.scale;
        zeros[r] = grid.zero;
    });
    quantizeStatistic(scales, group, scaleCodes_, scaleStats_);
    quantizeStatistic(zeros, group, zeroCodes_, zeroStats_);
    for (Eigen::Index r = 0; r < rows_; ++r)
        grids_[r] =
            MinMaxGrid{std::max(scales[r], kMinimumSpqrScale), zeros[r], (1 << config_.wbits) - 1};
}

void SpqrColumns::quantizeColumn(Eigen::Index j, Eigen::Ref<Eigen::VectorXf> column,
                                 float uDiagonal) {
    for (Eigen::Index r = 0; r < rows_; ++r) {
        const float w = column[r];
        const int code = grids_[r].code(w);
        const float reconstructed = grids_[r].dequantize(code);
        const float error = (w - reconstructed) / uDiagonal;
        if (error * error > threshold_) {
            const float kept = f16ToFloat(floatToF16(w));
            outliers_.add(r, j, kept);
            codes_[r * cols_ + j] = static_cast<std::uint16_t>(grids_[r].code(0.0f));
            column[r] = kept;
        } else {
            codes_[r * cols_ + j] = static_cast<std::uint16_t>(code);
            column[r] = reconstructed;
        }
    }
}

void SpqrColumns::store(QuantizedLayer& layer) {
    const auto packed = [](const std::vector<std::uint16_t>& codes, Eigen::Index rows,
                           Eigen::Index length, int bits) {
        return StoredTensor::of(
            "U32",
            {rows, static_cast<std::int64_t>(wordsPerRow(static_cast<std::size_t>(length), bits))},
            packRows(codes, static_cast<std::size_t>(length), bits));
    };
    layer.tensors["codes"] = packed(codes_, rows_, cols_, config_.wbits);
    layer.tensors["scale_codes"] = packed(scaleCodes_, groups_, rows_, config_.qqBits);
    layer.tensors["zero_codes"] = packed(zeroCodes_, groups_, rows_, config_.qqBits);
    layer.tensors["scale_stats"] = StoredTensor::f16({groups_, rowGroups_, 2}, scaleStats_);
    layer.tensors["zero_stats"] = StoredTensor::f16({groups_, rowGroups_, 2}, zeroStats_);

    outliers_.store(layer);
}

} // namespace quantlens
