#include "quantlens/runtime/transformer.h"

#include "quantlens/core/error.h"
#include "quantlens/core/parallel.h"
#include "quantlens/runtime/compressed_linear.h"
#include "runtime/transformer_ops.h"

#include <algorithm>
#include <cmath>
#include <optional>

namespace quantlens {
namespace {

// The first non-finite element of a stored tensor, if any.
std::optional<std::int64_t> firstNonFinite(const TensorView& tensor) {
    const FloatTensor values(tensor);
    const std::int64_t count = tensor.elementCount();
    for (std::int64_t i = 0; i < count; ++i)
        if (!std::isfinite(values.data()[i])) return i;
    return std::nullopt;
}

std::string elementIndex(const TensorView& tensor, std::int64_t flat) {
    std::string text;
    for (auto d = tensor.shape.rbegin(); d != tensor.shape.rend(); ++d) {
        text = std::to_string(flat % *d) + (text.empty() ? "" : ", ") + text;
        flat /= *d;
    }
    return "[" + text + "]";
}

void throwIfNonFinite(std::initializer_list<const TensorView*> tensors) {
    for (const TensorView* tensor : tensors) {
        if (const auto index = firstNonFinite(*tensor)) {
            float value;
            convertToFloat(tensor->dtype, tensor->data + *index * dtypeSize(tensor->dtype), 1,
                           &value);
            throw Error(tensor->file, "tensor '" + tensor->name + "' contains " +
                                          (std::isnan(value) ? "NaN" : "Inf") + " at " +
                                          elementIndex(*tensor, *index));
        }
    }
}

} // namespace

Transformer::Transformer(const Model& model, WeightConversion conversion)
    : model_(model), inverseFrequencies_(ops::ropeInverseFrequencies(model.config)) {
    if (conversion == WeightConversion::PerUse) return;
    std::vector<const TensorView*> needConversion;
    std::size_t convertedBytes = 0;
    const auto consider = [&](const TensorView& t) {
        if (t.dtype == DType::F32 || converted_.count(t.data)) return;
        needConversion.push_back(&t);
        convertedBytes += static_cast<std::size_t>(t.elementCount()) * sizeof(float);
    };
    for (const BlockWeights& b : model.blocks)
        for (const BlockTensorSpec& spec : kBlockTensors)
            if (hasBlockTensor(spec, model.config)) consider(b.*spec.weights);
    consider(model.finalNorm);
    consider(model.lmHead);
    if (convertedBytes <= kConversionCacheBytes)
        for (const TensorView* t : needConversion)
            converted_.try_emplace(t->data, *t);
}

FloatTensor Transformer::floatWeights(const TensorView& tensor) const {
    const auto it = converted_.find(tensor.data);
    return it != converted_.end() ? it->second.view() : FloatTensor(tensor);
}

Transformer::FloatBlockWeights Transformer::blockWeights(int block) const {
    const BlockWeights& w = model_.blocks.at(static_cast<std::size_t>(block));
    return {floatWeights(w.attnNorm), floatWeights(w.wq),    floatWeights(w.wk),
            floatWeights(w.wv),       floatWeights(w.wo),    floatWeights(w.ffnNorm),
            floatWeights(w.gate),     floatWeights(w.up),    floatWeights(w.down),
            floatWeights(w.qBias),    floatWeights(w.kBias), floatWeights(w.vBias),
            floatWeights(w.qNorm),    floatWeights(w.kNorm)};
}

RowMatrix Transformer::embed(std::span<const std::int32_t> tokens) const {
    const TensorView& table = model_.embedding;
    const int dim = model_.config.hiddenSize;
    RowMatrix hidden(static_cast<Eigen::Index>(tokens.size()), dim);
    for (std::size_t t = 0; t < tokens.size(); ++t) {
        const std::int32_t id = tokens[t];
        if (id < 0 || id >= model_.config.vocabSize)
            throw Error(model_.path.string(), "token id " + std::to_string(id) +
                                                  " is outside the vocabulary of " +
                                                  std::to_string(model_.config.vocabSize));
        convertToFloat(table.dtype,
                       table.data + static_cast<std::size_t>(id) * dim * dtypeSize(table.dtype),
                       dim, hidden.row(static_cast<Eigen::Index>(t)).data());
    }
    if (!hidden.allFinite()) throwIfNonFinite({&table});
    return hidden;
}

void Transformer::runBlock(int block, RowMatrix& hidden, KvCache& cache, int startPosition) const {
    const FloatBlockWeights weights = blockWeights(block);
    BlockView view = weights.view();
    if (!model_.compressedLayers.empty())
        for (std::size_t i = 0; i < view.linear.size(); ++i)
            view.linear[i] = model_.compressedLayers.at(static_cast<std::size_t>(block))[i].get();
    runBlock(block, view, hidden, cache, startPosition);
    if (!hidden.allFinite()) throwNonFinite(block);
}

void Transformer::runBlock(int block, const BlockView& w, RowMatrix& hidden, KvCache& cache,
                           int startPosition, const StageObserver& observer,
                           std::optional<LinearStage> stopAfter,
                           BlockActivations* activations) const {
    const ModelConfig& c = model_.config;
    const Eigen::Index tokens = hidden.rows(), dim = c.hiddenSize, qDim = c.queryDim(),
                       kvDim = c.kvDim(), ffn = c.intermediateSize;
    const int headDim = c.headDim;
    // x·Wᵀ through a compressed layer's operator (dense layers: ops::denseProduct).
    const auto compressed = [&](int layer, const RowMatrix& x) {
        RowMatrix y;
        w.linear[static_cast<std::size_t>(layer)]->apply(x, y, false, decodeActivations_);
        return y;
    };
    // Reports a stage's input; true when the caller asked to stop there.
    const auto observe = [&](LinearStage stage, const RowMatrix& input) {
        if (observer) observer(stage, input);
        return stopAfter == stage;
    };

    RowMatrix normed = ops::rmsNorm(hidden, w.attnNorm, c.rmsNormEps);
    if (observe(LinearStage::Attention, normed)) return;
    // Adds a bias [width] to every row of `y` (Qwen2's q/k/v); nothing without one.
    const auto addBias = [](auto&& y, const float* bias) {
        if (bias) y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias, y.cols());
    };
    RowMatrix q = w.linear[0] ? compressed(0, normed) : ops::denseProduct(normed, w.wq, qDim, dim);
    RowMatrix k = w.linear[1] ? compressed(1, normed) : ops::denseProduct(normed, w.wk, kvDim, dim);
    addBias(q, w.qBias);
    addBias(k, w.kBias);
    if (w.qNorm) {
        if (activations) {
            activations->projectedQueries = q;
            activations->projectedKeys = k;
        }
        q = ops::headRmsNorm(q, headDim, w.qNorm, c.rmsNormEps);
        k = ops::headRmsNorm(k, headDim, w.kNorm, c.rmsNormEps);
    }
    ops::applyRope(q, c.headCount, startPosition, c, inverseFrequencies_);
    ops::applyRope(k, c.kvHeadCount, startPosition, c, inverseFrequencies_);
    RowMatrix& keys = cache.keys[static_cast<std::size_t>(block)];
    RowMatrix& values = cache.values[static_cast<std::size_t>(block)];
    keys.middleRows(startPosition, tokens) = k;
    if (w.linear[2])
        values.middleRows(startPosition, tokens) = compressed(2, normed);
    else
        ops::denseProduct(normed, w.wv, kvDim, dim, values.middleRows(startPosition, tokens),
                          false);
    addBias(values.middleRows(startPosition, tokens), w.vBias);

