#include "runtime/transformer_ops.h"

#include <algorithm>
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

namespace {

// x [tokens, heads·headDim] as [tokens·heads, headDim]: the same row-major elements, one head a
// row, so the row-wise RMSNorm normalises each head.
RowMatrix headRows(const RowMatrix& x, Eigen::Index headDim) {
    return ConstRowMatrixMap(x.data(), x.size() / headDim, headDim);
}

RowMatrix tokenRows(RowMatrix heads, Eigen::Index tokens) {
    return ConstRowMatrixMap(heads.data(), tokens, heads.size() / tokens);
}

} // namespace

RowMatrix headRmsNorm(const RowMatrix& x, Eigen::Index headDim, const float* weight, float eps) {
    return tokenRows(rmsNorm(headRows(x, headDim), weight, eps), x.rows());
}

RowMatrix headRmsNormBackward(const RowMatrix& x, Eigen::Index headDim, const float* weight,
                              float eps, const RowMatrix& outputGradient) {
    return tokenRows(
        rmsNormBackward(headRows(x, headDim), weight, eps, headRows(outputGradient, headDim)),
        x.rows());
}

Eigen::VectorXf ropeInverseFrequencies(const ModelConfig& config) {
    const int half = config.headDim / 2;
    const RopeScalingConfig& scaling = config.ropeScaling;
    Eigen::VectorXf frequencies(half);
    for (int i = 0; i < half; ++i) {
        float frequency = 1.0f / std::pow(config.ropeTheta, static_cast<float>(2 * i) /
                                                                static_cast<float>(config.headDim));
        if (scaling.type == RopeScaling::Linear) frequency /= scaling.factor;
        if (scaling.type == RopeScaling::Llama3) {
            // Wavelengths beyond the pretraining context over low_freq_factor are stretched by
            // the factor, those below it over high_freq_factor kept, the band between blended.
            const float context = static_cast<float>(scaling.originalMaxPositions);
            const float wavelength = 2.0f * static_cast<float>(M_PI) / frequency;
            if (wavelength > context / scaling.lowFreqFactor) {
                frequency /= scaling.factor;
            } else if (!(wavelength < context / scaling.highFreqFactor)) {
                const float smooth = (context / wavelength - scaling.lowFreqFactor) /
                                     (scaling.highFreqFactor - scaling.lowFreqFactor);
                frequency = (1.0f - smooth) * frequency / scaling.factor + smooth * frequency;
            }
        }
        frequencies[i] = frequency;
    }
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
                                 Eigen::Index firstPosition, Eigen::Index window) {
    RowMatrix scores = (queries * keys.transpose()) * scale;
    for (Eigen::Index i = 0; i < scores.rows(); ++i) {
        const Eigen::Index end = firstPosition + i + 1;
        const Eigen::Index begin = window > 0 ? std::max<Eigen::Index>(0, end - window) : 0;
        auto row = scores.row(i);
        auto seen = row.segment(begin, end - begin).array();
        seen = (seen - seen.maxCoeff()).exp();
        seen /= seen.sum();
        row.head(begin).setZero();
        row.tail(row.size() - end).setZero();
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
