#pragma once

#include "encoding/min_max_grid.h"
#include "encoding/outlier_rows.h"
#include "quantization/obs_quantizer.h"
#include "quantlens/encoding/quantized_layer.h"

#include <vector>

namespace quantlens {

// SpQR's column rule (Dettmers et al. 2023, Alg. 1): outlier-aware first-level statistics per row
// and group of β1 columns, themselves quantized to qq bits over groups of β2 rows; a weight whose
// OBS error ((w − q(w)) / U_jj)² exceeds the threshold is kept in fp16 as an outlier.
class SpqrColumns : public ColumnQuantizer {
public:
    // `threshold` is τ·scale (absolute); infinity disables outliers. `uDiagonal` is diag(U).
    SpqrColumns(const SpqrConfig& config, Eigen::Index rows, Eigen::Index cols, int groupsize,
                Eigen::VectorXf uDiagonal, float threshold);
    void beginGroup(const Eigen::MatrixXf& weights, Eigen::Index first, Eigen::Index end) override;
    void quantizeColumn(Eigen::Index j, Eigen::Ref<Eigen::VectorXf> column,
                        float uDiagonal) override;

    // Moves codes, both levels of statistics and the CSR outliers into `layer`.
    void store(QuantizedLayer& layer);

private:
    MinMaxGrid fitRowWithoutOutliers(const float* values, std::size_t count, std::size_t stride,
                                     const float* uDiagonal) const;
    // Quantizes one statistic (scale or zero) of every row to qq bits over groups of β2 rows.
    void quantizeStatistic(std::vector<float>& values, Eigen::Index group,
                           std::vector<std::uint16_t>& codes, std::vector<float>& stats) const;

    SpqrConfig config_;
    Eigen::Index rows_, cols_, groups_, rowGroups_;
    int groupsize_;
    Eigen::VectorXf uDiagonal_;
    float threshold_;
    std::vector<MinMaxGrid> grids_;
    std::vector<std::uint16_t> codes_;                  // [rows, cols]
    std::vector<std::uint16_t> scaleCodes_, zeroCodes_; // [groups, rows]
    std::vector<float> scaleStats_, zeroStats_;         // [groups, rowGroups, 2]: scale, zero
    OutlierRows outliers_;
};

} // namespace quantlens
