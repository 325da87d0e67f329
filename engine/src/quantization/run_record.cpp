#include "quantlens/quantization/run_record.h"

#include <array>
#include <utility>

namespace quantlens {

QuantizedModel quantizeInMemory(const Model& source, std::span<const std::int32_t> calibration,
                                const QuantPlan& plan, const CalibrationConfig& config,
                                const JobContext& job) {
    std::vector<std::array<RowMatrix, 7>> layers(source.blocks.size());
    QuantizeResult result = quantizeModel(
        source, calibration, plan, config,
        [&](int block, const std::string& name, const QuantizedLayer&,
            const RowMatrix& reconstruction) {
            for (std::size_t l = 0; l < 7; ++l)
                if (name == kLinearLayers[l].name)
                    layers[static_cast<std::size_t>(block)][l] = reconstruction;
        },
        job);
    return {std::move(result), withLinearLayers(source, std::move(layers))};
}

RunRecord makeRunRecord(const QuantConfig& method, const QuantizeResult& quantized,
                        const PerplexityResult& scored, double seconds) {
    return {method,
            quantized.bitsPerParameter,
            quantized.paperBitsPerParameter,
            quantized.outlierFraction,
            scored.perplexity,
            scored.comparison.value_or(BaseComparison{}),
            seconds,
            {},
            quantized.layers,
            std::nullopt};
}

QuantPlan planOf(const RunRecord& run) {
    if (!run.targetBits) return run.config;
    std::vector<QuantConfig> layers;
    for (const LayerReport& layer : run.layers)
        layers.push_back(layer.config);
    return {run.config, std::move(layers)};
}

} // namespace quantlens
