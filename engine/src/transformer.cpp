#include "quantlens/transformer.h"

#include "quantlens/error.h"
#include "quantlens/parallel.h"

#include <algorithm>
#include <cmath>
#include <optional>

namespace quantlens {
namespace {

RowMatrix rmsNorm(const RowMatrix& x, const float* weight, float eps) {
    const auto w = Eigen::Map<const Eigen::RowVectorXf>(weight, x.cols()).array();
    RowMatrix out(x.rows(), x.cols());
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
        const float meanSquare = x.row(r).squaredNorm() / static_cast<float>(x.cols());
        out.row(r).array() = x.row(r).array() * (1.0f / std::sqrt(meanSquare + eps)) * w;
    }
    return out;
}

// Row i of `scores` belongs to position firstPosition + i, which sees itself and every position
// before it; the rest of the row is masked out.
void causalSoftmax(RowMatrix& scores, Eigen::Index firstPosition) {
    for (Eigen::Index i = 0; i < scores.rows(); ++i) {
        const Eigen::Index visible = firstPosition + i + 1;
        auto row = scores.row(i);
        auto seen = row.head(visible).array();
        seen = (seen - seen.maxCoeff()).exp();
        seen /= seen.sum();
        row.tail(row.size() - visible).setZero();
    }
}

// Queries are processed in chunks of this many rows: a chunk only needs the keys up to its last
// position (halving causal work), and its score matrix stays small enough to live in cache.
constexpr Eigen::Index kQueryChunk = 64;

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

Transformer::Transformer(const Model& model, WeightConversion conversion) : model_(model) {
    const ModelConfig& c = model.config;
    const int half = c.headDim / 2;
    inverseFrequencies_.resize(half);
    // fp32 throughout, as the reference implementations compute the rotation angles.
    for (int i = 0; i < half; ++i)
        inverseFrequencies_[i] =
            1.0f / std::pow(c.ropeTheta, static_cast<float>(2 * i) / static_cast<float>(c.headDim));

    if (conversion == WeightConversion::PerUse) return;
    std::vector<const TensorView*> needConversion;
    std::size_t convertedBytes = 0;
    const auto consider = [&](const TensorView& t) {
        if (t.dtype == DType::F32 || converted_.count(t.data)) return;
        needConversion.push_back(&t);
        convertedBytes += static_cast<std::size_t>(t.elementCount()) * sizeof(float);
    };
    for (const BlockWeights& b : model.blocks)
        for (const TensorView* t :
             {&b.attnNorm, &b.wq, &b.wk, &b.wv, &b.wo, &b.ffnNorm, &b.gate, &b.up, &b.down})
            consider(*t);
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

void Transformer::applyRope(RowMatrix& projected, int headCount, int startPosition) const {
    const int headDim = model_.config.headDim, half = headDim / 2;
    const bool interleaved = model_.config.ropeLayout == RopeLayout::Interleaved;
    std::vector<float> cosines(static_cast<std::size_t>(half)), sines(cosines.size());
    for (Eigen::Index t = 0; t < projected.rows(); ++t) {
        const float position = static_cast<float>(startPosition + t);
        for (int i = 0; i < half; ++i) {
            const float angle = position * inverseFrequencies_[i];
            cosines[i] = std::cos(angle);
            sines[i] = std::sin(angle);
        }
        for (int h = 0; h < headCount; ++h) {
            float* head = projected.row(t).data() + static_cast<std::ptrdiff_t>(h) * headDim;
            for (int i = 0; i < half; ++i) {
                const int a = interleaved ? 2 * i : i;
                const int b = interleaved ? 2 * i + 1 : i + half;
                const float x = head[a], y = head[b];
                head[a] = x * cosines[i] - y * sines[i];
                head[b] = y * cosines[i] + x * sines[i];
            }
        }
    }
}

void Transformer::runBlock(int block, RowMatrix& hidden, KvCache& cache, int startPosition) const {
    const BlockWeights& w = model_.blocks.at(static_cast<std::size_t>(block));
    const FloatTensor attnNorm = floatWeights(w.attnNorm), wq = floatWeights(w.wq),
                      wk = floatWeights(w.wk), wv = floatWeights(w.wv), wo = floatWeights(w.wo),
                      ffnNorm = floatWeights(w.ffnNorm), gate = floatWeights(w.gate),
                      up = floatWeights(w.up), down = floatWeights(w.down);
    runBlock(block,
             {attnNorm.data(), wq.data(), wk.data(), wv.data(), wo.data(), ffnNorm.data(),
              gate.data(), up.data(), down.data()},
             hidden, cache, startPosition);
    if (!hidden.allFinite()) throwNonFinite(block);
}

void Transformer::runBlock(int block, const BlockView& w, RowMatrix& hidden, KvCache& cache,
                           int startPosition, const StageObserver& observer,
                           std::optional<LinearStage> stopAfter) const {
    const ModelConfig& c = model_.config;
    const Eigen::Index tokens = hidden.rows(), dim = c.hiddenSize, kvDim = c.kvDim(),
                       ffn = c.intermediateSize;
    const int headDim = c.headDim;
    const auto matrix = [](const float* data, Eigen::Index rows, Eigen::Index cols) {
        return ConstRowMatrixMap(data, rows, cols);
    };
    // Reports a stage's input; true when the caller asked to stop there.
    const auto observe = [&](LinearStage stage, const RowMatrix& input) {
        if (observer) observer(stage, input);
        return stopAfter == stage;
    };

    RowMatrix normed = rmsNorm(hidden, w.attnNorm, c.rmsNormEps);
    if (observe(LinearStage::Attention, normed)) return;
    RowMatrix q = normed * matrix(w.wq, dim, dim).transpose();
    RowMatrix k = normed * matrix(w.wk, kvDim, dim).transpose();
    applyRope(q, c.headCount, startPosition);
    applyRope(k, c.kvHeadCount, startPosition);
    RowMatrix& keys = cache.keys[static_cast<std::size_t>(block)];
    RowMatrix& values = cache.values[static_cast<std::size_t>(block)];
    keys.middleRows(startPosition, tokens) = k;
    values.middleRows(startPosition, tokens).noalias() =
        normed * matrix(w.wv, kvDim, dim).transpose();

    const int groupSize = c.headCount / c.kvHeadCount;
    const float scale = 1.0f / std::sqrt(static_cast<float>(headDim));
    RowMatrix attended(tokens, dim);
    const Eigen::Index chunks = (tokens + kQueryChunk - 1) / kQueryChunk;
    parallelFor(c.headCount * chunks, [&](std::int64_t task) {
        const Eigen::Index head = task / chunks, first = (task % chunks) * kQueryChunk;
        const Eigen::Index rows = std::min<Eigen::Index>(kQueryChunk, tokens - first);
        const Eigen::Index visible = startPosition + first + rows;
        const Eigen::Index kvColumn = (head / groupSize) * headDim;
        RowMatrix scores = (q.block(first, head * headDim, rows, headDim) *
                            keys.block(0, kvColumn, visible, headDim).transpose()) *
                           scale;
        causalSoftmax(scores, startPosition + first);
        attended.block(first, head * headDim, rows, headDim).noalias() =
            scores * values.block(0, kvColumn, visible, headDim);
    });
    if (observe(LinearStage::AttentionOutput, attended)) return;
    hidden.noalias() += attended * matrix(w.wo, dim, dim).transpose();

    normed = rmsNorm(hidden, w.ffnNorm, c.rmsNormEps);
    if (observe(LinearStage::Mlp, normed)) return;
    RowMatrix gated = normed * matrix(w.gate, ffn, dim).transpose();
    const RowMatrix upProjected = normed * matrix(w.up, ffn, dim).transpose();
    // SwiGLU: silu(gate) ⊙ up.
    gated.array() = gated.array() / (1.0f + (-gated.array()).exp()) * upProjected.array();
    if (observe(LinearStage::MlpOutput, gated)) return;
    hidden.noalias() += gated * matrix(w.down, dim, ffn).transpose();
}

void Transformer::throwNonFinite(int block) const {
    const BlockWeights& w = model_.blocks[static_cast<std::size_t>(block)];
    throwIfNonFinite(
        {&w.attnNorm, &w.wq, &w.wk, &w.wv, &w.wo, &w.ffnNorm, &w.gate, &w.up, &w.down});
    throw Error(model_.path.string(), "activations overflowed to Inf/NaN in block " +
                                          std::to_string(block) + " (the weights are finite)");
}

RowMatrix Transformer::logits(const RowMatrix& hidden) const {
    const FloatTensor norm = floatWeights(model_.finalNorm), head = floatWeights(model_.lmHead);
    RowMatrix result =
        rmsNorm(hidden, norm.data(), model_.config.rmsNormEps) * head.matrix().transpose();
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
