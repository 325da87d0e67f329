#pragma once

#include "encoding/min_max_grid.h"
#include "quantization/obs_quantizer.h"
#include "quantlens/encoding/quantized_layer.h"

#include <vector>

namespace quantlens {

// RTN's and GPTQ's column rule: per row and group, min-max statistics stored as fp16 scale and
// fp16 (integer) zero.
class AffineColumns : public ColumnQuantizer {
public:
    AffineColumns(Eigen::Index rows, Eigen::Index cols, int bits, int groupsize);
    void beginGroup(const Eigen::MatrixXf& weights, Eigen::Index first, Eigen::Index end) override;
    void quantizeColumn(Eigen::Index j, Eigen::Ref<Eigen::VectorXf> column,
                        float uDiagonal) override;

    // Moves the collected codes and statistics into `layer` (codes, scales, zeros).
    void store(QuantizedLayer& layer);

private:
    Eigen::Index rows_, cols_, groups_;
    int bits_, groupsize_;
    std::vector<MinMaxGrid> grids_; // current group's grid per row
    std::vector<std::uint16_t> codes_;
    std::vector<float> scales_, zeros_; // [rows, groups]
};

} // namespace quantlens
