#include "quantization/obs_quantizer.h"

#include "quantlens/runtime/backend.h"

#include <algorithm>

namespace quantlens {

void obsQuantize(Eigen::MatrixXf& weights, const Eigen::MatrixXf& inverseCholesky, int blocksize,
                 int groupsize, ColumnQuantizer& quantizer, const JobContext& job) {
    const Eigen::Index rows = weights.rows(), cols = weights.cols();
    const Eigen::MatrixXf& u = inverseCholesky;
    const std::unique_ptr<ObsTrailingColumns> trailing =
        job.backend().obsTrailingColumns(weights, inverseCholesky);
    Eigen::MatrixXf errors(rows, blocksize);
    Eigen::VectorXf original(rows);
    for (Eigen::Index begin = 0; begin < cols; begin += blocksize) {
        job.checkpoint();
        const Eigen::Index end = std::min<Eigen::Index>(begin + blocksize, cols);
        trailing->fetch(begin, end);
        for (Eigen::Index j = begin; j < end; ++j) {
            if (j % groupsize == 0) {
                // A group wider than the block fits its statistics to later columns as they stand
                // now, with the feedback of every earlier block.
                const Eigen::Index groupEnd = std::min<Eigen::Index>(j + groupsize, cols);
                if (groupEnd > end) trailing->fetch(end, groupEnd);
                quantizer.beginGroup(weights, j, groupEnd);
            }
            original = weights.col(j);
            quantizer.quantizeColumn(j, weights.col(j), u(j, j));
            errors.col(j - begin) = (original - weights.col(j)) / u(j, j);
            const Eigen::Index rest = end - j - 1;
            weights.middleCols(j + 1, rest).noalias() -=
                errors.col(j - begin) * u.row(j).segment(j + 1, rest);
        }
        trailing->feedBack(errors.leftCols(end - begin), begin, end);
    }
}

void plainQuantize(Eigen::MatrixXf& weights, int groupsize, ColumnQuantizer& quantizer) {
    for (Eigen::Index j = 0; j < weights.cols(); ++j) {
        if (j % groupsize == 0)
            quantizer.beginGroup(weights, j, std::min<Eigen::Index>(j + groupsize, weights.cols()));
        quantizer.quantizeColumn(j, weights.col(j), 1.0f);
    }
}

} // namespace quantlens
