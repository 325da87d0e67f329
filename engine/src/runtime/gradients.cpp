#include "quantlens/runtime/gradients.h"

#include "quantlens/core/error.h"
#include "quantlens/core/parallel.h"
#include "quantlens/runtime/kv_cache.h"
#include "runtime/transformer_ops.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace quantlens {
namespace {

// Indices into kLinearLayers.
enum LinearLayer { Query, Key, Value, Output, Gate, Up, Down };

struct AttentionGradients {
    RowMatrix queries; // ∂L/∂q after RoPE, [tokens, heads·headDim]
    RowMatrix keys;    // ∂L/∂k after RoPE, [tokens, kvDim]
    RowMatrix values;  // ∂L/∂v, [tokens, kvDim]
};

// The backward of causal GQA softmax attention O_h = softmax(Q_h·K_gᵀ·scale)·V_g, recomputing the
// weights P chunk by chunk as the forward does: ∂L/∂V_g = Pᵀ·∂O, ∂L/∂S = P ⊙ (∂P − rowsum(P ⊙ ∂P))
// with ∂P = ∂O·V_gᵀ, ∂L/∂Q_h = ∂S·K_g·scale, ∂L/∂K_g = ∂Sᵀ·Q_h·scale. A key/value head's gradient
// is the sum over the query heads of its group.
AttentionGradients attentionBackward(const ModelConfig& c, const RowMatrix& queries,
                                     const RowMatrix& keys, const RowMatrix& values,
                                     const RowMatrix& attendedGradient) {
    const Eigen::Index tokens = queries.rows(), headDim = c.headDim;
    const int groupSize = c.headCount / c.kvHeadCount;
    const float scale = 1.0f / std::sqrt(static_cast<float>(headDim));
    AttentionGradients result;
    result.queries.resize(tokens, c.queryDim());
    // Each query head's share of its key/value head's gradient, summed per group below.
    RowMatrix keyShares = RowMatrix::Zero(tokens, c.headCount * headDim);
    RowMatrix valueShares = RowMatrix::Zero(tokens, c.headCount * headDim);
    parallelFor(c.headCount, [&](std::int64_t head) {
        const Eigen::Index column = head * headDim, kvColumn = (head / groupSize) * headDim;
        for (Eigen::Index first = 0; first < tokens; first += ops::kQueryChunk) {
            const Eigen::Index rows = std::min(ops::kQueryChunk, tokens - first);
            const Eigen::Index visible = first + rows;
            const auto query = queries.block(first, column, rows, headDim);
            const auto key = keys.block(0, kvColumn, visible, headDim);
            const auto outputGradient = attendedGradient.block(first, column, rows, headDim);
            const RowMatrix weights =
                ops::causalAttentionWeights(query, key, scale, first, c.slidingWindow);
            valueShares.block(0, column, visible, headDim).noalias() +=
                weights.transpose() * outputGradient;
            RowMatrix scoreGradient =
                outputGradient * values.block(0, kvColumn, visible, headDim).transpose();
            const Eigen::VectorXf weighted =
                (weights.array() * scoreGradient.array()).rowwise().sum();
            scoreGradient =
                (weights.array() * (scoreGradient.array().colwise() - weighted.array())).matrix() *
                scale;
            result.queries.block(first, column, rows, headDim).noalias() = scoreGradient * key;
            keyShares.block(0, column, visible, headDim).noalias() +=
                scoreGradient.transpose() * query;
        }
    });
    result.keys = RowMatrix::Zero(tokens, c.kvDim());
    result.values = RowMatrix::Zero(tokens, c.kvDim());
    for (Eigen::Index head = 0; head < c.headCount; ++head) {
        const Eigen::Index column = head * headDim, kvColumn = (head / groupSize) * headDim;
        result.keys.middleCols(kvColumn, headDim) += keyShares.middleCols(column, headDim);
        result.values.middleCols(kvColumn, headDim) += valueShares.middleCols(column, headDim);
    }
    return result;
}

} // namespace

