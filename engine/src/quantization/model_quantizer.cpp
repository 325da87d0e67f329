#include "quantlens/quantization/model_quantizer.h"

#include "quantlens/core/error.h"
#include "quantlens/quantization/fisher.h"
#include "quantlens/quantization/layer_quantizer.h"
#include "quantlens/quantization/quantize_journal.h"
#include "quantlens/runtime/backend.h"
#include "quantlens/runtime/transformer.h"

#include <cmath>
#include <limits>
#include <optional>

namespace quantlens {
namespace {

// One block in fp32, owned, so quantized layers can replace the originals as they are done.
struct WorkingBlock {
    explicit WorkingBlock(const BlockWeights& weights)
        : attnNorm(FloatTensor(weights.attnNorm).vector()),
          ffnNorm(FloatTensor(weights.ffnNorm).vector()), qBias(optional(weights.qBias)),
          kBias(optional(weights.kBias)), vBias(optional(weights.vBias)),
          qNorm(optional(weights.qNorm)), kNorm(optional(weights.kNorm)) {
        const auto layers = weights.linearLayers();
        for (std::size_t i = 0; i < layers.size(); ++i)
            linear[i] = FloatTensor(*layers[i]).matrix();
    }

    BlockView view() const {
        const auto data = [](const Eigen::VectorXf& v) { return v.size() ? v.data() : nullptr; };
        return {attnNorm.data(),  linear[0].data(), linear[1].data(), linear[2].data(),
                linear[3].data(), ffnNorm.data(),   linear[4].data(), linear[5].data(),
                linear[6].data(), data(qBias),      data(kBias),      data(vBias),
                data(qNorm),      data(kNorm)};
    }

    // A bias or head norm in fp32, empty where the architecture has none.
    static Eigen::VectorXf optional(const TensorView& tensor) {
        return tensor.data ? Eigen::VectorXf(FloatTensor(tensor).vector()) : Eigen::VectorXf();
    }

    Eigen::VectorXf attnNorm, ffnNorm, qBias, kBias, vBias, qNorm, kNorm;
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

// The share of a SqueezeLLM run its Fisher pass takes. The pass (a forward and a backward pass,
// about three forward passes of work) and the walk that measures the layers' errors (about three
// passes of each block) cost alike; measured 0.55 on stories260K with 128 × 256 calibration tokens
// (0.72 with 32, where loading weighs more).
constexpr double kFisherShare = 0.5;

// The whole run's progress, for one bar and one time left: each layer counts its parameters (a
// quantizer's work grows with them) and SqueezeLLM's Fisher pass kFisherShare, done before any
// layer. The blocks a resumed run kept count as done, and its first report says where it starts,
// so a time left can be estimated from this run's own rate (core/time_left.h).
class RunProgress {
public:
    RunProgress(const Model& model, int firstBlock, bool fisher)
        : firstBlock_(firstBlock), fisherShare_(fisher ? kFisherShare : 0.0) {
        for (const BlockWeights& block : model.blocks)
            for (const TensorView* weight : block.linearLayers()) {
                before_.push_back(parameters_);
                parameters_ += weight->elementCount();
            }
        before_.push_back(parameters_);
    }
    void reportStart(const JobContext& job) const {
        job.report(kept(), firstBlock_ == 0
                               ? "starting"
                               : "resuming after block " + std::to_string(firstBlock_ - 1));
    }
    JobContext fisherJob(const JobContext& job) const {
        return JobContext(job, kept(), kept() + fisherShare_);
    }
    void reportLayer(const JobContext& job, int block, int layer) const {
        job.report(fisherShare_ +
                       (1.0 - fisherShare_) * layersDone(block * kLinearLayerCount + layer),
                   "block " + std::to_string(block) + " " +
                       kLinearLayers[static_cast<std::size_t>(layer)].name);
    }

private:
    // The share of the layers' work done before linear layer `index` (block-major).
    double layersDone(int index) const {
        return double(before_[static_cast<std::size_t>(index)]) / double(parameters_);
    }
    double kept() const {
        return (1.0 - fisherShare_) * layersDone(firstBlock_ * kLinearLayerCount);
    }

