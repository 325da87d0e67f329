#include "quantlens/quantization/layer_calibration.h"

#include "quantlens/core/error.h"
#include "quantlens/runtime/backend.h"
#include "quantlens/runtime/kv_cache.h"

#include <algorithm>
#include <iterator>
#include <memory>
#include <vector>

namespace quantlens {
namespace {

void checkBlock(const Model& model, int block) {
    if (block < 0 || block >= model.config.layerCount)
        throw Error(model.path.string(), "block " + std::to_string(block) +
                                             " does not exist (the model has " +
                                             std::to_string(model.config.layerCount) + ")");
}

const TensorView& linearTensor(const Model& model, int block, int layer) {
    return *model.blocks[static_cast<std::size_t>(block)]
                .linearLayers()[static_cast<std::size_t>(layer)];
}

} // namespace

LinearStage stageOf(std::string_view layerName) {
    return kLinearLayers[std::size_t(linearLayerIndex(layerName))].stage;
}

const Eigen::MatrixXf& BlockCalibration::hessianOf(std::string_view layerName) const {
    return hessians[static_cast<std::size_t>(stageOf(layerName))];
}

BlockCalibration calibrateBlock(const Model& model, std::span<const std::int32_t> stream,
                                const CalibrationConfig& calibration, int block,
                                const JobContext& job) {
    const ModelConfig& config = model.config;
    checkBlock(model, block);
    const auto sequences = calibrationSequences(stream, calibration, config, model.path.string());
    const Transformer transformer(model, Transformer::WeightConversion::PerUse);

    BlockCalibration result;
    result.block = block;
    // Each stage's input width, in kLinearStages order.
    const Eigen::Index widths[] = {config.hiddenSize, config.queryDim(), config.hiddenSize,
                                   config.intermediateSize};
    std::vector<std::unique_ptr<GramAccumulator>> grams;
    for (const Eigen::Index width : widths)
        grams.push_back(job.backend().gramAccumulator(width));

    const Transformer::FloatBlockWeights weights = transformer.blockWeights(block);
    const BlockView view = weights.view();

    const double steps = static_cast<double>(sequences.size()) * (block + 1);
    double done = 0.0;
    for (const auto& sequence : sequences) {
        RowMatrix hidden = transformer.embed(sequence);
        KvCache cache(config, static_cast<int>(sequence.size()));
        for (int b = 0; b < block; ++b) {
            job.checkpoint();
            job.report(done++ / steps, "calibrating block " + std::to_string(block));
            transformer.runBlock(b, hidden, cache, 0);
        }
        job.checkpoint();
        job.report(done++ / steps, "calibrating block " + std::to_string(block));
        transformer.runBlock(
            block, view, hidden, cache, 0,
            [&](LinearStage stage, const RowMatrix& input) {
                grams[static_cast<std::size_t>(stage)]->add(input);
            },
            LinearStage::MlpOutput);
        result.tokens += static_cast<std::int64_t>(sequence.size());
    }
    // H = 2·XᵀX/n, the GPTQ/SpQR Hessian of the layer-wise squared error (SpQR §3.1).
    for (std::size_t s = 0; s < grams.size(); ++s)
        result.hessians[s] = grams[s]->result() * (2.0f / static_cast<float>(result.tokens));
    job.report(1.0, "calibrated block " + std::to_string(block));
    return result;
}

void calibrateEveryBlock(
    const Model& model, std::span<const std::int32_t> stream, const CalibrationConfig& calibration,
    const JobContext& job,
    const std::function<void(const BlockCalibration&, const JobContext& blockJob)>& visit) {
    const ModelConfig& config = model.config;
    const auto sequences = calibrationSequences(stream, calibration, config, model.path.string());
    const Transformer transformer(model, Transformer::WeightConversion::PerUse);
    std::vector<RowMatrix> hidden;
    std::int64_t tokens = 0;
    for (const auto& sequence : sequences) {
        hidden.push_back(transformer.embed(sequence));
        tokens += static_cast<std::int64_t>(sequence.size());
    }
    const std::unique_ptr<CalibrationWalk> walk =
        job.backend().calibrationWalk(transformer, std::move(hidden), job);
    const double blocks = config.layerCount;
    for (int b = 0; b < config.layerCount; ++b) {
        const JobContext blockJob(job, b / blocks, (b + 1) / blocks);
        blockJob.report(0.0, "calibrating block " + std::to_string(b));
        const Transformer::FloatBlockWeights weights = transformer.blockWeights(b);
        const BlockView view = weights.view();
        BlockCalibration calibrated;
        calibrated.block = b;
        calibrated.tokens = tokens;
        for (const LinearStage stage : kLinearStages)
            calibrated.hessians[static_cast<std::size_t>(stage)] =
                walk->stageGram(b, view, stage, blockJob) * (2.0f / static_cast<float>(tokens));
        visit(calibrated, blockJob);
        walk->advance(b, view, blockJob);
    }
}

SpqrConfig obsAnalysisConfig(const QuantConfig& config) {
    if (const auto* spqr = std::get_if<SpqrConfig>(&config)) return *spqr;
    SpqrConfig spqr;
    spqr.wbits = weightBits(config);
    if (const auto* gptq = std::get_if<GptqConfig>(&config)) spqr.groupsize = gptq->groupsize;
    if (const auto* rtn = std::get_if<RtnConfig>(&config)) spqr.groupsize = rtn->groupsize;
    return spqr;
}

LayerAnalysis analyseLayer(const Model& model, const BlockCalibration& calibration,
                           std::string_view layerName, const SpqrConfig& config,
                           const JobContext& job) {
    const TensorView& tensor = linearTensor(model, calibration.block, linearLayerIndex(layerName));
    RowMatrix weights = FloatTensor(tensor).matrix();
    SensitivityMap map = computeSensitivity(
        weights, calibration.hessianOf(layerName), config.wbits, config.groupsize, config.percdamp,
        headSplitOf(model.config, layerName), tensor.file + ": " + tensor.name, job);
    const double baseBits = baseBitsPerParameter(config, static_cast<int>(weights.rows()),
                                                 static_cast<int>(weights.cols()));
    return {calibration.block, std::string(layerName), std::move(weights),
            OutlierPreview(std::move(map), baseBits), config};
}

LayerAnalysis analyseLayerFisher(const Model& model, const FisherInformation& fisher, int block,
                                 std::string_view layerName, const SqueezeConfig& config,
                                 const JobContext& job) {
    checkBlock(model, block);
    if (fisher.blocks() != model.config.layerCount)
        throw Error(model.path.string(),
                    "the Fisher information covers " + std::to_string(fisher.blocks()) +
                        " blocks but the model has " + std::to_string(model.config.layerCount));
    const int layer = linearLayerIndex(layerName);
    const TensorView& tensor = linearTensor(model, block, layer);
    RowMatrix weights = FloatTensor(tensor).matrix();
    SensitivityMap map = computeFisherSensitivity(weights, fisher.layer(block, layer), config.wbits,
                                                  headSplitOf(model.config, layerName),
                                                  tensor.file + ": " + tensor.name, job);
    // Without sparse values; squeezeBitsPerParameter adds those of the sparse percentages.
    const double baseBits = baseBitsPerParameter(config, static_cast<int>(weights.rows()),
                                                 static_cast<int>(weights.cols()));
    return {block, std::string(layerName), std::move(weights),
            OutlierPreview(std::move(map), baseBits), config};
}

} // namespace quantlens
