#include "quantization/affine_columns.h"

#include "quantlens/encoding/bit_packing.h"

namespace quantlens {

AffineColumns::AffineColumns(Eigen::Index rows, Eigen::Index cols, int bits, int groupsize)
    : rows_(rows), cols_(cols), groups_((cols + groupsize - 1) / groupsize), bits_(bits),
      groupsize_(groupsize), grids_(static_cast<std::size_t>(rows)),
      codes_(static_cast<std::size_t>(rows * cols)),
      scales_(static_cast<std::size_t>(rows * groups_)), zeros_(scales_.size()) {}

void AffineColumns::beginGroup(const Eigen::MatrixXf& weights, Eigen::Index first,
                               Eigen::Index end) {
    const Eigen::Index group = first / groupsize_;
    for (Eigen::Index r = 0; r < rows_; ++r) {
        const MinMaxGrid grid =
            fitMinMax(&weights(r, first), static_cast<std::size_t>(end - first),
                      static_cast<std::size_t>(weights.outerStride()), bits_, GridRule::Affine);
        grids_[r] = grid;
        scales_[r * groups_ + group] = grid.scale;
        zeros_[r * groups_ + group] = grid.zero;
    }
}

void AffineColumns::quantizeColumn(Eigen::Index j, Eigen::Ref<Eigen::VectorXf> column, float) {
    for (Eigen::Index r = 0; r < rows_; ++r) {
        const int code = grids_[r].code(column[r]);
        codes_[r * cols_ + j] = static_cast<std::uint16_t>(code);
        column[r] = grids_[r].dequantize(code);
    }
}

void AffineColumns::store(QuantizedLayer& layer) {
    const std::size_t words = wordsPerRow(static_cast<std::size_t>(cols_), bits_);
    layer.tensors["codes"] =
        StoredTensor::of("U32", {rows_, static_cast<std::int64_t>(words)},
                         packRows(codes_, static_cast<std::size_t>(cols_), bits_));
    layer.tensors["scales"] = StoredTensor::f16({rows_, groups_}, scales_);
    layer.tensors["zeros"] = StoredTensor::f16({rows_, groups_}, zeros_);
}

} // namespace quantlens
