#pragma once

#include "quantlens/core/job.h"
#include "quantlens/encoding/quant_config.h"
#include "quantlens/model/model.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/quantization/quant_plan.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace quantlens {

// Bits spent where they matter (docs/DESIGN.md, Bit budget): each linear layer is quantized alone
// with every candidate setting, each outcome's cost in paper bits and its predicted loss measured
// on the calibration data; then the settings that minimise the summed predicted loss under a total
// of paper bits are chosen, as EXL2 does for its bit rates.

// One measured point of a layer's error curve.
struct LayerCandidate {
    double paperBits = 0.0;     // bits per parameter, the paper's accounting, as quantized
    double predictedLoss = 0.0; // the mean NLL increase (nats per token) it is predicted to cause
};

// One linear layer's measured curve: candidates[i] is the layer quantized with the i-th setting.
struct LayerCurve {
    int block = 0;
    int layer = 0; // an index into kLinearLayers
    std::int64_t parameters = 0;
    std::vector<LayerCandidate> candidates;
};

struct BudgetMeasurement {
    QuantConfig method;                // what the run is recorded as
    std::vector<QuantConfig> settings; // the candidates, shared by every layer
    std::vector<LayerCurve> layers;    // block-major, kLinearLayers order
};

// The candidates a budget chooses from when none are given: `method` with its bit width and
// group size varied (RTN, GPTQ: wbits 2, 3, 4, 8 × groupsize 32, 64, 128; SpQR: wbits 2, 3, 4 ×
// β1 8, 16, 32 × τ and 4τ; SqueezeLLM: wbits 2, 3, 4, 5, dense and with the paper's 0.45% sparse),
// its other settings kept.
std::vector<QuantConfig> budgetCandidates(const QuantConfig& method);

// Quantizes every linear layer with every candidate (all of `method`'s method), alone, on the
// unquantized model's calibration statistics, and predicts each outcome's loss from them. For a
// layer with weights W, quantization error ΔW = W − Ŵ and input second moment M = XᵀX/n over the
// calibration tokens:
//     ΔL ≈ ½ Σ_i g_i · ΔW_i M ΔW_iᵀ,   g_i = mean over tokens of (∂ℓ_t/∂y_ti)²,
// the second-order change of the mean token NLL ℓ with the empirical Fisher of the layer's output
// y as its curvature, taken diagonal and independent of the inputs (K-FAC's assumption). Unlike
// Σ F_ij ΔW_ij² over the weights' diagonal Fisher, it credits GPTQ's and SpQR's error feedback,
// which trades larger errors on single weights for a smaller output error. Costs one gradient
// pass (two for SqueezeLLM, whose quantizer needs the Fisher), one calibration walk and one
// quantization per candidate and layer. Throws Error for candidates of another method, none, or
// too little calibration text.
BudgetMeasurement
measureLayerCurves(const Model& model, std::span<const std::int32_t> calibrationStream,
                   const CalibrationConfig& calibration, const QuantConfig& method,
                   const std::vector<QuantConfig>& candidates, const JobContext& job);

struct BitAllocation {
    QuantPlan plan;
    double targetBits = 0.0;
    double paperBits = 0.0;           // of the plan, parameter-weighted over the measured layers
    double predictedLoss = 0.0;       // Σ of the chosen candidates' predicted losses
    std::vector<std::size_t> choices; // per layer, an index into the measurement's settings
};

// The candidate per layer that minimises the summed predicted loss with at most `targetBits`
// paper bits per parameter over all layers: a multiple-choice knapsack, solved exactly by dynamic
// programming with costs rounded up to 1/65536 of the budget (so it always fits), then single-layer
// changes that still fit while they lower the loss (spending what the rounding left). Never
// predicted worse than a uniform setting that fits. Memory: one byte per layer and budget unit
// (64 KiB per layer). Throws Error when even the cheapest candidates exceed the target, or for
// more than 256 candidates.
BitAllocation allocateBits(const BudgetMeasurement& measurement, double targetBits);

} // namespace quantlens
