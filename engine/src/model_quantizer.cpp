#include "quantlens/model_quantizer.h"

#include "quantlens/backend.h"
#include "quantlens/error.h"
#include "quantlens/fisher.h"
#include "quantlens/layer_quantizer.h"
#include "quantlens/transformer.h"

#include <cmath>
#include <limits>
#include <optional>

namespace quantlens {
namespace {

constexpr LinearStage kStageOfLayer[] = {LinearStage::Attention, LinearStage::Attention,
                                         LinearStage::Attention, LinearStage::AttentionOutput,
                                         LinearStage::Mlp,       LinearStage::Mlp,
                                         LinearStage::MlpOutput};

// One block in fp32, owned, so quantized layers can replace the originals as they are done.
struct WorkingBlock {
    explicit WorkingBlock(const BlockWeights& weights)
        : attnNorm(FloatTensor(weights.attnNorm).vector()),
          ffnNorm(FloatTensor(weights.ffnNorm).vector()) {
        const auto layers = weights.linearLayers();
        for (std::size_t i = 0; i < layers.size(); ++i)
            linear[i] = FloatTensor(*layers[i]).matrix();
    }

    BlockView view() const {
        return {attnNorm.data(),  linear[0].data(), linear[1].data(),
                linear[2].data(), linear[3].data(), ffnNorm.data(),
                linear[4].data(), linear[5].data(), linear[6].data()};
    }

