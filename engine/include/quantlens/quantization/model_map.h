#pragma once

#include "quantlens/core/job.h"
#include "quantlens/encoding/quant_config.h"
#include "quantlens/model/model.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/quantization/run_record.h"
#include "quantlens/runtime/perplexity.h"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace quantlens {

// The whole-model map (docs/DESIGN.md, Model map): one number per block and linear layer, so that
// where a model is sensitive shows at a glance, before or after quantizing it.
enum class MapMetric {
    ObsSensitivity,    // Σ_ij s_ij of computeSensitivity (OBS form, SpQR's base quantizer)
    FisherSensitivity, // Σ_ij F_ij·(w_ij − q(w_ij))² of computeFisherSensitivity
    RunError, // a run's ‖WX − ŴX‖² / ‖WX‖² over the layer's calibration inputs
    SoloKl,   // mean KL(base ‖ model) per token with only that layer quantized
};

struct MapMetricInfo {
    MapMetric metric;
    std::string_view key;   // the CLI's --metric and the JSON's "metric"
    std::string_view label; // for people
};

// The one table of map metrics.
inline constexpr std::array<MapMetricInfo, 4> kMapMetrics{{
    {MapMetric::ObsSensitivity, "obs", "OBS sensitivity Σ (w − q(w))² / [H⁻¹]jj"},
    {MapMetric::FisherSensitivity, "fisher", "Fisher sensitivity Σ F·(w − q(w))²"},
    {MapMetric::RunError, "run-error", "relative output error ‖ΔW·X‖² / ‖W·X‖²"},
    {MapMetric::SoloKl, "solo-kl", "KL per token with the layer alone quantized (nats)"},
}};

const MapMetricInfo& mapMetricInfo(MapMetric metric);
// The metric of a kMapMetrics key; nullopt for another text.
std::optional<MapMetric> parseMapMetric(std::string_view key);

// What a map measures and on what. `config` is the quantizer each metric applies: its bits and
// groups for the OBS form (obsAnalysisConfig), its bits for the Fisher form, and the whole setting
// for RunError and SoloKl. `scoring` is SoloKl's evaluation protocol.
struct ModelMapRequest {
    MapMetric metric = MapMetric::ObsSensitivity;
    QuantConfig config = SpqrConfig{};
    CalibrationConfig calibration;
    PerplexityConfig scoring;
};

struct ModelMap {
    ModelMapRequest request;
    int blocks = 0;
    // [blocks × kLinearLayerCount], block-major in kLinearLayers order; NaN where nothing was
    // measured (a run that skipped calibration has no output errors).
    std::vector<double> values;

    double at(int block, int layer) const {
        return values[static_cast<std::size_t>(block * kLinearLayerCount + layer)];
    }
};

// Measures `request.metric` for every linear layer of the unquantized `model`: the sensitivity
// forms in one calibration walk (calibrateEveryBlock; the Fisher form after a gradient pass), the
// run's error by quantizing the model with `request.config`, and SoloKl by quantizing each layer
// alone on the unquantized model's calibration statistics and comparing the model with it against
// the unquantized model on `evaluation` (two forward passes of the evaluation text per layer: keep
// it short for large models). Progress covers the whole map; `job` is checked between layers.
// Throws Error for a compressed model, too little calibration text, or no evaluation text for
// SoloKl.
ModelMap computeModelMap(const Model& model, const ModelMapRequest& request,
                         std::span<const std::int32_t> calibration,
                         std::span<const std::int32_t> evaluation, const JobContext& job);

// The RunError map of a finished run, from its layer reports (no computation).
ModelMap modelMapOfRun(const RunRecord& run, int blocks, const CalibrationConfig& calibration);

} // namespace quantlens
