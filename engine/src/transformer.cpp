#include "quantlens/transformer.h"

#include "quantlens/error.h"
#include "quantlens/parallel.h"

#include <algorithm>
#include <cmath>
#include <optional>

namespace quantlens {
namespace {

RowMatrix rmsNorm(const RowMatrix& x, const FloatTensor& weight, float eps) {
    const auto w = weight.vector().transpose().array();
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

Transformer::Transformer(const Model& model) : model_(model) {
    const ModelConfig& c = model.config;
    const int half = c.headDim / 2;
    ropeCos_.resize(c.maxPositions, half);
    ropeSin_.resize(c.maxPositions, half);
    // fp32 throughout, as the reference implementations compute the rotation angles.
    for (int i = 0; i < half; ++i) {
        const float inverseFrequency =
            1.0f / std::pow(c.ropeTheta, static_cast<float>(2 * i) / static_cast<float>(c.headDim));
        for (int p = 0; p < c.maxPositions; ++p) {
            const float angle = static_cast<float>(p) * inverseFrequency;
            ropeCos_(p, i) = std::cos(angle);
            ropeSin_(p, i) = std::sin(angle);
        }
    }
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
    for (Eigen::Index t = 0; t < projected.rows(); ++t) {
        const Eigen::Index position = startPosition + t;
        for (int h = 0; h < headCount; ++h) {
            float* head = projected.row(t).data() + static_cast<std::ptrdiff_t>(h) * headDim;
            for (int i = 0; i < half; ++i) {
                const int a = interleaved ? 2 * i : i;
                const int b = interleaved ? 2 * i + 1 : i + half;
                const float c = ropeCos_(position, i), s = ropeSin_(position, i);
                const float x = head[a], y = head[b];
                head[a] = x * c - y * s;
                head[b] = y * c + x * s;
            }
        }
    }
}

void Transformer::runBlock(int block, RowMatrix& hidden, KvCache& cache, int startPosition) const {
    const ModelConfig& c = model_.config;
    const BlockWeights& w = model_.blocks.at(static_cast<std::size_t>(block));
    const int tokens = static_cast<int>(hidden.rows());
    const int headDim = c.headDim;

    const FloatTensor attnNorm(w.attnNorm), wq(w.wq), wk(w.wk), wv(w.wv), wo(w.wo);
    RowMatrix normed = rmsNorm(hidden, attnNorm, c.rmsNormEps);
    RowMatrix q = normed * wq.matrix().transpose();
    RowMatrix k = normed * wk.matrix().transpose();
    applyRope(q, c.headCount, startPosition);
    applyRope(k, c.kvHeadCount, startPosition);
    RowMatrix& keys = cache.keys[static_cast<std::size_t>(block)];
    RowMatrix& values = cache.values[static_cast<std::size_t>(block)];
    keys.middleRows(startPosition, tokens) = k;
    values.middleRows(startPosition, tokens).noalias() = normed * wv.matrix().transpose();

    const int groupSize = c.headCount / c.kvHeadCount;
    const float scale = 1.0f / std::sqrt(static_cast<float>(headDim));
    RowMatrix attended(tokens, c.hiddenSize);
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
    hidden.noalias() += attended * wo.matrix().transpose();

    const FloatTensor ffnNorm(w.ffnNorm), gate(w.gate), up(w.up), down(w.down);
    normed = rmsNorm(hidden, ffnNorm, c.rmsNormEps);
    RowMatrix gated = normed * gate.matrix().transpose();
    const RowMatrix upProjected = normed * up.matrix().transpose();
    // SwiGLU: silu(gate) ⊙ up.
    gated.array() = gated.array() / (1.0f + (-gated.array()).exp()) * upProjected.array();
    hidden.noalias() += gated * down.matrix().transpose();

    if (!hidden.allFinite()) throwNonFinite(block);
}

void Transformer::throwNonFinite(int block) const {
    const BlockWeights& w = model_.blocks[static_cast<std::size_t>(block)];
    throwIfNonFinite(
        {&w.attnNorm, &w.wq, &w.wk, &w.wv, &w.wo, &w.ffnNorm, &w.gate, &w.up, &w.down});
    throw Error(model_.path.string(), "activations overflowed to Inf/NaN in block " +
                                          std::to_string(block) + " (the weights are finite)");
}

RowMatrix Transformer::logits(const RowMatrix& hidden) const {
    const FloatTensor norm(model_.finalNorm), head(model_.lmHead);
    RowMatrix result = rmsNorm(hidden, norm, model_.config.rmsNormEps) * head.matrix().transpose();
    if (!result.allFinite()) {
        throwIfNonFinite({&model_.finalNorm, &model_.lmHead});
        throw Error(model_.path.string(), "logits overflowed to Inf/NaN");
    }
    return result;
}

RowMatrix Transformer::forward(std::span<const std::int32_t> tokens, KvCache& cache) const {
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
    for (int b = 0; b < model_.config.layerCount; ++b)
        runBlock(b, hidden, cache, start);
    cache.length = static_cast<int>(end);
    return logits(hidden);
}

} // namespace quantlens