    Eigen::VectorXf attnNorm, ffnNorm;
    std::array<RowMatrix, 7> linear;
};

// ‖WX − ŴX‖² / ‖WX‖² from H ∝ XᵀX: tr(D H Dᵀ) / tr(W H Wᵀ) with D = W − Ŵ. Rows go through in
// chunks, in float with double sums, so no n×n copy of H is made.
double relativeOutputError(const RowMatrix& original, const RowMatrix& reconstruction,
                           const Eigen::MatrixXf& h) {
    constexpr Eigen::Index kChunk = 256;
    double error = 0.0, signal = 0.0;
    for (Eigen::Index first = 0; first < original.rows(); first += kChunk) {
        const Eigen::Index rows = std::min(kChunk, original.rows() - first);
        const RowMatrix w = original.middleRows(first, rows);
        const RowMatrix d = w - reconstruction.middleRows(first, rows);
        error += (d * h).cwiseProduct(d).cast<double>().sum();
        signal += (w * h).cwiseProduct(w).cast<double>().sum();
    }
    return error / signal;
}

} // namespace

std::vector<std::vector<std::int32_t>> calibrationSequences(std::span<const std::int32_t> stream,
                                                            const CalibrationConfig& config,
                                                            const ModelConfig& model,
                                                            const std::string& source) {
    const std::size_t length = static_cast<std::size_t>(
        config.sequenceLength > 0 ? config.sequenceLength : std::min(2048, model.maxPositions));
    if (config.sequences <= 0)
        throw Error(source, "the number of calibration sequences must be positive");
    if (length > static_cast<std::size_t>(model.maxPositions))
        throw Error(source, "calibration sequences of " + std::to_string(length) +
                                " tokens exceed the model's " + std::to_string(model.maxPositions) +
                                " positions");
    if (stream.size() < length)
        throw Error(source, "calibration text has " + std::to_string(stream.size()) +
                                " tokens, fewer than one sequence of " + std::to_string(length));
    std::vector<std::vector<std::int32_t>> sequences;
    for (std::size_t begin = 0;
         begin + length <= stream.size() && sequences.size() < std::size_t(config.sequences);
         begin += length) {
        sequences.emplace_back(stream.begin() + static_cast<std::ptrdiff_t>(begin),
                               stream.begin() + static_cast<std::ptrdiff_t>(begin + length));
        for (std::int32_t id : sequences.back())
            if (id < 0 || id >= model.vocabSize)
                throw Error(source, "calibration token id " + std::to_string(id) +
                                        " is outside the vocabulary");
    }
    return sequences;
}

QuantizeResult quantizeModel(const Model& model, std::span<const std::int32_t> calibrationStream,
                             const QuantConfig& method, const CalibrationConfig& calibration,
                             const QuantizedLayerSink& sink, const JobContext& job) {
    validate(method);
    const ModelConfig& config = model.config;
    const std::vector<std::vector<std::int32_t>> sequences =
        calibrationStream.empty()
            ? std::vector<std::vector<std::int32_t>>{}
            : calibrationSequences(calibrationStream, calibration, config, model.path.string());
    if ((needsHessian(method) || needsFisher(method)) && sequences.empty())
        throw Error(model.path.string(), methodName(method) + " needs calibration text");
    // SqueezeLLM weighs each weight by the Fisher of the unquantized model (§3.1); its layers do
    // not depend on each other, so the walk below only measures their output errors.
    const std::optional<FisherInformation> fisher =
        needsFisher(method) ? std::optional(accumulateFisher(model, sequences, job)) : std::nullopt;

    const Transformer transformer(model, Transformer::WeightConversion::PerUse);
    std::vector<RowMatrix> hidden; // each calibration sequence's input to the first block
    for (const auto& sequence : sequences)
        hidden.push_back(transformer.embed(sequence));
    const std::int64_t tokens = static_cast<std::int64_t>(sequences.size()) *
                                (sequences.empty() ? 0 : std::int64_t(sequences.front().size()));
    const std::unique_ptr<CalibrationWalk> walk =
        sequences.empty() ? nullptr
                          : activeBackend().calibrationWalk(transformer, std::move(hidden));
    releaseMappedPages(model.embedding.data, model.embedding.byteSize());

    QuantizeResult result;
    double paperBits = 0.0;
    std::int64_t outliers = 0;
    const double layerCount = 7.0 * config.layerCount;
    for (int b = 0; b < config.layerCount; ++b) {
        const BlockWeights& stored = model.blocks[static_cast<std::size_t>(b)];
        WorkingBlock work(stored);
        std::size_t layer = 0;
        for (const LinearStage stage : kLinearStages) {
            // H = 2·XᵀX/n over this stage's inputs, produced by the block's already-quantized
            // layers.
            Eigen::MatrixXf hessian;
            if (walk)
                hessian = walk->stageGram(b, work.view(), stage, job) *
                          (2.0f / static_cast<float>(tokens));
            for (; layer < 7 && kStageOfLayer[layer] == stage; ++layer) {
                job.report((b * 7 + static_cast<double>(layer)) / layerCount,
                           "block " + std::to_string(b) + " " + kLinearLayerNames[layer]);
                job.checkpoint();
                const TensorView& tensor = *stored.linearLayers()[layer];
                const RowMatrix layerFisher =
                    fisher ? RowMatrix(fisher->layer(b, static_cast<int>(layer))) : RowMatrix();
                const QuantizedLayer quantized =
                    quantizeLayer(work.linear[layer],
                                  {.hessian = sequences.empty() ? nullptr : &hessian,
                                   .fisher = fisher ? &layerFisher : nullptr},
                                  method, job, tensor.file + ": " + tensor.name);
                RowMatrix reconstruction = quantized.dequantize();

                LayerReport report;
                report.block = b;
                report.name = kLinearLayerNames[layer];
                report.rows = quantized.rows;
                report.cols = quantized.cols;
                report.storedBytes = quantized.storedBytes();
                report.bitsPerParameter = quantized.bitsPerParameter();
                report.paperBitsPerParameter = quantized.paperBitsPerParameter();
                report.outliers = quantized.outlierCount;
                report.relativeOutputError =
                    sequences.empty()
                        ? std::numeric_limits<double>::quiet_NaN()
                        : relativeOutputError(work.linear[layer], reconstruction, hessian);
                result.layers.push_back(report);
                const std::int64_t parameters = std::int64_t(quantized.rows) * quantized.cols;
                result.parameters += parameters;
                result.storedBytes += report.storedBytes;
                paperBits += report.paperBitsPerParameter * static_cast<double>(parameters);
                outliers += report.outliers;

                if (sink) sink(b, report.name, quantized, reconstruction);
                work.linear[layer] = std::move(reconstruction);
            }
        }
        for (const TensorView* t :
             {&stored.attnNorm, &stored.wq, &stored.wk, &stored.wv, &stored.wo, &stored.ffnNorm,
              &stored.gate, &stored.up, &stored.down})
            releaseMappedPages(t->data, t->byteSize());
        // The next block is calibrated on this block's quantized outputs.
        if (walk) walk->advance(b, work.view(), job);
    }
    job.report(1.0, "quantized");
    const double parameters = static_cast<double>(result.parameters);
    result.bitsPerParameter = static_cast<double>(result.storedBytes) * 8.0 / parameters;
    result.paperBitsPerParameter = paperBits / parameters;
    result.outlierFraction = static_cast<double>(outliers) / parameters;
    return result;
}

} // namespace quantlens