    int firstBlock_;
    double fisherShare_;
    std::vector<std::int64_t> before_; // parameters of the layers before each one, then all
    std::int64_t parameters_ = 0;
};

} // namespace

QuantizeResult quantizeModel(const Model& model, std::span<const std::int32_t> calibrationStream,
                             const QuantPlan& plan, const CalibrationConfig& calibration,
                             const QuantizedLayerSink& sink, const JobContext& job,
                             QuantizeJournal* journal) {
    const ModelConfig& config = model.config;
    plan.validateFor(config.layerCount, model.path.string());
    const QuantConfig& method = plan.method();
    const std::vector<std::vector<std::int32_t>> sequences =
        calibrationStream.empty()
            ? std::vector<std::vector<std::int32_t>>{}
            : calibrationSequences(calibrationStream, calibration, config, model.path.string());
    if ((needsHessian(method) || needsFisher(method)) && sequences.empty())
        throw Error(model.path.string(), methodName(method) + " needs calibration text");
    const int firstBlock = journal ? journal->completedBlocks() : 0;
    const RunProgress progress(model, firstBlock, needsFisher(method));
    progress.reportStart(job);
    // SqueezeLLM weighs each weight by the Fisher of the unquantized model (§3.1); its layers do
    // not depend on each other, so the walk below only measures their output errors. A resumed
    // run recomputes it (it is the same for every block).
    const std::optional<FisherInformation> fisher =
        needsFisher(method) && firstBlock < config.layerCount
            ? std::optional(accumulateFisher(model, sequences, progress.fisherJob(job)))
            : std::nullopt;

    const Transformer transformer(model, Transformer::WeightConversion::PerUse);
    // Each calibration sequence's input to the first block still to quantize.
    std::vector<RowMatrix> hidden;
    if (firstBlock > 0 && !sequences.empty()) {
        hidden = journal->recordedHiddenStates();
        if (hidden.size() != sequences.size())
            throw Error(model.path.string(), "the interrupted run kept " +
                                                 std::to_string(hidden.size()) +
                                                 " calibration states for " +
                                                 std::to_string(sequences.size()) + " sequences");
    } else {
        for (const auto& sequence : sequences)
            hidden.push_back(transformer.embed(sequence));
    }
    const std::int64_t tokens = static_cast<std::int64_t>(sequences.size()) *
                                (sequences.empty() ? 0 : std::int64_t(sequences.front().size()));
    const std::unique_ptr<CalibrationWalk> walk =
        sequences.empty() ? nullptr
                          : job.backend().calibrationWalk(transformer, std::move(hidden), job);
    releaseMappedPages(model.embedding.data, model.embedding.byteSize());

    QuantizeResult result;
    double paperBits = 0.0;
    std::int64_t outliers = 0;
    // Adds a final layer to the result and hands it on.
    const auto finish = [&](int b, std::size_t layer, const QuantizedLayer& quantized,
                            const RowMatrix& reconstruction, double relativeError) {
        LayerReport report;
        report.block = b;
        report.name = kLinearLayers[layer].name;
        report.rows = quantized.rows;
        report.cols = quantized.cols;
        report.storedBytes = quantized.storedBytes();
        report.bitsPerParameter = quantized.bitsPerParameter();
        report.paperBitsPerParameter = quantized.paperBitsPerParameter();
        report.outliers = quantized.outlierCount;
        report.relativeOutputError = relativeError;
        report.config = quantized.config;
        result.layers.push_back(report);
        const std::int64_t parameters = std::int64_t(quantized.rows) * quantized.cols;
        result.parameters += parameters;
        result.storedBytes += report.storedBytes;
        paperBits += report.paperBitsPerParameter * static_cast<double>(parameters);
        outliers += report.outliers;
        if (sink) sink(b, report.name, quantized, reconstruction);
    };

    for (int b = 0; b < firstBlock; ++b) {
        job.checkpoint();
        const std::vector<JournaledLayer> recorded = journal->recordedBlock(b);
        for (std::size_t layer = 0; layer < recorded.size(); ++layer)
            finish(b, layer, recorded[layer].layer, recorded[layer].layer.dequantize(),
                   recorded[layer].relativeOutputError);
    }
    for (int b = firstBlock; b < config.layerCount; ++b) {
        const BlockWeights& stored = model.blocks[static_cast<std::size_t>(b)];
        WorkingBlock work(stored);
        std::vector<JournaledLayer> finished;
        std::size_t layer = 0;
        for (const LinearStage stage : kLinearStages) {
            // H = 2·XᵀX/n over this stage's inputs, produced by the block's already-quantized
            // layers.
            Eigen::MatrixXf hessian;
            if (walk)
                hessian = walk->stageGram(b, work.view(), stage, job) *
                          (2.0f / static_cast<float>(tokens));
            for (; layer < kLinearLayerCount && kLinearLayers[std::size_t(layer)].stage == stage;
                 ++layer) {
                progress.reportLayer(job, b, static_cast<int>(layer));
                job.checkpoint();
                const TensorView& tensor = *stored.linearLayers()[layer];
                const RowMatrix layerFisher =
                    fisher ? RowMatrix(fisher->layer(b, static_cast<int>(layer))) : RowMatrix();
                QuantizedLayer quantized = quantizeLayer(
                    work.linear[layer],
                    {.hessian = sequences.empty() ? nullptr : &hessian,
                     .fisher = fisher ? &layerFisher : nullptr},
                    plan.layer(b, static_cast<int>(layer)), job, tensor.file + ": " + tensor.name);
                RowMatrix reconstruction = quantized.dequantize();
                const double relativeError =
                    sequences.empty()
                        ? std::numeric_limits<double>::quiet_NaN()
                        : relativeOutputError(work.linear[layer], reconstruction, hessian);
                finish(b, layer, quantized, reconstruction, relativeError);
                work.linear[layer] = std::move(reconstruction);
                if (journal) finished.push_back({std::move(quantized), relativeError});
            }
        }
        for (const BlockTensorSpec& spec : kBlockTensors)
            if (hasBlockTensor(spec, model.config))
                releaseMappedPages((stored.*spec.weights).data, (stored.*spec.weights).byteSize());
        // The next block is calibrated on this block's quantized outputs.
        if (walk) walk->advance(b, work.view(), job);
        if (journal)
            journal->recordBlock(b, finished,
                                 walk ? walk->hiddenStates() : std::vector<RowMatrix>{});
    }
    job.report(1.0, "quantized");
    const double parameters = static_cast<double>(result.parameters);
    result.bitsPerParameter = static_cast<double>(result.storedBytes) * 8.0 / parameters;
    result.paperBitsPerParameter = paperBits / parameters;
    result.outlierFraction = static_cast<double>(outliers) / parameters;
    return result;
}

} // namespace quantlens
