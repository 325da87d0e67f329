#include "runtime/transformer_ops.h"

#include <cmath>
#include <vector>

namespace quantlens::ops {

RowMatrix rmsNorm(const RowMatrix& x, const float* weight, float eps) {
    const auto w = Eigen::Map<const Eigen::RowVectorXf>(weight, x.cols()).array();
    RowMatrix out(x.rows(), x.cols());
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
        const float meanSquare = x.row(r).squaredNorm() / static_cast<float>(x.cols());
        out.row(r).array() = x.row(r).array() * (1.0f / std::sqrt(meanSquare + eps)) * w;
    }
    return out;
}

RowMatrix rmsNormBackward(const RowMatrix& x, const float* weight, float eps,
                          const RowMatrix& outputGradient) {
    const auto w = Eigen::Map<const Eigen::RowVectorXf>(weight, x.cols()).array();
    const float dim = static_cast<float>(x.cols());
    RowMatrix result(x.rows(), x.cols());
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
        const float inverseRms = 1.0f / std::sqrt(x.row(r).squaredNorm() / dim + eps);
        const Eigen::RowVectorXf g = outputGradient.row(r).array() * w;
        const float projection = g.dot(x.row(r)) / dim;
        result.row(r) =
            inverseRms * g - (inverseRms * inverseRms * inverseRms * projection) * x.row(r);
    }
    return result;
}

Eigen::VectorXf ropeInverseFrequencies(const ModelConfig& config) {
    const int half = config.headDim / 2;
    Eigen::VectorXf frequencies(half);
    for (int i = 0; i < half; ++i)
        frequencies[i] = 1.0f / std::pow(config.ropeTheta, static_cast<float>(2 * i) /
                                                               static_cast<float>(config.headDim));
    return frequencies;
}

void applyRope(RowMatrix& projected, int headCount, int startPosition, const ModelConfig& config,
               const Eigen::VectorXf& inverseFrequencies, RopeDirection direction) {
    const int headDim = config.headDim, half = headDim / 2;
    const bool interleaved = config.ropeLayout == RopeLayout::Interleaved;
    const float sign = direction == RopeDirection::Forward ? 1.0f : -1.0f;
    std::vector<float> cosines(static_cast<std::size_t>(half)), sines(cosines.size());
    for (Eigen::Index t = 0; t < projected.rows(); ++t) {
        const float position = static_cast<float>(startPosition + t);
        for (int i = 0; i < half; ++i) {
            const float angle = position * inverseFrequencies[i];
            cosines[i] = std::cos(angle);
            sines[i] = sign * std::sin(angle);
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

RowMatrix causalAttentionWeights(const Eigen::Ref<const RowMatrix>& queries,
                                 const Eigen::Ref<const RowMatrix>& keys, float scale,
                                 Eigen::Index firstPosition) {
    RowMatrix scores = (queries * keys.transpose()) * scale;
    for (Eigen::Index i = 0; i < scores.rows(); ++i) {
        const Eigen::Index visible = firstPosition + i + 1;
        auto row = scores.row(i);
        auto seen = row.head(visible).array();
        seen = (seen - seen.maxCoeff()).exp();
        seen /= seen.sum();
        row.tail(row.size() - visible).setZero();
    }
    return scores;
}

void swiGlu(RowMatrix& gate, const RowMatrix& up) {
    gate.array() = gate.array() / (1.0f + (-gate.array()).exp()) * up.array();
}

void swiGluBackward(const RowMatrix& gate, const RowMatrix& up, const RowMatrix& outputGradient,
                    RowMatrix& gateGradient, RowMatrix& upGradient) {
    using RowArray = Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const RowArray sigmoid = 1.0f / (1.0f + (-gate.array()).exp());
    upGradient = (outputGradient.array() * gate.array() * sigmoid).matrix();
    gateGradient =
        (outputGradient.array() * up.array() * sigmoid * (1.0f + gate.array() * (1.0f - sigmoid)))
            .matrix();
}

} // namespace quantlens::ops