    const int groupSize = c.headCount / c.kvHeadCount;
    const float scale = 1.0f / std::sqrt(static_cast<float>(headDim));
    RowMatrix attended(tokens, qDim);
    const Eigen::Index chunks = (tokens + ops::kQueryChunk - 1) / ops::kQueryChunk;
    parallelFor(c.headCount * chunks, [&](std::int64_t task) {
        const Eigen::Index head = task / chunks, first = (task % chunks) * ops::kQueryChunk;
        const Eigen::Index rows = std::min<Eigen::Index>(ops::kQueryChunk, tokens - first);
        const Eigen::Index visible = startPosition + first + rows;
        const Eigen::Index kvColumn = (head / groupSize) * headDim;
        const RowMatrix weights =
            ops::causalAttentionWeights(q.block(first, head * headDim, rows, headDim),
                                        keys.block(0, kvColumn, visible, headDim), scale,
                                        startPosition + first, c.slidingWindow);
        attended.block(first, head * headDim, rows, headDim).noalias() =
            weights * values.block(0, kvColumn, visible, headDim);
    });
    if (observe(LinearStage::AttentionOutput, attended)) return;
    if (w.linear[3])
        w.linear[3]->apply(attended, hidden, true, decodeActivations_);
    else
        ops::denseProduct(attended, w.wo, dim, qDim, hidden, true);
    if (activations) {
        activations->attentionInput = std::move(normed);
        activations->queries = std::move(q);
        activations->attended = std::move(attended);
        activations->residual = hidden;
    }

