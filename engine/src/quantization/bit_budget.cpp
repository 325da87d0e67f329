#include "quantlens/quantization/bit_budget.h"

#include "quantlens/core/error.h"
#include "quantlens/core/float_tensor.h"
#include "quantlens/quantization/fisher.h"
#include "quantlens/quantization/layer_calibration.h"
#include "quantlens/quantization/layer_quantizer.h"
#include "quantlens/runtime/gradients.h"
#include "quantlens/runtime/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>

namespace quantlens {
namespace {

// diag(D·M·Dᵀ) with D = W − Ŵ: each output row's mean squared output error. Rows go through in
// chunks, in float with double sums, so no rows × cols product is held.
Eigen::VectorXd rowOutputErrors(const RowMatrix& original, const RowMatrix& reconstruction,
                                const Eigen::MatrixXf& m) {
    constexpr Eigen::Index kChunk = 256;
    Eigen::VectorXd errors(original.rows());
    for (Eigen::Index first = 0; first < original.rows(); first += kChunk) {
        const Eigen::Index rows = std::min(kChunk, original.rows() - first);
        const RowMatrix d =
            original.middleRows(first, rows) - reconstruction.middleRows(first, rows);
        errors.segment(first, rows) = (d * m).cwiseProduct(d).cast<double>().rowwise().sum();
    }
    return errors;
}

// g_i of every linear layer (block-major, kLinearLayers order): the mean over calibration tokens
// of (∂ℓ_t/∂y_ti)², ℓ_t a token's NLL and y_t the layer's output. lossAndLinearGradients gives
// ∂L/∂Y for L the sequence's mean over its T predictions, so each square is scaled back by T².
std::vector<Eigen::VectorXd>
outputCurvatures(const Model& model, const std::vector<std::vector<std::int32_t>>& sequences,
                 const JobContext& job) {
    std::vector<Eigen::VectorXd> curvatures(model.blocks.size() * kLinearLayerCount);
    const Transformer transformer(model, Transformer::WeightConversion::PerUse);
    double tokens = 0.0;
    for (std::size_t s = 0; s < sequences.size(); ++s) {
        job.report(double(s) / double(sequences.size()), "measuring the loss curvature");
        const double predictions = static_cast<double>(sequences[s].size() - 1);
        lossAndLinearGradients(
            transformer, sequences[s], {}, &job,
            [&](int block, int layer, const RowMatrix& outputGradient) {
                Eigen::VectorXd& g = curvatures[std::size_t(block * kLinearLayerCount + layer)];
                const Eigen::VectorXd squares =
                    outputGradient.cast<double>().array().square().colwise().sum().transpose() *
                    (predictions * predictions);
                if (g.size() == 0)
                    g = squares;
                else
                    g += squares;
            });
        tokens += predictions;
    }
    for (Eigen::VectorXd& g : curvatures)
        g /= tokens;
    return curvatures;
}

// The candidates' common method, checked: one method for the whole plan (quant_plan.h).
void checkCandidates(const QuantConfig& method, const std::vector<QuantConfig>& candidates,
                     const std::string& source) {
    if (candidates.empty()) throw Error(source, "a bit budget needs at least one candidate");
    for (const QuantConfig& candidate : candidates) {
        if (candidate.index() != method.index())
            throw Error(source, "the budget's candidate " + describe(candidate) + " is not " +
                                    methodName(method));
        validate(candidate);
    }
}

class Allocator {
public:
    Allocator(const BudgetMeasurement& measurement, double budget)
        : budget_(budget * (1.0 + 1e-12)) {
        for (const LayerCurve& layer : measurement.layers) {
            std::vector<double> cost, loss;
            for (const LayerCandidate& c : layer.candidates) {
                cost.push_back(c.paperBits * static_cast<double>(layer.parameters));
                loss.push_back(c.predictedLoss);
            }
            cost_.push_back(std::move(cost));
            loss_.push_back(std::move(loss));
        }
    }

