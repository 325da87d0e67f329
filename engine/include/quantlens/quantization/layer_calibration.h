#pragma once

#include "quantlens/core/float_tensor.h"
#include "quantlens/core/job.h"
#include "quantlens/model/model.h"
#include "quantlens/quantization/fisher.h"
#include "quantlens/quantization/model_quantizer.h"
#include "quantlens/quantization/sensitivity.h"
#include "quantlens/runtime/transformer.h"

#include <Eigen/Core>

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace quantlens {

// The calibration Hessians H = 2·XᵀX/n of one block of the unquantized model, one per linear stage
// (q/k/v share one, gate/up share one), for analysing a layer without quantizing the model.
struct BlockCalibration {
    int block = 0;
    std::int64_t tokens = 0;                 // n, calibration tokens seen by every stage
    std::array<Eigen::MatrixXf, 4> hessians; // kLinearStages order

    // The Hessian of a linear layer named as in kLinearLayers; throws Error for other names.
    const Eigen::MatrixXf& hessianOf(std::string_view layerName) const;
};

// The stage whose inputs feed `layerName` ("q_proj" → Attention, …); throws Error for other names.
LinearStage stageOf(std::string_view layerName);

// Runs the unquantized model on the calibration sequences cut from `stream` (as quantizeModel
// cuts them) through blocks 0…block−1, then through `block` while accumulating each stage's XᵀX.
// Reports progress per sequence and block; checks `job` as often. Throws Error for a block out of
// range or too little calibration text.
BlockCalibration calibrateBlock(const Model& model, std::span<const std::int32_t> stream,
                                const CalibrationConfig& calibration, int block,
                                const JobContext& job);

// calibrateBlock's statistics for every block in one walk of the unquantized model (each block's
// inputs computed once, not once per later block): `visit` gets each block's Hessians in block
// order with that block's share of `job`, and may work on them before the walk moves on. Throws
// Error for too little calibration text.
void calibrateEveryBlock(
    const Model& model, std::span<const std::int32_t> stream, const CalibrationConfig& calibration,
    const JobContext& job,
    const std::function<void(const BlockCalibration&, const JobContext& blockJob)>& visit);

// One layer ready for the studio's heatmap and threshold slider: its fp32 weights and the
// sensitivity preview of one form, as `config` says: SpqrConfig for the OBS form of SpQR's base
// quantizer (analyseLayer), SqueezeConfig for SqueezeLLM's Fisher form (analyseLayerFisher).
struct LayerAnalysis {
    int block = 0;
    std::string layer; // "q_proj", …
    RowMatrix weights;
    OutlierPreview preview;
    QuantConfig config = SpqrConfig{};
};

// The settings of the OBS form for any method: SpQR's own, else SpQR's base quantizer with the
// method's bits and groups (SqueezeLLM's LUT has none: SpQR's β1).
SpqrConfig obsAnalysisConfig(const QuantConfig& config);

// The OBS form for SpQR's base quantizer (wbits, β1, percdamp), with SpQR's bit accounting; the
// Hessian is inverted on `job`'s backend.
LayerAnalysis analyseLayer(const Model& model, const BlockCalibration& calibration,
                           std::string_view layerName, const SpqrConfig& config,
                           const JobContext& job);

// The Fisher form F·(w − q(w))² for SqueezeLLM's `config.wbits`-bit LUT quantizer
// (computeFisherSensitivity), from the diagonal Fisher that accumulateFisher summed over the
// calibration sequences; the preview's base bits are SqueezeLLM's without sparse values. Throws
// Error for a block out of range or an unknown layer; checks `job` while clustering.
LayerAnalysis analyseLayerFisher(const Model& model, const FisherInformation& fisher, int block,
                                 std::string_view layerName, const SqueezeConfig& config,
                                 const JobContext& job);

} // namespace quantlens