    normed = ops::rmsNorm(hidden, w.ffnNorm, c.rmsNormEps);
    if (observe(LinearStage::Mlp, normed)) return;
    RowMatrix gated =
        w.linear[4] ? compressed(4, normed) : ops::denseProduct(normed, w.gate, ffn, dim);
    RowMatrix upProjected =
        w.linear[5] ? compressed(5, normed) : ops::denseProduct(normed, w.up, ffn, dim);
    if (activations) activations->gate = gated;
    ops::swiGlu(gated, upProjected);
    if (observe(LinearStage::MlpOutput, gated)) return;
    if (w.linear[6])
        w.linear[6]->apply(gated, hidden, true, decodeActivations_);
    else
        ops::denseProduct(gated, w.down, dim, ffn, hidden, true);
    if (activations) {
        activations->mlpInput = std::move(normed);
        activations->up = std::move(upProjected);
        activations->mlpOutput = std::move(gated);
    }
}

void Transformer::throwNonFinite(int block) const {
    const BlockWeights& w = model_.blocks[static_cast<std::size_t>(block)];
    // Compressed layers hold no dense data; their arrays were checked finite when loaded.
    for (const BlockTensorSpec& spec : kBlockTensors)
        if (hasBlockTensor(spec, model_.config) &&
            (spec.kind != BlockTensorKind::Weight || model_.compressedLayers.empty()))
            throwIfNonFinite({&(w.*spec.weights)});
    throw Error(model_.path.string(), "activations overflowed to Inf/NaN in block " +
                                          std::to_string(block) + " (the weights are finite)");
}

RowMatrix Transformer::logits(const RowMatrix& hidden) const {
    const FloatTensor norm = floatWeights(model_.finalNorm), head = floatWeights(model_.lmHead);
    RowMatrix result =
        ops::denseProduct(ops::rmsNorm(hidden, norm.data(), model_.config.rmsNormEps), head.data(),
                          head.matrix().rows(), head.matrix().cols());
    if (!result.allFinite()) {
        throwIfNonFinite({&model_.finalNorm, &model_.lmHead});
        throw Error(model_.path.string(), "logits overflowed to Inf/NaN");
    }
    return result;
}

RowMatrix Transformer::forward(std::span<const std::int32_t> tokens, KvCache& cache,
                               const JobContext* job) const {
    const int start = cache.length;
    const std::int64_t end = start + static_cast<std::int64_t>(tokens.size());
    if (tokens.empty()) throw Error(model_.path.string(), "no tokens to run");
    if (end > model_.config.maxPositions)
        throw Error(model_.path.string(),
                    "position " + std::to_string(end - 1) + " is past the model's maximum of " +
                        std::to_string(model_.config.maxPositions) + " positions");
    if (end > cache.capacity)
        throw Error(model_.path.string(), "sequence of " + std::to_string(end) +
                                              " positions exceeds the cache of " +
                                              std::to_string(cache.capacity));
    RowMatrix hidden = embed(tokens);
    for (int b = 0; b < model_.config.layerCount; ++b) {
        if (job) job->checkpoint();
        runBlock(b, hidden, cache, start);
    }
    cache.length = static_cast<int>(end);
    return logits(hidden);
}

} // namespace quantlens
