#pragma once

#include "quantlens/core/job.h"

#include <Eigen/Core>

namespace quantlens {

// A method's per-column rule inside the OBS loop.
class ColumnQuantizer {
public:
    virtual ~ColumnQuantizer() = default;
    // Fits statistics for columns [first, end) from their current (error-updated) values.
    virtual void beginGroup(const Eigen::MatrixXf& weights, Eigen::Index first,
                            Eigen::Index end) = 0;
    // Replaces column j with its reconstruction (quantized, or kept as an outlier).
    virtual void quantizeColumn(Eigen::Index j, Eigen::Ref<Eigen::VectorXf> column,
                                float uDiagonal) = 0;
};

// Quantizes `weights` [out, in] column by column, feeding each column's error, scaled by the upper
// Cholesky factor U of H⁻¹, into the columns not yet quantized (GPTQ, Frantar et al. 2022, Alg. 1;
// lazy batch updates over blocks of `blocksize` columns; the feedback past each block runs on the
// active backend). On return `weights` holds the reconstruction. Groups of `groupsize` columns
// start at multiples of it.
void obsQuantize(Eigen::MatrixXf& weights, const Eigen::MatrixXf& inverseCholesky, int blocksize,
                 int groupsize, ColumnQuantizer& quantizer, const JobContext& job);

// The same walk without error feedback: round-to-nearest.
void plainQuantize(Eigen::MatrixXf& weights, int groupsize, ColumnQuantizer& quantizer);

} // namespace quantlens
