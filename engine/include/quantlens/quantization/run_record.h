#pragma once

#include "quantlens/core/job.h"
#include "quantlens/encoding/quant_config.h"
#include "quantlens/model/model.h"
#include "quantlens/quantization/model_quantizer.h"
#include "quantlens/runtime/base_comparison.h"
#include "quantlens/runtime/perplexity.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace quantlens {

// One quantization run as the studio and sweeps keep it: the settings, what they cost in bits and
// what they did to quality, per model and per layer.
struct RunRecord {
    QuantConfig config;
    double bitsPerParameter = 0.0;      // stored bytes · 8 / parameters
    double paperBitsPerParameter = 0.0; // the papers' accounting
    double outlierFraction = 0.0;
    double perplexity = 0.0;
    BaseComparison comparison; // to the unquantized model on the evaluation text
    double seconds = 0.0;
    std::string device; // where it was quantized and scored (Backend::name())
    std::vector<LayerReport> layers;
    // A bit-budget run's target in paper bits per parameter (each layer's own settings are in
    // `layers`); nullopt for a run with one setting for every layer.
    std::optional<double> targetBits;
};

// A model whose linear layers are a quantization's reconstruction, held in memory for evaluation.
struct QuantizedModel {
    QuantizeResult result;
    std::unique_ptr<Model> model; // views `source` for every other tensor: keep it alive
};

// quantizeModel() keeping every layer's reconstruction, as withLinearLayers() takes them.
QuantizedModel quantizeInMemory(const Model& source, std::span<const std::int32_t> calibration,
                                const QuantPlan& plan, const CalibrationConfig& config,
                                const JobContext& job);

RunRecord makeRunRecord(const QuantConfig& method, const QuantizeResult& quantized,
                        const PerplexityResult& scored, double seconds);

// The plan that quantizes as `run` did (to export it): its one setting, or for a bit-budget run
// each layer's from its reports (block-major, kLinearLayers order, as quantizeModel gives them).
QuantPlan planOf(const RunRecord& run);

} // namespace quantlens