double lossAndLinearGradients(const Transformer& transformer, std::span<const std::int32_t> tokens,
                              const LinearGradientSink& sink, const JobContext* job,
                              const OutputGradientSink& outputs) {
    const Model& model = transformer.model();
    const ModelConfig& c = model.config;
    const std::string source = model.path.string();
    const auto n = static_cast<Eigen::Index>(tokens.size());
    if (n < 2)
        throw Error(source, "a sequence of " + std::to_string(n) +
                                " token(s) has no next token to predict");
    if (n > c.maxPositions)
        throw Error(source, "position " + std::to_string(n - 1) +
                                " is past the model's maximum of " +
                                std::to_string(c.maxPositions) + " positions");
    const Eigen::Index dim = c.hiddenSize, qDim = c.queryDim(), kvDim = c.kvDim(),
                       ffn = c.intermediateSize;

    // Room for one block's keys and values at a time.
    KvCache cache(c, 0);
    const auto cacheFor = [&](int block) -> KvCache& {
        for (std::vector<RowMatrix>* matrices : {&cache.keys, &cache.values}) {
            for (RowMatrix& m : *matrices)
                m.resize(0, kvDim);
            (*matrices)[static_cast<std::size_t>(block)].resize(n, kvDim);
        }
        cache.capacity = static_cast<int>(n);
        return cache;
    };

    // Forward, keeping each block's input.
    std::vector<RowMatrix> blockInputs(static_cast<std::size_t>(c.layerCount));
    RowMatrix hiddenGradient;
    double loss = 0.0;
    {
        RowMatrix hidden = transformer.embed(tokens);
        for (int b = 0; b < c.layerCount; ++b) {
            if (job) job->checkpoint();
            blockInputs[static_cast<std::size_t>(b)] = hidden;
            transformer.runBlock(b, hidden, cacheFor(b), 0);
        }

        // Cross-entropy of each position's next token, in double; the last position predicts
        // nothing. ∂L/∂logits_t = (softmax(logits_t) − onehot(tokens[t + 1])) / (n − 1).
        const RowMatrix logits = transformer.logits(hidden);
        const Eigen::Index predicted = n - 1;
        RowMatrix logitGradient = RowMatrix::Zero(n, c.vocabSize);
        std::vector<double> nll(static_cast<std::size_t>(predicted));
        parallelFor(predicted, [&](std::int64_t t) {
            const std::int32_t target = tokens[static_cast<std::size_t>(t) + 1];
            const Eigen::VectorXd row = logits.row(t).transpose().cast<double>();
            const double maxLogit = row.maxCoeff();
            Eigen::VectorXd probabilities = (row.array() - maxLogit).exp();
            const double sum = probabilities.sum();
            nll[static_cast<std::size_t>(t)] = maxLogit + std::log(sum) - row[target];
            probabilities /= sum;
            probabilities[target] -= 1.0;
            logitGradient.row(t) =
                (probabilities / static_cast<double>(predicted)).transpose().cast<float>();
        });
        for (const double value : nll)
            loss += value;
        loss /= static_cast<double>(predicted);

        const FloatTensor finalNorm = transformer.floatWeights(model.finalNorm);
        const FloatTensor lmHead = transformer.floatWeights(model.lmHead);
        hiddenGradient = ops::rmsNormBackward(hidden, finalNorm.data(), c.rmsNormEps,
                                              logitGradient * lmHead.matrix());
    }

    // Backward, block by block from the top, each block's intermediates recomputed from its input.
    const Eigen::VectorXf inverseFrequencies = ops::ropeInverseFrequencies(c);
    for (int b = c.layerCount - 1; b >= 0; --b) {
        if (job) job->checkpoint();
        RowMatrix& input = blockInputs[static_cast<std::size_t>(b)];
        const Transformer::FloatBlockWeights weights = transformer.blockWeights(b);
        const BlockView w = weights.view();
        KvCache& blockCache = cacheFor(b);
        BlockActivations a;
        {
            RowMatrix output = input;
            transformer.runBlock(b, w, output, blockCache, 0, {}, {}, &a);
        }
        const auto matrix = [](const float* data, Eigen::Index rows, Eigen::Index cols) {
            return ConstRowMatrixMap(data, rows, cols);
        };
        // ∂L/∂W = (∂L/∂Y)ᵀ·X for Y = X·Wᵀ.
        const auto emit = [&](LinearLayer layer, const RowMatrix& outputGradient,
                              const RowMatrix& layerInput) {
            if (outputs) outputs(b, layer, outputGradient);
            if (!sink) return;
            RowMatrix gradient;
            gradient.noalias() = outputGradient.transpose() * layerInput;
            sink(b, layer, gradient);
        };

        // MLP: hidden += down(silu(gate(m)) ⊙ up(m)), m = RMSNorm(residual).
        emit(Down, hiddenGradient, a.mlpOutput);
        RowMatrix gateGradient, upGradient;
        ops::swiGluBackward(a.gate, a.up, hiddenGradient * matrix(w.down, dim, ffn), gateGradient,
                            upGradient);
        emit(Gate, gateGradient, a.mlpInput);
        emit(Up, upGradient, a.mlpInput);
        RowMatrix normedGradient = gateGradient * matrix(w.gate, ffn, dim);
        normedGradient.noalias() += upGradient * matrix(w.up, ffn, dim);
        hiddenGradient += ops::rmsNormBackward(a.residual, w.ffnNorm, c.rmsNormEps, normedGradient);

        // Attention: hidden += o(attention(rope(q(x)), rope(k(x)), v(x))), x = RMSNorm(input),
        // with each head of q(x) and k(x) normalised before RoPE where the model has q/k norms.
        emit(Output, hiddenGradient, a.attended);
        AttentionGradients g =
            attentionBackward(c, a.queries, blockCache.keys[static_cast<std::size_t>(b)],
                              blockCache.values[static_cast<std::size_t>(b)],
                              hiddenGradient * matrix(w.wo, dim, qDim));
        ops::applyRope(g.queries, c.headCount, 0, c, inverseFrequencies,
                       ops::RopeDirection::Inverse);
        ops::applyRope(g.keys, c.kvHeadCount, 0, c, inverseFrequencies,
                       ops::RopeDirection::Inverse);
        if (w.qNorm) {
            g.queries = ops::headRmsNormBackward(a.projectedQueries, c.headDim, w.qNorm,
                                                 c.rmsNormEps, g.queries);
            g.keys =
                ops::headRmsNormBackward(a.projectedKeys, c.headDim, w.kNorm, c.rmsNormEps, g.keys);
        }
        emit(Query, g.queries, a.attentionInput);
        emit(Key, g.keys, a.attentionInput);
        emit(Value, g.values, a.attentionInput);
        normedGradient.noalias() = g.queries * matrix(w.wq, qDim, dim);
        normedGradient.noalias() += g.keys * matrix(w.wk, kvDim, dim);
        normedGradient.noalias() += g.values * matrix(w.wv, kvDim, dim);
        hiddenGradient += ops::rmsNormBackward(input, w.attnNorm, c.rmsNormEps, normedGradient);
        input = RowMatrix();
    }
    return loss;
}

} // namespace quantlens
