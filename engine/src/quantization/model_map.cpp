#include "quantlens/quantization/model_map.h"

#include "quantlens/core/error.h"
#include "quantlens/quantization/fisher.h"
#include "quantlens/quantization/layer_calibration.h"
#include "quantlens/quantization/layer_quantizer.h"
#include "quantlens/quantization/sensitivity.h"
#include "quantlens/runtime/transformer.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>

namespace quantlens {
namespace {

constexpr double kUnmeasured = std::numeric_limits<double>::quiet_NaN();

const TensorView& linearTensor(const Model& model, int block, int layer) {
    return *model.blocks[static_cast<std::size_t>(block)]
                .linearLayers()[static_cast<std::size_t>(layer)];
}

std::string layerSource(const TensorView& tensor) {
    return tensor.file + ": " + tensor.name;
}

// Calls measure(block, layer, hessian, layerJob) for every linear layer in one calibration walk.
void forEachCalibratedLayer(
    const Model& model, std::span<const std::int32_t> calibration, const CalibrationConfig& config,
    const JobContext& job,
    const std::function<double(int, int, const Eigen::MatrixXf&, const JobContext&)>& measure,
    ModelMap& map) {
    calibrateEveryBlock(
        model, calibration, config, job,
        [&](const BlockCalibration& calibrated, const JobContext& blockJob) {
            for (int l = 0; l < kLinearLayerCount; ++l) {
                const JobContext layerJob(blockJob, double(l) / kLinearLayerCount,
                                          double(l + 1) / kLinearLayerCount);
                layerJob.checkpoint();
                layerJob.report(0.0, "measuring block " + std::to_string(calibrated.block) + " " +
                                         kLinearLayers[std::size_t(l)].name);
                map.values[std::size_t(calibrated.block * kLinearLayerCount + l)] =
                    measure(calibrated.block, l,
                            calibrated.hessians[std::size_t(kLinearLayers[std::size_t(l)].stage)],
                            layerJob);
            }
        });
}

// Each report's relative output error into its cell: the RunError map of a run.
void fillFromReports(const std::vector<LayerReport>& layers, ModelMap& map) {
    for (const LayerReport& layer : layers) {
        if (layer.block < 0 || layer.block >= map.blocks)
            throw Error("run " + describe(map.request.config),
                        "layer report for block " + std::to_string(layer.block) +
                            " of a model with " + std::to_string(map.blocks));
        map.values[std::size_t(layer.block * kLinearLayerCount + linearLayerIndex(layer.name))] =
            layer.relativeOutputError;
    }
}

} // namespace

const MapMetricInfo& mapMetricInfo(MapMetric metric) {
    return *std::find_if(kMapMetrics.begin(), kMapMetrics.end(),
                         [&](const MapMetricInfo& info) { return info.metric == metric; });
}

std::optional<MapMetric> parseMapMetric(std::string_view key) {
    for (const MapMetricInfo& info : kMapMetrics)
        if (info.key == key) return info.metric;
    return std::nullopt;
}

ModelMap computeModelMap(const Model& model, const ModelMapRequest& request,
                         std::span<const std::int32_t> calibration,
                         std::span<const std::int32_t> evaluation, const JobContext& job) {
    const std::string source = model.path.string();
    if (!model.compressedLayers.empty())
        throw Error(source, "the model map measures an unquantized model, not a compressed one");
    validate(request.config);
    ModelMap map{
        request, model.config.layerCount,
        std::vector<double>(std::size_t(model.config.layerCount) * kLinearLayerCount, kUnmeasured)};
    const auto weightsOf = [&](int block, int layer) {
        return FloatTensor(linearTensor(model, block, layer)).matrix();
    };

    switch (request.metric) {
    case MapMetric::ObsSensitivity: {
        const SpqrConfig spqr = obsAnalysisConfig(request.config);
        forEachCalibratedLayer(
            model, calibration, request.calibration, job,
            [&](int b, int l, const Eigen::MatrixXf& hessian, const JobContext& blockJob) {
                return computeSensitivity(weightsOf(b, l), hessian, spqr.wbits, spqr.groupsize,
                                          spqr.percdamp, {}, layerSource(linearTensor(model, b, l)),
                                          blockJob)
                    .total();
            },
            map);
        break;
    }
    case MapMetric::FisherSensitivity: {
        const FisherInformation fisher = accumulateFisher(
            model, calibrationSequences(calibration, request.calibration, model.config, source),
            JobContext(job, 0.0, 0.5));
        const int wbits = weightBits(request.config);
        for (int b = 0; b < map.blocks; ++b)
            for (int l = 0; l < kLinearLayerCount; ++l) {
                const double done = double(b * kLinearLayerCount + l) / double(map.values.size());
                const JobContext layerJob(job, 0.5 + 0.5 * done,
                                          0.5 + 0.5 * (done + 1.0 / double(map.values.size())));
                layerJob.report(0.0, "clustering block " + std::to_string(b) + " " +
                                         kLinearLayers[std::size_t(l)].name);
                map.values[std::size_t(b * kLinearLayerCount + l)] =
                    computeFisherSensitivity(weightsOf(b, l), fisher.layer(b, l), wbits, {},
                                             layerSource(linearTensor(model, b, l)), layerJob)
                        .total();
            }
        break;
    }
    case MapMetric::RunError:
        fillFromReports(
            quantizeModel(model, calibration, request.config, request.calibration, {}, job).layers,
            map);
        break;
    case MapMetric::SoloKl: {
        if (evaluation.empty())
            throw Error(source, "the KL of each layer alone needs evaluation text");
        // SqueezeLLM's quantizer weighs each weight by the diagonal Fisher.
        const std::optional<FisherInformation> fisher =
            needsFisher(request.config)
                ? std::optional(accumulateFisher(
                      model,
                      calibrationSequences(calibration, request.calibration, model.config, source),
                      JobContext(job, 0.0, 0.1)))
                : std::nullopt;
        const Transformer base(model);
        forEachCalibratedLayer(
            model, calibration, request.calibration, JobContext(job, fisher ? 0.1 : 0.0, 1.0),
            [&](int b, int l, const Eigen::MatrixXf& hessian, const JobContext& layerJob) {
                const RowMatrix layerFisher = fisher ? RowMatrix(fisher->layer(b, l)) : RowMatrix();
                const QuantizedLayer quantized =
                    quantizeLayer(weightsOf(b, l),
                                  {.hessian = &hessian, .fisher = fisher ? &layerFisher : nullptr},
                                  request.config, JobContext(layerJob, 0.0, 0.3),
                                  layerSource(linearTensor(model, b, l)));
                const auto alone = withLinearLayer(model, b, l, quantized.dequantize());
                return evaluatePerplexity(Transformer(*alone), evaluation, request.scoring,
                                          JobContext(layerJob, 0.3, 1.0), &base)
                    .comparison->klMean;
            },
            map);
        break;
    }
    }
    job.report(1.0, "mapped");
    return map;
}

ModelMap modelMapOfRun(const RunRecord& run, int blocks, const CalibrationConfig& calibration) {
    ModelMap map{{MapMetric::RunError, run.config, calibration, {}},
                 blocks,
                 std::vector<double>(std::size_t(blocks) * kLinearLayerCount, kUnmeasured)};
    fillFromReports(run.layers, map);
    return map;
}

} // namespace quantlens
