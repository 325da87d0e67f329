#pragma once

#include "quantlens/core/job.h"
#include "quantlens/encoding/quantized_layer.h"

#include <Eigen/Core>

namespace quantlens {

// What calibration measured for one layer: H = 2·XᵀX/n over its inputs (GPTQ, SpQR) and the
// diagonal Fisher of its weights, [out, in] (SqueezeLLM). RTN uses neither.
struct LayerCalibration {
    const Eigen::MatrixXf* hessian = nullptr;
    const RowMatrix* fisher = nullptr;
};

// Quantizes W [out, in] with the method in `config`, from the statistics it needs in
// `calibration`. Deterministic: the same inputs give the same bytes, whatever the thread count.
QuantizedLayer quantizeLayer(const RowMatrix& weights, const LayerCalibration& calibration,
                             const QuantConfig& config, const JobContext& job,
                             const std::string& source = "");

} // namespace quantlens