    // The exact optimum with every cost rounded up to a unit of the budget / kUnits (a dynamic
    // programme over layers and spent units, one byte of choice per state): it always fits, and
    // the rounding leaves at most one unit per layer of the budget unspent, which improve() then
    // spends.
    std::vector<std::size_t> knapsack() const {
        constexpr std::size_t kUnits = 1 << 16;
        const double unit = budget_ / double(kUnits);
        const std::size_t layers = cost_.size();
        constexpr double kNone = std::numeric_limits<double>::infinity();
        std::vector<double> best(kUnits + 1, 0.0), next(kUnits + 1);
        std::vector<std::uint8_t> choice(layers * (kUnits + 1));
        for (std::size_t l = 0; l < layers; ++l) {
            std::fill(next.begin(), next.end(), kNone);
            for (std::size_t k = 0; k < cost_[l].size(); ++k) {
                const double units = std::ceil(cost_[l][k] / unit);
                if (units > double(kUnits)) continue;
                const auto c = static_cast<std::size_t>(units);
                for (std::size_t r = c; r <= kUnits; ++r)
                    if (const double loss = best[r - c] + loss_[l][k]; loss < next[r]) {
                        next[r] = loss;
                        choice[l * (kUnits + 1) + r] = static_cast<std::uint8_t>(k);
                    }
            }
            std::swap(best, next);
        }
        if (std::isinf(best[kUnits])) return {};
        std::vector<std::size_t> chosen(layers);
        std::size_t r = kUnits;
        for (std::size_t l = layers; l-- > 0;) {
            chosen[l] = choice[l * (kUnits + 1) + r];
            r -= static_cast<std::size_t>(std::ceil(cost_[l][chosen[l]] / unit));
        }
        return chosen;
    }

    // Single-layer changes that fit, the largest loss decrease first, until none lowers it.
    void improve(std::vector<std::size_t>& choice) const {
        double spent = totalCost(choice);
        for (;;) {
            double bestGain = 0.0;
            std::size_t bestLayer = 0, bestCandidate = 0;
            for (std::size_t l = 0; l < choice.size(); ++l)
                for (std::size_t k = 0; k < cost_[l].size(); ++k) {
                    const double gain = loss_[l][choice[l]] - loss_[l][k];
                    if (gain > bestGain && spent - cost_[l][choice[l]] + cost_[l][k] <= budget_) {
                        bestGain = gain;
                        bestLayer = l;
                        bestCandidate = k;
                    }
                }
            if (bestGain <= 0.0) return;
            spent += cost_[bestLayer][bestCandidate] - cost_[bestLayer][choice[bestLayer]];
            choice[bestLayer] = bestCandidate;
        }
    }

