#pragma once

#include "quantlens/job.h"
#include "quantlens/quantized_layer.h"

#include <Eigen/Core>

namespace quantlens {

// Quantizes W [out, in] with the method in `config`. `hessian` (H = 2·XᵀX/n over the layer's
// calibration inputs) is required by GPTQ and SpQR and ignored by RTN. Deterministic: the same
// inputs give the same bytes.
QuantizedLayer quantizeLayer(const RowMatrix& weights, const Eigen::MatrixXf* hessian,
                             const QuantConfig& config, const JobContext& job,
                             const std::string& source = "");

} // namespace quantlens
