#include "quantlens/quantization/layer_quantizer.h"

#include "quantization/affine_columns.h"
#include "quantization/obs_quantizer.h"
#include "quantization/spqr_columns.h"
#include "quantization/squeeze_rows.h"
#include "quantlens/core/error.h"
#include "quantlens/quantization/hessian.h"
#include "quantlens/runtime/backend.h"

#include <limits>

namespace quantlens {
namespace {

// W with its columns in quantization order and dead inputs zeroed (their weights can never matter).
Eigen::MatrixXf orderedWeights(const RowMatrix& weights, const PreparedHessian& h) {
    Eigen::MatrixXf ordered(weights.rows(), weights.cols());
    for (Eigen::Index j = 0; j < weights.cols(); ++j) {
        const int source = h.permutation[static_cast<std::size_t>(j)];
        if (h.deadColumns[static_cast<std::size_t>(source)])
            ordered.col(j).setZero();
        else
            ordered.col(j) = weights.col(source);
    }
    return ordered;
}

void storePermutation(QuantizedLayer& layer, const PreparedHessian& h, bool actOrder) {
    if (!actOrder) return;
    layer.tensors["perm"] = StoredTensor::indices({layer.cols}, h.permutation, layer.cols - 1);
}

// SpQR's outlier scale (Alg. 1): mean over columns of var_i(W_ij) / U_jj².
float outlierScale(const Eigen::MatrixXf& w, const Eigen::MatrixXf& u) {
    double total = 0.0;
    for (Eigen::Index j = 0; j < w.cols(); ++j) {
        const double mean = w.col(j).mean();
        const double variance =
            (w.col(j).array() - mean).square().sum() / std::max<Eigen::Index>(w.rows() - 1, 1);
        total += variance / (static_cast<double>(u(j, j)) * u(j, j));
    }
    return static_cast<float>(total / w.cols());
}

} // namespace

QuantizedLayer quantizeLayer(const RowMatrix& weights, const LayerCalibration& calibration,
                             const QuantConfig& config, const JobContext& job,
                             const std::string& source) {
    validate(config);
    const Eigen::Index rows = weights.rows(), cols = weights.cols();
    if (rows == 0 || cols == 0) throw Error(source, "cannot quantize an empty layer");
    if (!weights.allFinite()) throw Error(source, "weights contain NaN or Inf; cannot quantize");
    QuantizedLayer layer;
    layer.config = config;
    layer.rows = static_cast<int>(rows);
    layer.cols = static_cast<int>(cols);

    if (const auto* rtn = std::get_if<RtnConfig>(&config)) {
        const int groupsize = effectiveGroupsize(rtn->groupsize, static_cast<int>(cols));
        Eigen::MatrixXf w = weights;
        AffineColumns columns(rows, cols, rtn->wbits, groupsize);
        plainQuantize(w, groupsize, columns);
        columns.store(layer);
        return layer;
    }

    if (const auto* squeeze = std::get_if<SqueezeConfig>(&config)) {
        if (!calibration.fisher)
            throw Error(source, "squeezellm needs the Fisher information of the layer");
        squeezeQuantize(weights, *calibration.fisher, *squeeze, job, source, layer);
        return layer;
    }

    const Eigen::MatrixXf* hessian = calibration.hessian;
    if (!hessian) throw Error(source, methodName(config) + " needs a calibration Hessian");
    if (hessian->rows() != cols || hessian->cols() != cols)
        throw Error(source, "calibration Hessian is " + std::to_string(hessian->rows()) + "×" +
                                std::to_string(hessian->cols()) + " but the layer has " +
                                std::to_string(cols) + " inputs");

    if (const auto* gptq = std::get_if<GptqConfig>(&config)) {
        const PreparedHessian h =
            prepareHessian(job.backend(), *hessian, gptq->percdamp, gptq->actOrder, source);
        const int groupsize = effectiveGroupsize(gptq->groupsize, static_cast<int>(cols));
        Eigen::MatrixXf w = orderedWeights(weights, h);
        AffineColumns columns(rows, cols, gptq->wbits, groupsize);
        obsQuantize(w, h.inverseCholesky, gptq->blocksize, groupsize, columns, job);
        columns.store(layer);
        storePermutation(layer, h, gptq->actOrder);
        return layer;
    }

    const SpqrConfig& spqr = std::get<SpqrConfig>(config);
    const PreparedHessian h =
        prepareHessian(job.backend(), *hessian, spqr.percdamp, spqr.actOrder, source);
    const int groupsize = effectiveGroupsize(spqr.groupsize, static_cast<int>(cols));
    Eigen::MatrixXf w = orderedWeights(weights, h);
    const float threshold =
        std::isinf(spqr.outlierThreshold)
            ? std::numeric_limits<float>::infinity()
            : static_cast<float>(spqr.outlierThreshold) * outlierScale(w, h.inverseCholesky);
    SpqrColumns columns(spqr, rows, cols, groupsize, h.inverseCholesky.diagonal(), threshold);
    obsQuantize(w, h.inverseCholesky, spqr.blocksize, groupsize, columns, job);
    columns.store(layer);
    storePermutation(layer, h, spqr.actOrder);
    return layer;
}

} // namespace quantlens