    double totalCost(const std::vector<std::size_t>& choice) const {
        double total = 0.0;
        for (std::size_t l = 0; l < choice.size(); ++l)
            total += cost_[l][choice[l]];
        return total;
    }
    double totalLoss(const std::vector<std::size_t>& choice) const {
        double total = 0.0;
        for (std::size_t l = 0; l < choice.size(); ++l)
            total += loss_[l][choice[l]];
        return total;
    }
    bool fits(const std::vector<std::size_t>& choice) const { return totalCost(choice) <= budget_; }
    std::size_t layers() const { return cost_.size(); }
    double cheapest() const {
        double total = 0.0;
        for (const std::vector<double>& cost : cost_)
            total += *std::min_element(cost.begin(), cost.end());
        return total;
    }

private:
    double budget_;
    std::vector<std::vector<double>> cost_, loss_; // [layer][candidate]: bits, predicted loss
};

} // namespace

std::vector<QuantConfig> budgetCandidates(const QuantConfig& method) {
    std::vector<QuantConfig> candidates;
    std::visit(
        [&](const auto& base) {
            using C = std::decay_t<decltype(base)>;
            if constexpr (std::is_same_v<C, SpqrConfig>) {
                for (const int wbits : {2, 3, 4})
                    for (const int groupsize : {8, 16, 32})
                        for (const double tau :
                             {base.outlierThreshold, 4.0 * base.outlierThreshold}) {
                            C c = base;
                            c.wbits = wbits;
                            c.groupsize = groupsize;
                            c.outlierThreshold = tau;
                            candidates.push_back(c);
                        }
            } else if constexpr (std::is_same_v<C, SqueezeConfig>) {
                for (const int wbits : {2, 3, 4, 5})
                    for (const bool sparse : {false, true}) {
                        C c = base;
                        c.wbits = wbits;
                        c.sparsePercent = sparse ? 0.40 : 0.0;
                        c.sensitivePercent = sparse ? 0.05 : 0.0;
                        candidates.push_back(c);
                    }
            } else {
                for (const int wbits : {2, 3, 4, 8})
                    for (const int groupsize : {32, 64, 128}) {
                        C c = base;
                        c.wbits = wbits;
                        c.groupsize = groupsize;
                        candidates.push_back(c);
                    }
            }
        },
        method);
    return candidates;
}

BudgetMeasurement
measureLayerCurves(const Model& model, std::span<const std::int32_t> calibrationStream,
                   const CalibrationConfig& calibration, const QuantConfig& method,
                   const std::vector<QuantConfig>& candidates, const JobContext& job) {
    const std::string source = model.path.string();
    validate(method);
    checkCandidates(method, candidates, source);
    const auto sequences =
        calibrationSequences(calibrationStream, calibration, model.config, source);
    // The gradient passes cost about as much as the walk's forward passes; the candidates'
    // quantizations dominate all of them.
    const std::vector<Eigen::VectorXd> curvatures =
        outputCurvatures(model, sequences, JobContext(job, 0.0, 0.1));
    // SqueezeLLM's quantizer weighs each weight by the diagonal Fisher (fisher.h).
    const std::optional<FisherInformation> fisher =
        needsFisher(method)
            ? std::optional(accumulateFisher(model, sequences, JobContext(job, 0.1, 0.2)))
            : std::nullopt;

    BudgetMeasurement measurement{method, candidates, {}};
    calibrateEveryBlock(
        model, calibrationStream, calibration, JobContext(job, 0.2, 1.0),
        [&](const BlockCalibration& calibrated, const JobContext& blockJob) {
            const int b = calibrated.block;
            const BlockWeights& block = model.blocks[static_cast<std::size_t>(b)];
            for (int l = 0; l < kLinearLayerCount; ++l) {
                const TensorView& tensor = *block.linearLayers()[static_cast<std::size_t>(l)];
                const RowMatrix weights = FloatTensor(tensor).matrix();
                const RowMatrix layerFisher = fisher ? RowMatrix(fisher->layer(b, l)) : RowMatrix();
                const Eigen::MatrixXf& hessian =
                    calibrated
                        .hessians[static_cast<std::size_t>(kLinearLayers[std::size_t(l)].stage)];
                const Eigen::MatrixXf moment = hessian * 0.5f; // M = XᵀX/n
                const Eigen::VectorXd& rowWeights =
                    curvatures[std::size_t(b * kLinearLayerCount + l)];
                LayerCurve curve{b, l, tensor.elementCount(), {}};
                for (std::size_t k = 0; k < candidates.size(); ++k) {
                    blockJob.report(double(l * candidates.size() + k) /
                                        double(kLinearLayerCount * candidates.size()),
                                    "measuring block " + std::to_string(b) + " " +
                                        kLinearLayers[std::size_t(l)].name);
                    blockJob.checkpoint();
                    const QuantizedLayer quantized = quantizeLayer(
                        weights, {.hessian = &hessian, .fisher = fisher ? &layerFisher : nullptr},
                        candidates[k], blockJob, tensor.file + ": " + tensor.name);
                    const Eigen::VectorXd errors =
                        rowOutputErrors(weights, quantized.dequantize(), moment);
                    curve.candidates.push_back(
                        {quantized.paperBitsPerParameter(), 0.5 * rowWeights.dot(errors)});
                }
                measurement.layers.push_back(std::move(curve));
            }
        });
    return measurement;
}

BitAllocation allocateBits(const BudgetMeasurement& measurement, double targetBits) {
    if (measurement.layers.empty() || measurement.settings.empty())
        throw Error("bit budget", "nothing was measured");
    if (measurement.settings.size() > 256)
        throw Error("bit budget",
                    "at most 256 candidates, not " + std::to_string(measurement.settings.size()));
    if (!std::isfinite(targetBits) || targetBits <= 0.0)
        throw Error("bit budget", "the target must be a positive number of bits");
    double parameters = 0.0;
    for (const LayerCurve& layer : measurement.layers)
        parameters += static_cast<double>(layer.parameters);
    const Allocator allocator(measurement, targetBits * parameters);
    if (allocator.cheapest() > targetBits * parameters * (1.0 + 1e-12))
        throw Error("bit budget", "a target of " + std::to_string(targetBits) +
                                      " bits is below the cheapest candidates' " +
                                      std::to_string(allocator.cheapest() / parameters) +
                                      " bits per parameter");

    // The knapsack's choice, and every uniform setting that fits, each improved; the best wins.
    std::vector<std::vector<std::size_t>> starts;
    if (std::vector<std::size_t> chosen = allocator.knapsack(); !chosen.empty())
        starts.push_back(std::move(chosen));
    for (std::size_t k = 0; k < measurement.settings.size(); ++k)
        if (std::vector<std::size_t> uniform(allocator.layers(), k); allocator.fits(uniform))
            starts.push_back(std::move(uniform));
    std::vector<std::size_t> best;
    for (std::vector<std::size_t>& start : starts) {
        allocator.improve(start);
        if (best.empty() || allocator.totalLoss(start) < allocator.totalLoss(best))
            best = std::move(start);
    }

    std::vector<QuantConfig> layers;
    for (const std::size_t choice : best)
        layers.push_back(measurement.settings[choice]);
    BitAllocation allocation{QuantPlan(measurement.method, std::move(layers)), targetBits,
                             allocator.totalCost(best) / parameters, allocator.totalLoss(best),
                             best};
    return allocation;
}

} // namespace quantlens
